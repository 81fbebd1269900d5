"""The Dagster definitions load and wire every stage into one graph."""

from __future__ import annotations

import dagster as dg


def test_asset_graph_has_every_stage_connected():
    from orchestration.definitions import PIPELINE_JOB_NAME, defs

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    for expected in ("raw/crm__contacts", "raw/preferences__consents", "staging/stg_crm__contacts",
                     "xdm/xdm_identities", "identity/identity_graph", "profiles/profiles",
                     "profiles/profile_traits", "segments/seg_high_value", "activation/high_value_to_csv"):
        assert expected in keys, f"asset {expected} missing from the graph"

    # Lineage runs from the source load through dbt to the sync.
    sync_key = dg.AssetKey(["activation", "high_value_to_csv"])
    ancestors = graph.get(sync_key).parent_keys
    assert dg.AssetKey(["segments", "seg_high_value"]) in ancestors
    versions = dg.AssetKey(["staging", "stg_crm__contact_versions"])
    assert dg.AssetKey(["raw", "crm__contacts"]) in graph.get(versions).parent_keys
    assert versions in graph.get(dg.AssetKey(["staging", "stg_crm__contacts"])).parent_keys

    job = defs.resolve_job_def(PIPELINE_JOB_NAME)
    assert job is not None
    assert any(s.job_name == PIPELINE_JOB_NAME for s in defs.schedules)


def test_dbt_tests_and_contract_results_are_asset_checks():
    from orchestration.definitions import defs

    check_keys = {(key.asset_key.to_user_string(), key.name) for key in defs.resolve_asset_graph().asset_check_keys}
    assert ("raw/crm__contacts", "rows_accounted") in check_keys
    assert ("raw/crm__contacts", "reject_rate_within_contract") in check_keys
    assert any(asset == "profiles/profiles" and "unique" in name for asset, name in check_keys)


def test_publication_runs_after_every_other_asset():
    from orchestration.assets.serving import PUBLICATION
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    everything_else = set(graph.get_all_asset_keys()) - {PUBLICATION}
    assert graph.get(PUBLICATION).parent_keys == everything_else
    assert any(sensor.name == "serving_store_freshness" for sensor in defs.sensors)
