"""The trait catalogue is the columns of profile_traits (models/profiles/_profile_traits.yml); the
generated macros/trait_catalogue.sql that dbt unit tests need is derived from it and checked here."""

from __future__ import annotations

import shutil

import pytest

from cdp.settings import DBT_PROJECT_DIR
from cdp.traits import CATALOGUE_MACRO, TRAITS_YAML, TraitError, declared_traits, render_trait_catalogue


def test_the_generated_trait_catalogue_matches_the_trait_columns():
    assert (DBT_PROJECT_DIR / CATALOGUE_MACRO).read_text() == render_trait_catalogue(declared_traits()), (
        "run `cdp sources check` to regenerate dbt_project/macros/trait_catalogue.sql"
    )


def test_every_trait_is_a_contract_column_and_only_those_with_meta_trait_are_traits():
    names = [trait["name"] for trait in declared_traits()]
    assert names[:2] == ["lifetime_orders", "lifetime_revenue"] and names[-1] == "rfm_monetary_score"
    assert "profile_id" not in names and "rfm_group" not in names
    assert {
        "name": "average_order_value",
        "data_type": "decimal(18, 2)",
        "expression": "lifetime_revenue / nullif(lifetime_orders, 0)",
    } in declared_traits()


def test_a_trait_without_data_type_is_refused(tmp_path):
    path = tmp_path / TRAITS_YAML
    path.parent.mkdir(parents=True)
    shutil.copy(DBT_PROJECT_DIR / TRAITS_YAML, path)
    text = path.read_text()
    path.write_text(text.replace("      - name: orders_90d\n        data_type: bigint\n", "      - name: orders_90d\n"))
    with pytest.raises(TraitError, match=r"trait orders_90d has no data_type"):
        declared_traits(tmp_path)
