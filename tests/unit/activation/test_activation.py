"""The sync engine: diff against what the destination holds, send only changes, retry failures."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

import activation
from activation import ActivationError, Batch, BatchResult, load_sync_spec

SPEC = """\
name: vip_to_csv
audience: segments.seg_vip
primary_key: profile_id
mode: {mode}
fields:
  id: profile_id
  email: email
  revenue: revenue
destination:
  type: file
  format: {format}
  path: out
"""


def make_spec(tmp_path: Path, mode: str = "mirror", file_format: str = "csv") -> activation.SyncSpec:
    path = tmp_path / f"vip_{mode}_{file_format}.yml"
    path.write_text(SPEC.format(mode=mode, format=file_format))
    return load_sync_spec(path)


def set_audience(con, rows: list[tuple]) -> None:
    con.execute("create schema if not exists segments")
    con.execute("create or replace table segments.seg_vip (profile_id varchar, email varchar, revenue decimal(18,2))")
    if rows:
        con.executemany("insert into segments.seg_vip values (?, ?, ?)", rows)


class FlakyDestination:
    """Refuses the keys in `refuse` (as a partial batch failure), accepts the rest."""

    def __init__(self, refuse: set[str]):
        self.refuse = refuse
        self.received: list[Batch] = []

    def send(self, batch: Batch) -> BatchResult:
        self.received.append(batch)
        keys = [row["id"] for row in batch.upserts + batch.deletes]
        return BatchResult(failed={k: "503 unavailable" for k in keys if k in self.refuse})

    def finish(self, held_rows):
        return []


def counts(result) -> tuple:
    return result.added, result.changed, result.removed, result.invalid, result.sent


def test_first_run_adds_all_and_a_rerun_sends_nothing(con, tmp_path):
    spec = make_spec(tmp_path)
    set_audience(con, [("p1", "a@x.com", 10), ("p2", "b@x.com", 20)])
    first = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert counts(first) == (2, 0, 0, 0, 2)
    second = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert counts(second) == (0, 0, 0, 0, 0) and second.unchanged == 2
    change_files = sorted(p.name for p in (tmp_path / "out").glob("vip_to_csv__r*"))
    assert change_files == ["vip_to_csv__r1__00001.csv"], "a run without changes writes no change file"


def test_changes_and_removals_are_sent_alone(con, tmp_path):
    spec = make_spec(tmp_path)
    set_audience(con, [("p1", "a@x.com", 10), ("p2", "b@x.com", 20), ("p3", "c@x.com", 30)])
    activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    set_audience(con, [("p1", "a@x.com", 10), ("p2", "b@x.com", 25), ("p4", "d@x.com", 40)])
    result = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert counts(result) == (1, 1, 1, 0, 3)
    change = pl.read_csv(tmp_path / "out" / "vip_to_csv__r2__00001.csv", infer_schema=False).sort("id")
    assert change.rows() == [
        ("upsert", "p2", "b@x.com", "25.0"),
        ("delete", "p3", "c@x.com", "30.0"),
        ("upsert", "p4", "d@x.com", "40.0"),
    ]
    current = pl.read_csv(tmp_path / "out" / "vip_to_csv__current.csv", infer_schema=False).sort("id")
    assert current["id"].to_list() == ["p1", "p2", "p4"], "the current file equals the audience"


def test_upsert_mode_never_removes(con, tmp_path):
    spec = make_spec(tmp_path, mode="upsert", file_format="jsonl")
    set_audience(con, [("p1", "a@x.com", 10), ("p2", "b@x.com", 20)])
    activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    set_audience(con, [("p1", "a@x.com", 10)])
    result = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert counts(result) == (0, 0, 0, 0, 0)
    lines = (tmp_path / "out" / "vip_to_csv__current.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == ["p1", "p2"]


def test_null_and_duplicate_keys_are_invalid_and_never_sent(con, tmp_path):
    spec = make_spec(tmp_path)
    set_audience(con, [("p1", "a@x.com", 10), (None, "x@x.com", 1), ("p2", "b@x.com", 2), ("p2", "c@x.com", 3)])
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert counts(result) == (1, 0, 0, 3, 1)
    ledger = con.execute(
        "select record_key, status, error from activation.sync_ledger order by status, record_key nulls first"
    ).fetchall()
    assert ledger == [
        (None, "invalid", "null primary key"),
        ("p2", "invalid", "duplicate primary key"),
        ("p2", "invalid", "duplicate primary key"),
        ("p1", "sent", None),
    ]


def test_failed_rows_are_retried_next_run_and_then_committed(con, tmp_path):
    spec = make_spec(tmp_path)
    set_audience(con, [("p1", "a@x.com", 10), ("p2", "b@x.com", 20), ("p3", "c@x.com", 30)])
    flaky = FlakyDestination(refuse={"p2"})
    first = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path, destination=flaky)
    assert (first.sent, first.failed) == (2, 1)
    held = {k for (k,) in con.execute("select record_key from activation.sync_state").fetchall()}
    assert held == {"p1", "p3"}, "only acknowledged rows are committed"

    healthy = FlakyDestination(refuse=set())
    second = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path, destination=healthy)
    assert [row["id"] for row in healthy.received[0].upserts] == ["p2"]
    assert (second.added, second.sent, second.failed) == (1, 1, 0)
    attempts = con.execute(
        "select run_id, status, attempt from activation.sync_ledger where record_key = 'p2' order by run_id"
    ).fetchall()
    assert attempts == [("r1", "failed", 1), ("r2", "sent", 2)]


def test_dry_run_sends_and_commits_nothing(con, tmp_path):
    spec = make_spec(tmp_path)
    set_audience(con, [("p1", "a@x.com", 10)])
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path, dry_run=True)
    assert (result.added, result.sent, result.dry_run) == (1, 0, True)
    assert con.execute("select count(*) from activation.sync_state").fetchone()[0] == 0
    assert not (tmp_path / "out").exists()


def test_spec_errors_say_what_is_wrong(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(SPEC.format(mode="teleport", format="csv"))
    with pytest.raises(ActivationError, match=r"bad.yml: mode is 'teleport'; expected one of mirror, upsert"):
        load_sync_spec(path)
    path.write_text(SPEC.format(mode="mirror", format="xlsx"))
    with pytest.raises(ActivationError, match=r"format is 'xlsx'; expected one of csv, jsonl, parquet"):
        load_sync_spec(path)
    path.write_text(SPEC.format(mode="mirror", format="csv").replace("primary_key: profile_id", "primary_key: pk"))
    with pytest.raises(ActivationError, match=r"primary_key 'pk' is not among the mapped audience columns"):
        load_sync_spec(path)


def test_missing_audience_is_a_clear_error(con, tmp_path):
    with pytest.raises(ActivationError, match=r"audience table segments.seg_vip does not exist"):
        activation.run_sync(con, make_spec(tmp_path), run_id="r1", base_dir=tmp_path)


@pytest.mark.parametrize("keyed", [False, True], ids=["new-state-table", "state-table-with-primary-key"])
def test_state_holds_one_row_per_key_with_or_without_the_old_primary_key(con, tmp_path, keyed):
    """New warehouses get sync_state without a PRIMARY KEY; tables created before keep theirs and work."""
    if keyed:
        con.execute("create schema activation")
        con.execute(
            "create table activation.sync_state (sync_name VARCHAR NOT NULL, record_key VARCHAR NOT NULL, "
            "row_hash VARCHAR NOT NULL, row_json VARCHAR, first_synced_at TIMESTAMP, last_synced_at TIMESTAMP, "
            "last_run_id VARCHAR, PRIMARY KEY (sync_name, record_key))"
        )
    spec = make_spec(tmp_path)
    set_audience(con, [("p1", "a@x.com", 10), ("p2", "b@x.com", 20), ("p3", "c@x.com", 30)])
    activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    first_synced = con.execute("select first_synced_at from activation.sync_state where record_key = 'p2'").fetchone()
    set_audience(con, [("p1", "a@x.com", 10), ("p2", "b@x.com", 25), ("p4", "d@x.com", 40)])
    assert counts(activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)) == (1, 1, 1, 0, 3)
    state = con.execute(
        "select record_key, json_extract_string(row_json, '$.revenue'), last_run_id "
        "from activation.sync_state order by record_key"
    ).fetchall()
    assert state == [("p1", "10.0", "r1"), ("p2", "25.0", "r2"), ("p4", "40.0", "r2")]
    assert (
        con.execute("select first_synced_at from activation.sync_state where record_key = 'p2'").fetchone()
        == first_synced
    )
    assert counts(activation.run_sync(con, spec, run_id="r3", base_dir=tmp_path)) == (0, 0, 0, 0, 0)


def test_rows_held_without_json_are_removed_and_listed_by_key(con, tmp_path):
    """State rows without row_json (the sync went to PostgreSQL before): a file destination still
    gets the removal (by key) and lists the held row by its key."""
    spec = make_spec(tmp_path)
    set_audience(con, [("p1", "a@x.com", 10), ("p2", "b@x.com", 20)])
    activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    con.execute("update activation.sync_state set row_json = null")
    set_audience(con, [("p1", "a@x.com", 10)])
    assert counts(activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)) == (0, 0, 1, 0, 1)
    change = pl.read_csv(tmp_path / "out" / "vip_to_csv__r2__00001.csv", infer_schema=False)
    assert change.rows() == [("delete", "p2", None, None)]
    current = pl.read_csv(tmp_path / "out" / "vip_to_csv__current.csv", infer_schema=False)
    assert current.rows() == [("p1", None, None)]
