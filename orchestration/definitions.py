"""Dagster definitions: `dagster dev -w workspace.yaml` loads this module."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.assets.activation import SYNC_ASSETS
from orchestration.assets.sources import SOURCE_LOAD_ASSETS
from orchestration.assets.transformations import cdp_dbt_models
from orchestration.dbt_project import DBT_PROJECT
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
        # The dbt installed beside this Python, so the venv works without being activated.
        "dbt": DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=str(Path(sys.executable).with_name("dbt"))),
    },
    executor=dg.in_process_executor,
)
