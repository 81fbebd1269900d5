"""One typo breaks only itself (issue 21.1, 21.2): in a clone of the project with an invalid audience
YAML, an invalid sync spec and a valid sync of the invalid audience next to a new valid audience and its
sync, `cdp run` on a copy of the shared runs' data must load the Dagster definitions, build and sync the
valid audience, publish, say in its publication what it skipped, and fail naming each broken definition
with its precise message first (file, path inside it, what was found, what is allowed), then the log."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from support.pipeline_runs import copy_workspace
from support.workspace import PROJECT_ROOT, Workspace

PROJECT_PARTS = ("cdp", "activation", "data_contracts", "orchestration", "dbt_project", "tools", "workspace.yaml")
IGNORED = shutil.ignore_patterns("target", "logs", "__pycache__", "*.duckdb", "*.wal")

BROKEN_AUDIENCE = """\
name: broken_typo
description: A marketer's typo in an operator.
conditions:
  - {field: traits.lifetime_revenue, op: greater_than, value: 100}
"""

NEW_AUDIENCE = """\
name: big_spenders
description: Known profiles with lifetime revenue of at least 700.
conditions:
  - {field: profile.is_known, op: eq, value: true}
  - {field: traits.lifetime_revenue, op: gte, value: 700}
"""

NEW_SYNC = """\
name: big_spenders_to_csv
audience: segments.seg_big_spenders
primary_key: profile_id
mode: mirror
fields: {profile_id: profile_id, email: email}
destination: {type: file, format: csv, path: destinations/big_spenders}
marketing_actions: [call_centre_outreach]
"""

SYNC_OF_THE_BROKEN_AUDIENCE = NEW_SYNC.replace("big_spenders", "broken_typo")

BROKEN_SYNC = NEW_SYNC.replace("big_spenders_to_csv", "typo_sync").replace("mode: mirror", "mode: mirorr")


def copy_project(root: Path) -> Path:
    for part in PROJECT_PARTS:
        source = PROJECT_ROOT / part
        if source.is_dir():
            shutil.copytree(source, root / part, ignore=IGNORED)
        else:
            shutil.copy(source, root / part)
    return root


@pytest.fixture(scope="module")
def broken_run(runs, tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("typo_clone"))
    (project / "dbt_project" / "audiences" / "broken_typo.yml").write_text(BROKEN_AUDIENCE)
    (project / "dbt_project" / "audiences" / "big_spenders.yml").write_text(NEW_AUDIENCE)
    syncs = project / "activation" / "syncs"
    (syncs / "big_spenders_to_csv.yml").write_text(NEW_SYNC)
    (syncs / "broken_typo_to_csv.yml").write_text(SYNC_OF_THE_BROKEN_AUDIENCE)
    (syncs / "typo_sync.yml").write_text(BROKEN_SYNC)
    data = copy_workspace(runs, lambda name: Workspace(tmp_path_factory.mktemp(name)), "typo_data")
    workspace = Workspace(data.data_dir, project_root=project)
    result = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "run"],
        cwd=project,
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    return workspace, project, result


def test_the_run_fails_naming_each_broken_definition_first(broken_run):
    _, _, result = broken_run
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stderr.splitlines()
    first = [line for line in lines if not line.startswith("warning: ")]  # compile warnings come first
    assert first[0].startswith("error: pipeline run ") and first[0].endswith(" failed:"), result.stderr
    reasons = "\n".join(first[1:4])
    assert (
        "segments/seg_broken_typo: invalid audience definition: audiences/broken_typo.yml: conditions[0]" in reasons
    ), result.stderr
    assert "'greater_than'" in reasons and "gte" in reasons, result.stderr  # found, and what is allowed
    assert "activation/typo_sync: invalid sync definition:" in reasons and "mirorr" in reasons, result.stderr
    assert "Traceback" not in result.stderr
    log_line = next(i for i, line in enumerate(first) if line.startswith("full log: "))
    assert log_line <= 6 and "last_run.log" in first[log_line], result.stderr


def test_the_valid_audience_and_its_sync_run_beside_the_broken_ones(broken_run):
    workspace, _, _ = broken_run
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        members = {r[0] for r in con.execute("select profile_id from segments.seg_big_spenders").fetchall()}
        expected = {
            r[0]
            for r in con.execute(
                "select p.profile_id from profiles.profiles p join profiles.profile_traits t using (profile_id) "
                "where p.is_known and t.lifetime_revenue >= 700"
            ).fetchall()
        }
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert members and members == expected
    assert "seg_broken_typo" not in tables
    current = workspace.data_dir / "destinations" / "big_spenders" / "big_spenders_to_csv__current.csv"
    with current.open() as file:
        assert {row["profile_id"] for row in csv.DictReader(file)} == members


def test_publication_says_what_it_skipped(broken_run):
    workspace, _, result = broken_run
    with duckdb.connect(str(workspace.serving_store), read_only=True) as con:
        run_id, checks = con.execute(
            "select run_id, checks from serving.publications order by published_at desc limit 1"
        ).fetchone()
    assert run_id in result.stderr.splitlines()[0] or run_id in result.stdout
    skipped = json.loads(checks)["skipped_definitions"]
    assert any(item.startswith("audience broken_typo skipped: audiences/broken_typo.yml") for item in skipped), skipped
    assert any(item.startswith("sync typo_sync skipped:") for item in skipped), skipped
    assert "sync broken_typo_to_csv skipped: its audience's definition is invalid" in skipped
    assert "published without audience broken_typo skipped" in result.stdout


def test_the_code_location_loads_and_shows_the_broken_definitions_as_failing_assets(broken_run):
    workspace, project, _ = broken_run
    code = (
        "import json; from orchestration.definitions import defs; graph = defs.resolve_asset_graph(); "
        "specs = {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys()}; "
        "print(json.dumps({'assets': sorted(specs), "
        "'broken': (specs['segments/seg_broken_typo'].description or ''), "
        "'jobs': sorted(j.name for j in defs.jobs), 'schedules': sorted(s.name for s in defs.schedules)}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=workspace.env, capture_output=True, text=True, timeout=600
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    found = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert {"segments/seg_big_spenders", "activation/big_spenders_to_csv", "activation/typo_sync"} <= set(
        found["assets"]
    )
    assert found["broken"].startswith("INVALID AUDIENCE DEFINITION (broken_typo.yml): audiences/broken_typo.yml")
    assert "cdp_pipeline" in found["jobs"] and "cdp_pipeline_daily" in found["schedules"]
    # `cdp sync <another>` works while one spec is broken.
    synced = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "sync", "big_spenders_to_csv"],
        cwd=project,
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert synced.returncode == 0, synced.stderr
    assert "big_spenders_to_csv" in synced.stdout
