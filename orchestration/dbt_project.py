"""The dbt project as Dagster sees it: asset keys by warehouse schema, and a manifest kept fresh."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject

from orchestration.settings import DBT_PROJECT_DIR

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR)
# The dbt installed beside this Python, so the CLI works from a venv that is not activated.
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))

_SOURCE_FILES = ("*.sql", "*.py", "*.yml", "*.csv")


def manifest_is_stale() -> bool:
    manifest = DBT_PROJECT.manifest_path
    if not manifest.exists():
        return True
    built_at = manifest.stat().st_mtime
    return any(
        path.stat().st_mtime > built_at
        for pattern in _SOURCE_FILES
        for path in DBT_PROJECT_DIR.rglob(pattern)
        if "target" not in path.parts and "logs" not in path.parts
    )


def prepare_manifest() -> None:
    """Compile the YAML audiences into dbt models (files change only when a definition did), then
    parse the dbt project when its manifest is missing or older than a model, macro or seed, so
    `cdp`, tests and `dagster dev` always load the current asset graph and audiences."""
    from orchestration.audiences import write_audiences

    write_audiences()
    if manifest_is_stale():
        dbt = DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE)
        dbt.cli(["parse", "--quiet"], target_path=DBT_PROJECT.target_path).wait()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE)


class CdpDbtTranslator(DagsterDbtTranslator):
    """Asset keys name the warehouse schema: ["staging", "stg_crm__contacts"], and a dbt source is
    the table the Python asset upstream writes: ["raw", "crm__contacts"], ["predictions", ...]."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["identifier"]])
        schema = dbt_resource_props.get("config", {}).get("schema") or "main"
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return dbt_resource_props.get("config", {}).get("schema") or "dbt"


TRANSLATOR = CdpDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
