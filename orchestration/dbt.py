"""The dbt project as Dagster sees it: asset keys by warehouse schema, dbt tests as asset checks."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject
from packaging import version

from cdp.dbt import DBT_EXECUTABLE
from cdp.settings import DBT_PROJECT_DIR

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR)


class CdpDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, but the dbt version comes from the dbt-core installed beside this Python
    (DBT_EXECUTABLE is that installation's `dbt`), not from running `dbt --version`: 2-3 s per run."""

    @cached_property
    def _cli_version(self) -> version.Version:
        from dbt.version import __version__

        return version.parse(__version__)


def dbt_resource() -> DbtCliResource:
    return CdpDbtCliResource(project_dir=DBT_PROJECT, dbt_executable=DBT_EXECUTABLE)


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
