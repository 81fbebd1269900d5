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


# --- what a BI user and an operator see on the shared runs -----------------------------------------


def published_columns(store: Path) -> dict[str, list[tuple[str, str | None]]]:
    """relation -> [(column, comment)] of every published table and BI-safe view in the store."""
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute(
            "select schema_name || '.' || table_name, column_name, comment from duckdb_columns() "
            "where schema_name not in ('serving', 'information_schema', 'pg_catalog', 'main') "
            "order by schema_name, table_name, column_index"
        ).fetchall()
    found: dict[str, list] = {}
    for relation, column, comment in rows:
        found.setdefault(relation, []).append((column, comment))
    return found


def test_every_published_column_has_a_description_in_the_store(runs):
    from cdp.serving.publish import published_tables

    found = published_columns(runs.workspace.serving_store)
    relations = [table.relation for table in published_tables()]
    assert relations and set(relations) <= set(found)
    missing = [
        f"{relation}.{column}"
        for relation in relations + [f"bi.{r.split('.', 1)[1]}" for r in relations]
        for column, comment in found[relation]
        if not (comment or "").strip()
    ]
    assert not missing, f"{len(missing)} published column(s) without a description: {missing[:30]}"
    with duckdb.connect(str(runs.workspace.serving_store), read_only=True) as con:
        tables_without = con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() where schema_name <> 'serving' "
            "and coalesce(comment, '') = ''"
        ).fetchall()
    assert not tables_without, tables_without
    # A trait column of an audience carries the trait catalogue's description.
    high_value = dict(found["segments.seg_high_value"])
    traits = dict(found["profiles.profile_traits"])
    assert high_value["lifetime_revenue"] == traits["lifetime_revenue"]


def test_the_readme_bi_install_line_reflects_every_published_table(runs):
    """The README's install line pins versions that work together; the test environment holds exactly
    those, and SQLAlchemy reflects every published table and view (columns and their comments)."""
    import importlib.metadata as metadata
    import re

    import sqlalchemy as sa

    readme = (PROJECT_ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "pip install" in line and "duckdb-engine" in line)
    pins = dict(re.findall(r"([A-Za-z][\w-]*)==([\w.]+)", line))
    assert {"duckdb", "duckdb-engine", "sqlalchemy"} <= {name.lower() for name in pins}, line
    for name, version in pins.items():
        assert metadata.version(name) == version, f"{name}: README pins {version}, installed {metadata.version(name)}"
    found = published_columns(runs.workspace.serving_store)  # before the engine: DuckDB refuses a second config
    engine = sa.create_engine(f"duckdb:///{runs.workspace.serving_store}?access_mode=read_only")
    try:
        inspector = sa.inspect(engine)
        for relation, columns in found.items():
            schema, name = relation.split(".", 1)
            reflected = inspector.get_columns(name, schema=schema)
            assert [c["name"] for c in reflected] == [c for c, _ in columns], relation
    finally:
        engine.dispose()


def test_policy_check_counts_audiences_only(runs):
    from cdp.audiences import list_audiences

    syncs = len(list((PROJECT_ROOT / "activation" / "syncs").glob("*.yml")))
    out = runs.workspace.cdp("policy", "check").stdout
    assert out.strip().splitlines()[-1].endswith(f"over {syncs} sync(s) and {len(list_audiences())} audience(s)"), out


def test_summary_labels_each_syncs_counts_with_its_run(runs):
    out = runs.workspace.cdp("summary").stdout
    assert "syncs, the latest run of each:" in out, out
    with duckdb.connect(str(runs.workspace.warehouse), read_only=True) as con:
        latest = dict(
            con.execute("select sync_name, arg_max(run_id, started_at) from activation.sync_runs group by 1").fetchall()
        )
    for name, run_id in latest.items():
        line = next(line for line in out.splitlines() if line.startswith(f"sync {name} "))
        assert f"(run {run_id}, " in line, line
