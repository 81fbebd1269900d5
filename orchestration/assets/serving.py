"""Publishing to the serving store: the last step of every run, and a sensor that watches its age."""

import datetime as dt
import os
from collections.abc import Sequence

import dagster as dg

from cdp import progress
from cdp.serving.publish import latest_publication, publish
from cdp.settings import current_paths
from cdp.warehouse import connect

PUBLICATION = dg.AssetKey(["serving", "publication"])
STORE_FRESH = "serving_store_fresh"


def max_publication_age() -> dt.timedelta:
    """How old the published run may get before the freshness check fails (CDP_SERVING_MAX_AGE_HOURS,
    default 26: the daily schedule plus two hours of slack)."""
    return dt.timedelta(hours=float(os.environ.get("CDP_SERVING_MAX_AGE_HOURS", "26")))


def _check_summary(instance: dg.DagsterInstance, run_id: str) -> dict:
    """The run's asset check evaluations: how many passed, which failed (errors block publishing)."""
    records = instance.get_records_for_run(
        run_id=run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=100_000
    ).records
    passed, errors, warnings = 0, [], []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        if evaluation.passed:
            passed += 1
        elif evaluation.severity == dg.AssetCheckSeverity.ERROR:
            errors.append(name)
        else:
            warnings.append(name)
    return {
        "checks_evaluated": len(records),
        "checks_passed": passed,
        "checks_failed": errors,
        "checks_warned": warnings,
    }


def _load_summary(warehouse_path: str, run_id: str) -> dict:
    """What this run loaded, from the load ledger (audit.loads keys loads by run id)."""
    with connect(warehouse_path, read_only=True) as con:
        if not con.execute(
            "select count(*) from information_schema.tables where table_schema = 'audit' and table_name = 'loads'"
        ).fetchone()[0]:
            return {}
        files, accepted, quarantined = con.execute(
            "select count(*), coalesce(sum(rows_accepted), 0), coalesce(sum(rows_quarantined), 0) "
            "from audit.loads where load_id = ?",
            [run_id],
        ).fetchone()
    return {"files_loaded": files, "rows_accepted": int(accepted), "rows_quarantined": int(quarantined)}


def store_freshness(now: dt.datetime | None = None) -> dg.AssetCheckEvaluation:
    """Reads the serving store itself (not Dagster's records): which run it holds and how old it is."""
    store = current_paths().serving_store
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    try:
        latest = latest_publication(store)
    except Exception as error:  # an unreadable store is reported, never raised from a sensor
        return dg.AssetCheckEvaluation(
            asset_key=PUBLICATION,
            check_name=STORE_FRESH,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"serving store {store} cannot be read: {error}",
        )
    if latest is None:
        return dg.AssetCheckEvaluation(
            asset_key=PUBLICATION,
            check_name=STORE_FRESH,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"nothing published at {store} yet; run the pipeline",
        )
    age = now - latest["published_at"]
    limit = max_publication_age()
    return dg.AssetCheckEvaluation(
        asset_key=PUBLICATION,
        check_name=STORE_FRESH,
        passed=age <= limit,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"published run {latest['run_id']} is {age.total_seconds() / 3600:.1f} h old "
            f"(limit {limit.total_seconds() / 3600:.0f} h)"
        ),
        metadata={
            "run_id": latest["run_id"],
            "published_at": str(latest["published_at"]),
            "age_hours": round(age.total_seconds() / 3600, 2),
            "store": str(store),
        },
    )


def build_publication_asset(
    upstream: Sequence[dg.AssetsDefinition], skipped: Sequence[str] = ()
) -> dg.AssetsDefinition:
    """The publication depends on every other asset, so it runs last and only when all succeeded.
    `skipped`: the invalid audience and sync definitions left out of the graph it waits for (and the
    syncs of those audiences), recorded with the publication so readers know what it lacks."""
    upstream_keys = sorted({key for assets in upstream for key in assets.keys}, key=lambda k: k.path)

    @dg.asset(
        key=PUBLICATION,
        group_name="serving",
        kinds={"duckdb"},
        deps=upstream_keys,
        check_specs=[
            dg.AssetCheckSpec(
                STORE_FRESH,
                asset=PUBLICATION,
                description="The serving store holds a run younger than "
                "CDP_SERVING_MAX_AGE_HOURS (also evaluated by a sensor).",
            )
        ],
        description="Copies the public tables (dbt meta serving.publish), BI-safe views and the record of "
        "published runs to the serving store, atomically, once every stage and check passed.",
    )
    def publication(context: dg.AssetExecutionContext):
        checks = _check_summary(context.instance, context.run_id)
        failed = checks["checks_failed"]
        if failed:
            raise dg.Failure(
                description=f"not publishing run {context.run_id}: {len(failed)} check(s) failed: "
                f"{', '.join(failed[:10])}. Readers keep the previous publication.",
            )
        paths = current_paths()
        progress.report("publish", str(paths.serving_store))
        checks.update(_load_summary(str(paths.warehouse), context.run_id))
        checks["skipped_definitions"] = list(skipped)
        for line in skipped:
            context.log.warning(f"published without it: {line}")
        run = context.instance.get_run_by_id(context.run_id)
        run_stats = context.instance.get_run_stats(context.run_id) if run else None
        started_at = (
            dt.datetime.fromtimestamp(run_stats.start_time, dt.UTC).replace(tzinfo=None)
            if run_stats and run_stats.start_time
            else None
        )
        published = publish(
            paths.warehouse, paths.serving_store, run_id=context.run_id, started_at=started_at, checks=checks
        )
        return dg.MaterializeResult(
            metadata={
                "store": str(published.store),
                "publish_seconds": round(published.seconds, 2),
                "store_mib": round(published.store_bytes / 2**20, 1),
                "skipped_definitions": dg.MetadataValue.md("\n".join(f"- {line}" for line in skipped) or "none"),
                **{f"rows {name}": count for name, count in published.row_counts.items()},
            },
            check_results=[_verify_store(context.run_id)],
        )

    return publication


def _verify_store(run_id: str) -> dg.AssetCheckResult:
    evaluation = store_freshness()
    holds_this_run = evaluation.metadata.get("run_id") and evaluation.metadata["run_id"].value == run_id
    return dg.AssetCheckResult(
        check_name=STORE_FRESH,
        passed=bool(evaluation.passed and holds_this_run),
        severity=dg.AssetCheckSeverity.WARN,
        metadata=evaluation.metadata,
        description=evaluation.description
        if holds_this_run
        else f"the serving store does not hold run {run_id} after publishing: {evaluation.description}",
    )


@dg.sensor(
    name="serving_store_freshness",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 5 minutes: reports the age of the serving store's published run as the "
    f"{STORE_FRESH} check of serving/publication.",
)
def serving_store_freshness_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    evaluation = store_freshness()
    cursor = context.cursor
    if not evaluation.passed:
        # Alert once per stale publication (the cursor remembers which one was reported).
        run_id = evaluation.metadata.get("run_id")
        stale = str(run_id.value if run_id is not None else "nothing published")
        if stale != context.cursor:
            from cdp.alerts import Alert, load_alert_config, send

            config = load_alert_config()
            if config is not None:
                send(Alert("freshness", "cdp serving store is stale", (evaluation.description or "",)), config)
            cursor = stale
    else:
        cursor = None
    return dg.SensorResult(asset_events=[evaluation], cursor=cursor)
