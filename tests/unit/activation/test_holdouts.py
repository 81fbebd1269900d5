"""Holdouts are honoured by default: a sync of an audience with splits sends only the members outside
its holdout, to every kind of destination, and the ledger and sync_runs count those held out (issue 23).
Each test checks what the destination holds against the audience's own split columns."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pytest

import activation
from activation import ActivationError, load_sync_spec

FAST_HTTP = "  timeout_s: 0.5\n  max_attempts: 4\n  backoff_s: 0.01\n  max_backoff_s: 0.05\n"


def members(n: int) -> list[tuple]:
    """profile_id, email, phone, first_name, split_name, is_holdout: every fourth member held out."""
    return [
        (
            f"p{i:04d}",
            f"user{i}@example.com",
            f"+4479460{i:05d}",
            f"Name{i}",
            "holdout" if i % 4 == 0 else "campaign",
            i % 4 == 0,
        )
        for i in range(n)
    ]


def set_audience(con: duckdb.DuckDBPyConnection, rows: list[tuple], *, with_splits: bool = True) -> None:
    con.execute("create schema if not exists segments")
    split_columns = ", split_name varchar, is_holdout boolean" if with_splits else ""
    con.execute(
        "create or replace table segments.seg_test (profile_id varchar, email varchar, phone varchar, "
        f"first_name varchar{split_columns})"
    )
    if rows:
        width = 6 if with_splits else 4
        con.executemany(
            f"insert into segments.seg_test values ({', '.join('?' * width)})", [row[:width] for row in rows]
        )


def write_spec(tmp_path: Path, name: str, destination: str, *, mode: str = "mirror", extra: str = "", fields=None):
    fields = fields or "  profile_id: profile_id\n  email: email\n  first_name: first_name\n"
    path = tmp_path / f"{name}.yml"
    path.write_text(
        f"name: {name}\naudience: segments.seg_test\nprimary_key: profile_id\nmode: {mode}\n"
        f"fields:\n{fields}{extra}destination:\n{destination}"
    )
    return load_sync_spec(path)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _file_keys(tmp_path: Path, pattern: str) -> set[str]:
    (path,) = sorted((tmp_path / "out").glob(pattern))
    if path.suffix == ".csv":
        return set(pl.read_csv(path, infer_schema=False)["profile_id"])
    if path.suffix == ".jsonl":
        return {json.loads(line)["profile_id"] for line in path.read_text().splitlines()}
    return set(pl.read_parquet(path)["profile_id"])


# Every destination kind and mode: (spec name, destination YAML, mode, extra spec keys, what it holds).
DESTINATIONS = {
    "file_csv_mirror": ("  type: file\n  format: csv\n  path: out\n", "mirror", ""),
    "file_jsonl_upsert": ("  type: file\n  format: jsonl\n  path: out\n", "upsert", ""),
    "file_parquet_snapshot": ("  type: file\n  format: parquet\n  path: out\n", "snapshot", ""),
    "webhook": ("  type: webhook\n  url: {url}/hook\n  secret_env: TEST_HOOK_SECRET\n" + FAST_HTTP, "mirror", ""),
    "ad_audience": (
        "  type: ad_audience\n  url: {url}\n  audience_id: '7'\n  token_env: TEST_API_TOKEN\n" + FAST_HTTP,
        "membership",
        "identifiers:\n  email_sha256: {column: email, type: email}\n",
    ),
    "email_tool": (
        "  type: email\n  url: {url}\n  list_id: L9\n  token_env: TEST_API_TOKEN\n" + FAST_HTTP,
        "mirror",
        "",
    ),
    "postgres": ("  type: postgres\n  dsn_env: TEST_PG_DSN\n  table: cdp.holdout_test\n", "mirror", ""),
}


def held_by_destination(kind: str, tmp_path: Path, server, dsn: str | None) -> set[str]:
    """The profile ids the destination holds, read from the destination itself."""
    if kind == "file_csv_mirror":
        return _file_keys(tmp_path, "*__current.csv")
    if kind == "file_jsonl_upsert":
        return _file_keys(tmp_path, "*__current.jsonl")
    if kind == "file_parquet_snapshot":
        return _file_keys(tmp_path, "*__r2*.parquet")
    if kind == "webhook":
        return set(server.webhook_held)
    if kind == "ad_audience":
        by_hash = {sha(row[1]): row[0] for row in members(40)}
        return {by_hash[member[0]] for member in server.members["7"]}
    if kind == "email_tool":
        return {contact["profile_id"] for contact in server.contacts["L9"].values()}
    with psycopg.connect(dsn) as pg:
        return {row[0] for row in pg.execute("select profile_id from cdp.holdout_test").fetchall()}


@pytest.mark.parametrize("kind", sorted(DESTINATIONS))
def test_every_destination_gets_only_members_outside_the_holdout(kind, con, tmp_path, request, monkeypatch):
    """Run twice (the second run sends nothing new): the destination holds exactly the non-holdout
    members, every run records each held-out member in the ledger with its split, and sync_runs counts them."""
    server = request.getfixturevalue("server") if kind in ("webhook", "ad_audience", "email_tool") else None
    dsn = None
    if kind == "postgres":
        dsn = request.getfixturevalue("postgres_server").dsn
        monkeypatch.setenv("TEST_PG_DSN", dsn)
    destination, mode, extra = DESTINATIONS[kind]
    fields = "  profile_id: profile_id\n" if kind == "ad_audience" else None
    spec = write_spec(
        tmp_path, kind, destination.format(url=server.url if server else ""), mode=mode, extra=extra, fields=fields
    )
    audience = members(40)
    set_audience(con, audience)
    expected_sent = {row[0] for row in audience if not row[5]}
    expected_held_out = {row[0] for row in audience if row[5]}
    first = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    second = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert (first.added, first.sent, first.held_out) == (30, 30, 10)
    assert (second.added, second.sent, second.held_out) == (0, 0, 10) or kind == "file_parquet_snapshot"
    assert held_by_destination(kind, tmp_path, server, dsn) == expected_sent
    ledger = con.execute(
        "select run_id, record_key, status, split_name from activation.sync_ledger where sync_name = ?", [kind]
    ).pl()
    for run_id in ("r1", "r2"):
        held = ledger.filter((pl.col("run_id") == run_id) & (pl.col("status") == "held_out"))
        assert set(held["record_key"]) == expected_held_out and set(held["split_name"]) == {"holdout"}
    sent = ledger.filter(pl.col("status") == "sent")
    assert set(sent["record_key"]) == expected_sent and set(sent["split_name"]) == {"campaign"}
    runs = con.execute("select run_id, held_out from activation.sync_runs order by run_id").fetchall()
    assert runs == [("r1", 10), ("r2", 10)]


def test_a_holdout_member_the_destination_holds_is_removed(con, tmp_path):
    """Rows sent before the audience had splits (or before a member moved to the holdout) are removed
    in mirror mode once the member is held out; they are not counted as held out twice."""
    spec = write_spec(tmp_path, "mirror_csv", "  type: file\n  format: csv\n  path: out\n")
    audience = members(12)
    set_audience(con, audience, with_splits=False)
    assert activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path).sent == 12
    set_audience(con, audience)
    second = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert (second.removed, second.held_out, second.added) == (3, 3, 0)
    assert _file_keys(tmp_path, "*__current.csv") == {row[0] for row in audience if not row[5]}


def test_send_holdout_true_sends_everyone(con, tmp_path):
    spec = write_spec(tmp_path, "all", "  type: file\n  format: csv\n  path: out\n", extra="send_holdout: true\n")
    set_audience(con, members(12))
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (result.sent, result.held_out) == (12, 0)
    assert not con.execute("select count(*) from activation.sync_ledger where status = 'held_out'").fetchone()[0]


def test_consent_is_decided_before_the_holdout(con, tmp_path):
    """A held-out member without the consent the sync needs is excluded for consent, not held out: the
    held-out rows are exactly those the sync would otherwise have sent, as the treated rows are."""
    spec = write_spec(
        tmp_path, "consented", "  type: file\n  format: csv\n  path: out\n", extra="consents: [marketing_email]\n"
    )
    audience = members(8)  # p0000 and p0004 held out
    set_audience(con, audience)
    con.execute("create schema if not exists profiles")
    con.execute(
        "create table profiles.profile_consents as select profile_id, 'marketing_email' as consent_purpose, "
        "case when profile_id in ('p0000', 'p0001') then 'n' else 'y' end as consent_value from segments.seg_test"
    )
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (result.sent, result.held_out, result.excluded_consent) == (5, 1, 2)
    statuses = dict(con.execute("select record_key, status from activation.sync_ledger").fetchall())
    assert statuses["p0000"] == "excluded_consent" and statuses["p0004"] == "held_out"


def test_an_audience_without_splits_holds_nobody_out(con, tmp_path):
    spec = write_spec(tmp_path, "plain", "  type: file\n  format: csv\n  path: out\n")
    set_audience(con, members(8), with_splits=False)
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (result.sent, result.held_out) == (8, 0)
    assert con.execute("select count(*) from activation.sync_ledger where split_name is not null").fetchone() == (0,)


def test_dry_run_counts_the_held_out_and_records_no_ledger_rows(con, tmp_path):
    spec = write_spec(tmp_path, "dry", "  type: file\n  format: csv\n  path: out\n")
    set_audience(con, members(8))
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path, dry_run=True)
    assert (result.added, result.held_out) == (6, 2)
    assert con.execute("select count(*) from activation.sync_ledger").fetchone() == (0,)


def test_the_run_records_the_as_of_instant_it_evaluated(con, tmp_path, monkeypatch):
    """With CDP_AS_OF set (a replay, the demo, the tests) the run records the end of that day: campaign
    analytics time exposures by it. Without it, the run used the present and records none."""
    spec = write_spec(tmp_path, "dated", "  type: file\n  format: csv\n  path: out\n")
    set_audience(con, members(4))
    monkeypatch.setenv("CDP_AS_OF", "2026-06-02")
    activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    monkeypatch.delenv("CDP_AS_OF")
    activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert con.execute("select run_id, as_of from activation.sync_runs order by run_id").fetchall() == [
        ("r1", dt.datetime(2026, 6, 3)),
        ("r2", None),
    ]


def test_send_holdout_must_be_true_or_false(tmp_path):
    with pytest.raises(ActivationError, match=r"send_holdout must be true or false; found 'yes'"):
        write_spec(tmp_path, "bad", "  type: file\n  format: csv\n  path: out\n", extra="send_holdout: 'yes'\n")
