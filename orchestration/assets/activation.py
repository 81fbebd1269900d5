"""One asset per sync spec: send the audience's changes to its destination."""

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string

import activation
from cdp import progress
from cdp.definitions import BrokenDefinition, load_sync_specs
from cdp.governance.labels import refresh_column_labels
from cdp.settings import current_paths
from orchestration.resources import WarehouseResource


def _specs_and_broken() -> tuple[dict[str, activation.SyncSpec], list[BrokenDefinition]]:
    """Valid sync specs, and the broken ones (a schedule that is no cron expression included)."""
    specs, broken = load_sync_specs()
    for name, spec in list(specs.items()):
        if spec.schedule and not is_valid_cron_string(spec.schedule):
            broken.append(
                BrokenDefinition(
                    "sync",
                    spec.path.stem if spec.path else name,
                    spec.path,
                    f"{spec.path}: schedule is {spec.schedule!r}; expected a cron expression of five fields "
                    "such as '0 6 * * *' (every day at 06:00 UTC). Fix it, or remove the key to sync with the pipeline.",
                )
            )
            del specs[name]
    return specs, broken


SYNC_SPECS, BROKEN_SYNCS = _specs_and_broken()


def build_sync_asset(spec: activation.SyncSpec) -> dg.AssetsDefinition:
    audience_schema, audience_table = spec.audience.split(".", 1)

    @dg.asset(
        key=dg.AssetKey(["activation", spec.name]),
        group_name="activation",
        kinds={"duckdb"},
        deps=[dg.AssetKey([audience_schema, audience_table])],
        description=spec.description or f"Syncs {spec.audience} to its {spec.destination.type} destination.",
        metadata={
            "mode": spec.mode,
            "destination": spec.destination.type,
            "consents": ", ".join(spec.consents) or "none",
            "marketing_actions": ", ".join(spec.marketing_actions) or "none",
        },
    )
    def sync_audience(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        progress.report("sync", spec.name)
        with warehouse.connect() as con:
            refresh_column_labels(con)  # the policy gate in run_sync reads the labels of this build
            result = activation.run_sync(con, spec, run_id=context.run_id, base_dir=current_paths().destinations_dir)
        metadata = {
            "added": result.added,
            "changed": result.changed,
            "removed": result.removed,
            "invalid": result.invalid,
            "excluded_consent": result.excluded_consent,
            "held_out": result.held_out,
            "rejected": result.rejected,
            "sent": result.sent,
            "failed": result.failed,
            "retried": result.retried,
            "status": result.status,
            "unchanged": result.unchanged,
            "duration_s": round(result.duration_s, 3),
            "not_sent": result.not_sent,
            "http_retries": result.http_retries,
            "message": result.message or "",
        }
        if result.status == "failed":  # delivered nothing it tried: the asset fails, as `cdp sync` does
            raise dg.Failure(description=f"sync {spec.name}: {result.message}", metadata=metadata)
        return dg.MaterializeResult(metadata=metadata)

    return sync_audience


def build_sync_records_asset(sync_assets: list[dg.AssetsDefinition]) -> dg.AssetsDefinition:
    """The ledger and the run records every sync writes, as assets downstream of every sync: the dbt
    models that read them (sources activation.*: campaign analytics) run after this run's syncs."""
    sync_keys = [key for assets in sync_assets for key in assets.keys]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                dg.AssetKey(["activation", table]),
                group_name="activation",
                kinds={"duckdb"},
                deps=sync_keys,
                description=f"activation.{table}, written by every sync of the run (activation/state.py).",
            )
            for table in ("sync_ledger", "sync_runs")
        ]
    )
    def sync_records(warehouse: WarehouseResource):
        with warehouse.connect() as con:
            activation.ensure_state_tables(con)  # the tables exist for dbt even when no sync is declared
            rows = {
                table: con.execute(f"select count(*) from activation.{table}").fetchone()[0]
                for table in ("sync_ledger", "sync_runs")
            }
        for table, count in rows.items():
            yield dg.MaterializeResult(asset_key=dg.AssetKey(["activation", table]), metadata={"rows": count})

    return sync_records


# The sync-records asset is built in orchestration/definitions.py, over the syncs that can run (not those of
# an invalid audience: waiting on a sync that never runs would hold back campaign analytics and publication).
SYNC_ASSETS = [build_sync_asset(spec) for spec in SYNC_SPECS.values()]


def build_policy_check(audience: str, specs: list[activation.SyncSpec]) -> dg.AssetChecksDefinition:
    """Data-usage policies as a blocking check on every synced audience: right after dbt builds it,
    each sync of the audience is evaluated as the engine's gate will (a violation fails the run
    here, visibly in Dagster, before any sync starts)."""
    schema, table = audience.split(".", 1)

    @dg.asset_check(
        asset=dg.AssetKey([schema, table]),
        name="data_usage_policies",
        blocking=True,
        description=f"the data-usage policies allow every sync of {audience} "
        f"({', '.join(s.name for s in specs)}) its declared marketing actions",
    )
    def audience_policy_check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        from activation.policies import check_sync

        with warehouse.connect() as con:
            refresh_column_labels(con)
            violations = [v for spec in specs for v in check_sync(con, spec)]
        return dg.AssetCheckResult(
            passed=not violations,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(str(v) for v in violations[:20]) or "no policy violation",
            metadata={"violations": len(violations), "syncs": [s.name for s in specs]},
        )

    return audience_policy_check


def _syncs_by_audience() -> dict[str, list[activation.SyncSpec]]:
    grouped: dict[str, list[activation.SyncSpec]] = {}
    for spec in SYNC_SPECS.values():
        grouped.setdefault(spec.audience, []).append(spec)
    return grouped


POLICY_CHECKS = [build_policy_check(audience, specs) for audience, specs in sorted(_syncs_by_audience().items())]
