"""Dagster definitions: `dagster dev -w workspace.yaml` loads this module."""

from __future__ import annotations

import dagster as dg

from orchestration.assets.activation import SYNC_ASSETS
from orchestration.assets.sources import SOURCE_LOAD_ASSETS
from orchestration.assets.transformations import cdp_dbt_models
from orchestration.dbt_project import dbt_resource
from orchestration.settings import current_paths, export_paths
from orchestration.warehouse import WarehouseResource

PIPELINE_JOB_NAME = "cdp_pipeline"

paths = current_paths()
export_paths(paths)  # dbt's subprocess reads CDP_WAREHOUSE

pipeline_job = dg.define_asset_job(
    PIPELINE_JOB_NAME,
    selection=dg.AssetSelection.all(),
    description="Load every source, build every dbt model and test, sync every audience.",
    # One process: DuckDB allows one writer per file, and on 2 cores it is also the fastest.
    executor_def=dg.in_process_executor,
)

daily_schedule = dg.ScheduleDefinition(
    name="cdp_pipeline_daily", job=pipeline_job, cron_schedule="0 3 * * *", execution_timezone="UTC"
)

defs = dg.Definitions(
    assets=[*SOURCE_LOAD_ASSETS, cdp_dbt_models, *SYNC_ASSETS],
    jobs=[pipeline_job],
    schedules=[daily_schedule],
    resources={
        "warehouse": WarehouseResource(path=str(paths.warehouse)),
        "dbt": dbt_resource(),
    },
    executor=dg.in_process_executor,
)
