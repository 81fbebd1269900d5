"""Every dbt model, seed and test, built in one `dbt build`; dbt tests become asset checks."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from cdp.dbt import MANIFEST_PATH, prepare_manifest
from orchestration.dbt import TRANSLATOR

prepare_manifest()


@dbt_assets(manifest=MANIFEST_PATH, dagster_dbt_translator=TRANSLATOR)
def cdp_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    # Unit tests are for development and CI (tests/e2e), not for every scheduled build.
    yield from dbt.cli(["build", "--exclude-resource-type", "unit_test"], context=context).stream()
