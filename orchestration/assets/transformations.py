"""Every dbt model, seed and test, built in one `dbt build`; dbt tests become asset checks."""


import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.dbt_project import DBT_PROJECT, TRANSLATOR, prepare_manifest

prepare_manifest()


@dbt_assets(manifest=DBT_PROJECT.manifest_path, dagster_dbt_translator=TRANSLATOR)
def cdp_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    # Unit tests are for development and CI (tests/test_pipeline_e2e.py), not for every scheduled build.
    yield from dbt.cli(["build", "--exclude-resource-type", "unit_test"], context=context).stream()
