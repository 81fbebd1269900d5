"""Dagster definitions: `dagster dev -w workspace.yaml` (or `cdp dagster`) loads this module.

It always loads: an invalid audience or sync spec becomes one failing asset (orchestration/assets/
broken.py), and the rest of the graph, its jobs and schedules stay available."""

from __future__ import annotations

import dagster as dg

from cdp.definitions import broken_audiences, syncs_of_broken_audiences
from cdp.settings import current_paths, export_paths
from orchestration.assets.activation import (
    BROKEN_SYNCS,
    POLICY_CHECKS,
    SYNC_ASSETS,
    SYNC_SPECS,
    build_sync_records_asset,
)
from orchestration.assets.broken import build_broken_definition_asset
from orchestration.assets.predictions import PREDICTION_ASSETS, TRAINED_MODELS
from orchestration.assets.serving import build_publication_asset, serving_store_freshness_sensor
from orchestration.assets.sources import SOURCE_LOAD_ASSETS
from orchestration.assets.transformations import cdp_dbt_models, full_refresh_run_config
from orchestration.dbt import dbt_resource
from orchestration.resources import WarehouseResource
from orchestration.sensors import ALERT_SENSORS

PIPELINE_JOB_NAME = "cdp_pipeline"
# Runs that write the warehouse carry this tag; dagster.yaml (written by cdp into DAGSTER_HOME)
# limits it to one run at a time, so Dagster queues a second run instead of letting it fail.
WAREHOUSE_TAG = {"cdp/warehouse": "build"}

paths = current_paths()
export_paths(paths)  # dbt's subprocess reads CDP_WAREHOUSE

BROKEN = [*broken_audiences(), *BROKEN_SYNCS]
BROKEN_ASSETS = [build_broken_definition_asset(broken) for broken in BROKEN]
# Valid syncs of an invalid audience cannot run either: they stay in the graph (and are skipped).
BLOCKED_SYNCS = syncs_of_broken_audiences(SYNC_SPECS, BROKEN)

BLOCKED_SYNC_KEYS = {dg.AssetKey(["activation", name]) for name in BLOCKED_SYNCS}
# Split once, by asset key: what can run (the sync records and the publication wait on it) and what cannot.
RUNNABLE_SYNCS = [assets for assets in SYNC_ASSETS if not set(assets.keys) & BLOCKED_SYNC_KEYS]
SKIPPED_SYNCS = [assets for assets in SYNC_ASSETS if set(assets.keys) & BLOCKED_SYNC_KEYS]
SYNC_RECORDS = build_sync_records_asset(RUNNABLE_SYNCS)
RUNNABLE_ASSETS = [*SOURCE_LOAD_ASSETS, cdp_dbt_models, *PREDICTION_ASSETS, *RUNNABLE_SYNCS, SYNC_RECORDS]
BUILD_ASSETS = [*RUNNABLE_ASSETS, *SKIPPED_SYNCS]
publication = build_publication_asset(
    RUNNABLE_ASSETS,
    skipped=[broken.describe() for broken in BROKEN]
    + [f"sync {name} skipped: its audience's definition is invalid" for name in BLOCKED_SYNCS],
)

# A sync spec with a `schedule` runs on its own schedule, not with the pipeline.
SCHEDULED_SYNCS = {name: spec for name, spec in SYNC_SPECS.items() if spec.schedule}
scheduled_sync_keys = [dg.AssetKey(["activation", name]) for name in SCHEDULED_SYNCS]

PIPELINE_SELECTION = dg.AssetSelection.all() - dg.AssetSelection.assets(*scheduled_sync_keys)
pipeline_job = dg.define_asset_job(
    PIPELINE_JOB_NAME,
    selection=PIPELINE_SELECTION,
    description="Load every source, build every dbt model and test, sync every audience, then publish "
    "the public tables to the serving store.",
    # One process: DuckDB allows one writer per file, and on 2 cores it is also the fastest.
    executor_def=dg.in_process_executor,
    tags=WAREHOUSE_TAG,
)
# The same run with every incremental dbt model rebuilt from raw (`cdp run --full-refresh`), for the UI.
full_refresh_job = dg.define_asset_job(
    f"{PIPELINE_JOB_NAME}_full_refresh",
    selection=PIPELINE_SELECTION,
    description="The pipeline with every incremental dbt model rebuilt from raw (identity's stable ids and "
    "the append-only histories are kept).",
    config=full_refresh_run_config(),
    executor_def=dg.in_process_executor,
    tags={**WAREHOUSE_TAG, "cdp/full_refresh": "true"},
)

# Shipped on: `cdp dagster` (dagster dev, with its daemon) runs them; stop one in the UI's
# Automation tab. Nothing runs while no Dagster daemon does.
daily_schedule = dg.ScheduleDefinition(
    name="cdp_pipeline_daily",
    job=pipeline_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

model_retraining_job = dg.define_asset_job(
    "model_retraining",
    selection=dg.AssetSelection.assets(TRAINED_MODELS),
    description="Retrain the predictive models (the daily pipeline only retrains stale ones).",
    config={"ops": {"predictions__trained_models": {"config": {"force_retrain": True}}}},
    executor_def=dg.in_process_executor,
    tags=WAREHOUSE_TAG,
)

weekly_retraining_schedule = dg.ScheduleDefinition(
    name="model_retraining_weekly",
    job=model_retraining_job,
    cron_schedule="0 2 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


def sync_job_and_schedule(name: str, cron: str) -> tuple[dg.UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    job = dg.define_asset_job(
        f"sync_{name}",
        selection=dg.AssetSelection.assets(dg.AssetKey(["activation", name])),
        description=f"Sync {name} on its own schedule ({cron}, from its spec).",
        executor_def=dg.in_process_executor,
        tags=WAREHOUSE_TAG,
    )
    schedule = dg.ScheduleDefinition(
        name=f"sync_{name}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return job, schedule


SYNC_JOBS_AND_SCHEDULES = [sync_job_and_schedule(name, spec.schedule) for name, spec in sorted(SCHEDULED_SYNCS.items())]

# A policy check on an invalid audience has nothing to check: its asset already fails with the reason.
broken_keys = {key for assets in BROKEN_ASSETS for key in assets.keys}
checks = [check for check in POLICY_CHECKS if not {key.asset_key for key in check.check_keys} & broken_keys]

defs = dg.Definitions(
    assets=[*BUILD_ASSETS, *BROKEN_ASSETS, publication],
    asset_checks=checks,
    jobs=[pipeline_job, full_refresh_job, model_retraining_job, *(job for job, _ in SYNC_JOBS_AND_SCHEDULES)],
    schedules=[daily_schedule, weekly_retraining_schedule, *(schedule for _, schedule in SYNC_JOBS_AND_SCHEDULES)],
    sensors=[serving_store_freshness_sensor, *ALERT_SENSORS],
    resources={
        "warehouse": WarehouseResource(path=str(paths.warehouse)),
        "dbt": dbt_resource(),
    },
    executor=dg.in_process_executor,
)
