"""Every dbt model, seed and test, built in one `dbt build`; dbt tests become asset checks.

When the build fails, the step fails with what dbt said about each failed model or test (from the
invocation's run_results.json), not with "dbt exited 1": the CLI and the alerts print that first."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from cdp import progress
from cdp.dbt import MANIFEST_PATH, prepare_manifest, run_target_path
from cdp.settings import current_paths
from orchestration.dbt import TRANSLATOR
from orchestration.resources import WarehouseResource

prepare_manifest()

FAILED_STATUSES = ("error", "fail", "runtime error")
DBT_OP_NAME = "cdp_dbt_models"


class DbtBuildConfig(dg.Config):
    """`full_refresh`: rebuild every incremental model from raw (`cdp run --full-refresh`, or the job
    cdp_pipeline_full_refresh). Identity state (stable profile ids) and the append-only history tables
    are `full_refresh: false` in dbt: a refresh keeps them."""

    full_refresh: bool = False


def full_refresh_run_config() -> dict:
    return {"ops": {DBT_OP_NAME: {"config": {"full_refresh": True}}}}


def dbt_build_args(full_refresh: bool) -> list[str]:
    # Unit tests are for development and CI (tests/e2e), not for every scheduled build.
    return ["build", "--exclude-resource-type", "unit_test", *(["--full-refresh"] if full_refresh else [])]


def dbt_failures(run_results: dict) -> list[str]:
    """One line per failed node: `model staging.stg_x: <dbt's message>` (tests: how many rows failed)."""
    lines = []
    for result in run_results.get("results", []):
        if str(result.get("status", "")).lower() not in FAILED_STATUSES:
            continue
        unique_id = result.get("unique_id", "?")
        kind, _, rest = unique_id.partition(".")
        name = rest.partition(".")[2] or rest
        message = " ".join(str(result.get("message") or "").split())
        if kind == "test" and result.get("failures") is not None:
            message = f"{result['failures']} failing row(s). {message}".strip()
        lines.append(f"dbt {kind} {name}: {message[:800]}")
    return lines


@dbt_assets(manifest=MANIFEST_PATH, dagster_dbt_translator=TRANSLATOR, name=DBT_OP_NAME)
def cdp_dbt_models(
    context: dg.AssetExecutionContext, config: DbtBuildConfig, dbt: DbtCliResource, warehouse: WarehouseResource
):
    # dbt opens the file in its own process: first wait for any reader (a BI tool on the wrong file)
    # to let go, rather than failing the build on DuckDB's file lock.
    warehouse.wait_until_writable()
    # One target folder for the run's dbt invocations: each re-parses only what changed (cdp/dbt.py).
    target = run_target_path(current_paths().data_dir / "dbt-target", context.run_id)
    invocation = dbt.cli(dbt_build_args(config.full_refresh), context=context, raise_on_error=False, target_path=target)
    total = len(context.selected_asset_keys)
    done = 0
    for event in invocation.stream():
        if isinstance(event, dg.Output | dg.AssetMaterialization):
            done += 1
            key = event.asset_key if isinstance(event, dg.AssetMaterialization) else None
            name = key.to_user_string() if key else event.output_name
            rows = (event.metadata or {}).get("dagster/row_count") or (event.metadata or {}).get("rows_affected")
            progress.report("dbt build", name, done=done, total=total, rows=getattr(rows, "value", rows))
        yield event
    if not invocation.is_successful():
        try:
            failures = dbt_failures(invocation.get_artifact("run_results.json"))
        except Exception:  # no run results (dbt failed before building): its log says why
            failures = []
        raise dg.Failure(
            description="\n".join(failures)
            or f"dbt build failed before building anything; see {invocation.target_path / 'dbt.log'} "
            "or run `dbt build` in dbt_project/",
            metadata={"failed_nodes": len(failures), "dbt_command": " ".join(invocation.dbt_command)},
        )
