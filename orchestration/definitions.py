"""Dagster definitions: `dagster dev -w workspace.yaml` loads this module."""

from __future__ import annotations

import dagster as dg

from cdp.settings import current_paths, export_paths
from orchestration.assets.activation import POLICY_CHECKS, SYNC_ASSETS
from orchestration.assets.predictions import PREDICTION_ASSETS, TRAINED_MODELS
from orchestration.assets.serving import build_publication_asset, serving_store_freshness_sensor
from orchestration.assets.sources import SOURCE_LOAD_ASSETS
from orchestration.assets.transformations import cdp_dbt_models
from orchestration.dbt import dbt_resource
from orchestration.resources import WarehouseResource

PIPELINE_JOB_NAME = "cdp_pipeline"

paths = current_paths()
export_paths(paths)  # dbt's subprocess reads CDP_WAREHOUSE

BUILD_ASSETS = [*SOURCE_LOAD_ASSETS, cdp_dbt_models, *PREDICTION_ASSETS, *SYNC_ASSETS]
publication = build_publication_asset(BUILD_ASSETS)

pipeline_job = dg.define_asset_job(
    PIPELINE_JOB_NAME,
    selection=dg.AssetSelection.all(),
    description="Load every source, build every dbt model and test, sync every audience, then publish "
    "the public tables to the serving store.",
    # One process: DuckDB allows one writer per file, and on 2 cores it is also the fastest.
    executor_def=dg.in_process_executor,
)

daily_schedule = dg.ScheduleDefinition(
    name="cdp_pipeline_daily", job=pipeline_job, cron_schedule="0 3 * * *", execution_timezone="UTC"
)

model_retraining_job = dg.define_asset_job(
    "model_retraining",
    selection=dg.AssetSelection.assets(TRAINED_MODELS),
    description="Retrain the predictive models (the daily pipeline only retrains stale ones).",
    config={"ops": {"predictions__trained_models": {"config": {"force_retrain": True}}}},
    executor_def=dg.in_process_executor,
)

weekly_retraining_schedule = dg.ScheduleDefinition(
    name="model_retraining_weekly", job=model_retraining_job, cron_schedule="0 2 * * 0", execution_timezone="UTC"
)

defs = dg.Definitions(
    assets=[*BUILD_ASSETS, publication],
    asset_checks=POLICY_CHECKS,
    jobs=[pipeline_job, model_retraining_job],
    schedules=[daily_schedule, weekly_retraining_schedule],
    sensors=[serving_store_freshness_sensor],
    resources={
        "warehouse": WarehouseResource(path=str(paths.warehouse)),
        "dbt": dbt_resource(),
    },
    executor=dg.in_process_executor,
)
