"""`cdp run --skip-unchanged` (issue 20's fast path) skips only when nothing a run depends on changed since
the last complete run: landing files, project, as-of day, and the warehouse as that run left it."""

from __future__ import annotations

import os

import duckdb

from cdp.run_fingerprint import remember_run, syncs_delivered_everything, unchanged_since_last_run
from cdp.settings import Paths


def make_paths(tmp_path) -> Paths:
    paths = Paths(tmp_path, tmp_path / "warehouse.duckdb", tmp_path / "serving" / "published.duckdb")
    orders = paths.landing_dir / "webshop" / "orders"
    orders.mkdir(parents=True)
    (orders / "orders_1.jsonl").write_text('{"order_id": "o1"}\n')
    duckdb.connect(str(paths.warehouse)).close()
    return paths


def test_a_run_with_nothing_new_is_recognised_and_any_change_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("CDP_AS_OF", "2026-06-30")
    paths = make_paths(tmp_path)
    assert unchanged_since_last_run(paths) is None  # no run yet
    remember_run(paths, "run-1", complete=True)
    assert unchanged_since_last_run(paths).run_id == "run-1"

    # A new landing file.
    (paths.landing_dir / "webshop" / "orders" / "orders_2.jsonl").write_text('{"order_id": "o2"}\n')
    assert unchanged_since_last_run(paths) is None
    remember_run(paths, "run-2", complete=True)
    assert unchanged_since_last_run(paths).run_id == "run-2"

    # A file delivered again under the same name, with other content.
    (paths.landing_dir / "webshop" / "orders" / "orders_2.jsonl").write_text('{"order_id": "o2", "x": 1}\n')
    assert unchanged_since_last_run(paths) is None
    remember_run(paths, "run-3", complete=True)

    # Another as-of day.
    monkeypatch.setenv("CDP_AS_OF", "2026-07-01")
    assert unchanged_since_last_run(paths) is None
    monkeypatch.setenv("CDP_AS_OF", "2026-06-30")
    assert unchanged_since_last_run(paths).run_id == "run-3"

    # Another writer changed the warehouse (cdp sync, cdp privacy erase, cdp quarantine accept ...).
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("create table erased as select 1 as x")
    assert unchanged_since_last_run(paths) is None
    remember_run(paths, "run-4", complete=True)

    # A changed sync spec (the project).
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    monkeypatch.setenv("CDP_SYNCS_DIR", str(syncs))
    remember_run(paths, "run-5", complete=True)
    (syncs / "new_sync.yml").write_text("name: new_sync\n")
    assert unchanged_since_last_run(paths) is None

    # A run that left something to retry (or failed) is never skipped after.
    remember_run(paths, "run-6", complete=False)
    assert unchanged_since_last_run(paths) is None


def test_a_run_is_complete_only_when_every_sync_delivered_every_row(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    assert syncs_delivered_everything(con, "r1")  # no sync state at all
    con.execute("create schema activation")
    con.execute("create table activation.sync_runs (run_id varchar, status varchar, failed bigint, not_sent bigint)")
    con.execute("insert into activation.sync_runs values ('r1', 'succeeded', 0, 0), ('r1', 'succeeded', 0, null)")
    assert syncs_delivered_everything(con, "r1")
    con.execute("insert into activation.sync_runs values ('r2', 'succeeded', 0, 0), ('r2', 'partial', 3, 0)")
    assert not syncs_delivered_everything(con, "r2")
    con.execute("insert into activation.sync_runs values ('r3', 'succeeded', 0, 12)")
    assert not syncs_delivered_everything(con, "r3")
    con.close()


def test_the_fingerprint_ignores_what_the_run_writes_beside_its_inputs(tmp_path, monkeypatch):
    """Logs, dbt's target folders and Dagster's records are written by every run: not inputs."""
    monkeypatch.setenv("CDP_AS_OF", "2026-06-30")
    paths = make_paths(tmp_path)
    remember_run(paths, "run-1", complete=True)
    for folder in ("dagster", "dbt-target/run-2", "logs"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "written.txt").write_text("x")
    os.utime(paths.landing_dir)  # the landing folder itself touched: its files are what count
    assert unchanged_since_last_run(paths).run_id == "run-1"
