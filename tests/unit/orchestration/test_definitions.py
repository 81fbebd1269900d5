"""The Dagster definitions load and wire every stage into one graph; a snapshot of every asset key,
check, job, schedule and sensor catches any change to what the code location offers."""

from __future__ import annotations

import json
import os
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")


def _key(asset_key) -> str:
    return asset_key.to_user_string()


def definitions_snapshot() -> dict[str, list[str]]:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    return {
        "assets": sorted(_key(key) for key in graph.get_all_asset_keys()),
        "checks": sorted(f"{_key(key.asset_key)}:{key.name}" for key in graph.asset_check_keys),
        "jobs": sorted(job.name for job in defs.jobs or []),
        "schedules": sorted(f"{schedule.name} {schedule.cron_schedule}" for schedule in defs.schedules or []),
        "sensors": sorted(sensor.name for sensor in defs.sensors or []),
    }


def test_definitions_match_the_snapshot():
    """Regenerate with CDP_UPDATE_SNAPSHOT=1 after an intended change, and review the diff."""
    current = definitions_snapshot()
    if os.environ.get("CDP_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=1) + "\n")
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT}: run this test once with CDP_UPDATE_SNAPSHOT=1"
    expected = json.loads(SNAPSHOT.read_text())
    for part in expected:
        missing = sorted(set(expected[part]) - set(current[part]))
        added = sorted(set(current[part]) - set(expected[part]))
        assert not missing and not added, (
            f"{part}: missing {missing}, new {added}; if intended, rerun with CDP_UPDATE_SNAPSHOT=1"
        )


def test_asset_graph_has_every_stage_connected():
    from orchestration.definitions import PIPELINE_JOB_NAME, defs

    graph = defs.resolve_asset_graph()
    keys = {_key(key): key for key in graph.get_all_asset_keys()}
    for expected in (
        "raw/crm__contacts",
        "raw/preferences__consents",
        "staging/stg_crm__contacts",
        "xdm/xdm_identities",
        "identity/identity_graph",
        "profiles/profiles",
        "profiles/profile_traits",
        "segments/seg_high_value",
        "activation/high_value_to_csv",
    ):
        assert expected in keys, f"asset {expected} missing from the graph"

    def parents(name: str) -> set[str]:
        return {_key(key) for key in graph.get(keys[name]).parent_keys}

    # Lineage runs from the source load through dbt to the sync.
    assert "segments/seg_high_value" in parents("activation/high_value_to_csv")
    assert "raw/crm__contacts" in parents("staging/stg_crm__contact_versions")
    assert "staging/stg_crm__contact_versions" in parents("staging/stg_crm__contacts")

    assert defs.resolve_job_def(PIPELINE_JOB_NAME) is not None
    assert any(s.job_name == PIPELINE_JOB_NAME for s in defs.schedules)


def test_dbt_tests_and_contract_results_are_asset_checks():
    checks = definitions_snapshot()["checks"]
    assert "raw/crm__contacts:rows_accounted" in checks
    assert "raw/crm__contacts:reject_rate_within_contract" in checks
    assert any(check.startswith("profiles/profiles:") and "unique" in check for check in checks)


def test_publication_runs_after_every_other_asset():
    from orchestration.assets.serving import PUBLICATION
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    everything_else = set(graph.get_all_asset_keys()) - {PUBLICATION}
    assert graph.get(PUBLICATION).parent_keys == everything_else
    assert any(sensor.name == "serving_store_freshness" for sensor in defs.sensors)


def test_campaign_analytics_run_after_every_sync():
    """The analytics models read the ledger the syncs write (dbt sources activation.*): the ledger's asset
    depends on every sync, so a run measures the exposures it just made."""
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {_key(key): key for key in graph.get_all_asset_keys()}
    syncs = {
        name
        for name in keys
        if name.startswith("activation/") and name.split("/")[1] not in ("sync_ledger", "sync_runs")
    }
    assert {_key(k) for k in graph.get(keys["activation/sync_ledger"]).parent_keys} == syncs
    members = {_key(k) for k in graph.get(keys["analytics/campaign_members"]).parent_keys}
    assert {"activation/sync_ledger", "activation/sync_runs", "profiles/profile_events"} <= members


def test_full_refresh_reaches_dbt_from_the_cli_and_the_ui_job():
    """`cdp run --full-refresh` and the job cdp_pipeline_full_refresh give the dbt op a config that the
    pipeline job accepts (a wrong op name or key fails validation), and that config adds dbt's flag."""
    import dagster as dg

    from orchestration.assets.transformations import dbt_build_args, full_refresh_run_config
    from orchestration.definitions import PIPELINE_JOB_NAME, defs

    job = defs.resolve_job_def(PIPELINE_JOB_NAME)
    dg.validate_run_config(job, full_refresh_run_config())
    refresh_job = defs.resolve_job_def(f"{PIPELINE_JOB_NAME}_full_refresh")
    assert refresh_job.asset_selection == job.asset_selection
    assert "--full-refresh" in dbt_build_args(full_refresh=True)
    assert "--full-refresh" not in dbt_build_args(full_refresh=False)
    try:
        dg.validate_run_config(job, {"ops": {"cdp_dbt_models": {"config": {"full_refresh": "yes"}}}})
    except dg.DagsterInvalidConfigError:
        pass
    else:
        raise AssertionError("the dbt op's config is not checked: a wrong value was accepted")
