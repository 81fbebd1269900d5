"""Destinations for real: files, the webhook, the ad audience and email tool APIs against a real HTTP
server on 127.0.0.1 (tests/support/destination_servers.py), and a real PostgreSQL server. Each test checks the
destination's final state against the audience as computed independently of the engine."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pytest

import activation
from activation import ActivationError, SyncAborted, load_sync_spec
from support.workspace import PROJECT_ROOT

FAST_HTTP = "  timeout_s: 0.5\n  max_attempts: 4\n  backoff_s: 0.01\n  max_backoff_s: 0.05\n"


def write_spec(
    tmp_path: Path,
    name: str,
    destination: str,
    *,
    mode: str = "mirror",
    extra: str = "",
    fields: str = "  profile_id: profile_id\n  email: email\n  first_name: first_name\n",
) -> activation.SyncSpec:
    path = tmp_path / f"{name}.yml"
    path.write_text(
        f"name: {name}\naudience: segments.seg_test\nprimary_key: profile_id\nmode: {mode}\n"
        f"fields:\n{fields}{extra}destination:\n{destination}"
    )
    return load_sync_spec(path)


def people(n: int, start: int = 0, suffix: str = "") -> list[tuple]:
    return [
        (f"p{i:04d}", f"user{i}@example.com", f"+4479460{i:05d}", f"Name{i}{suffix}") for i in range(start, start + n)
    ]


def set_audience(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    con.execute("create schema if not exists segments")
    con.execute(
        "create or replace table segments.seg_test (profile_id varchar, email varchar, phone varchar, "
        "first_name varchar)"
    )
    if rows:
        con.executemany("insert into segments.seg_test values (?, ?, ?, ?)", rows)


def expected_rows(rows: list[tuple]) -> dict[str, dict]:
    return {r[0]: {"profile_id": r[0], "email": r[1], "first_name": r[3]} for r in rows}


def sent_keys(con, sync_name: str) -> set[str]:
    return {
        k
        for (k,) in con.execute(
            "select record_key from activation.sync_ledger where sync_name = ? and status = 'sent'", [sync_name]
        ).fetchall()
    }


def webhook_spec(tmp_path, server, name="hook", batch_size=25, extra_destination="", **kwargs):
    return write_spec(
        tmp_path,
        name,
        f"  type: webhook\n  url: {server.url}/hook\n  secret_env: TEST_HOOK_SECRET\n"
        f"  batch_size: {batch_size}\n{FAST_HTTP}{extra_destination}",
        **kwargs,
    )


# --- files ------------------------------------------------------------------------------------------


def test_snapshot_mode_writes_the_full_audience_as_parquet_every_run(con, tmp_path):
    spec = write_spec(tmp_path, "snap", "  type: file\n  format: parquet\n  path: out\n", mode="snapshot")
    set_audience(con, people(5))
    activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    set_audience(con, people(4, start=1))
    result = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    snapshot = pl.read_parquet(tmp_path / "out" / "snap__snapshot__r2.parquet")
    assert sorted(snapshot["profile_id"]) == [f"p{i:04d}" for i in range(1, 5)]
    assert (result.removed, result.output_files[-1].endswith("snap__current.parquet")) == (1, True)
    assert not list((tmp_path / "out").glob(".*")), "no temp files are left behind"


# --- consent, guard, pre-sync checks -------------------------------------------------------------------


def set_consents(con, decisions: dict[str, str]) -> None:
    con.execute("create schema if not exists profiles")
    con.execute(
        "create or replace table profiles.profile_consents (profile_id varchar, consent_purpose varchar, "
        "consent_value varchar, decided_at timestamp)"
    )
    for profile_id, value in decisions.items():
        con.execute(
            "insert into profiles.profile_consents values (?, 'marketing_email', ?, now())", [profile_id, value]
        )
        con.execute("insert into profiles.profile_consents values (?, 'marketing_sms', 'y', now())", [profile_id])


def test_rows_without_consent_are_excluded_counted_and_removed_in_mirror_mode(con, tmp_path):
    spec = write_spec(
        tmp_path,
        "consented",
        "  type: file\n  format: jsonl\n  path: out\n",
        extra="consents: [marketing_email]\nmarketing_actions: [email_targeting]\n",
    )
    set_audience(con, people(6))
    # p0000..p0002 yes, p0003 no, p0004 unknown value, p0005 no decision at all.
    set_consents(con, {"p0000": "y", "p0001": "y", "p0002": "y", "p0003": "n", "p0004": "maybe"})
    first = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (first.added, first.excluded_consent, first.sent) == (3, 3, 3)
    excluded = con.execute(
        "select record_key from activation.sync_ledger where status = 'excluded_consent' order by 1"
    ).fetchall()
    assert excluded == [("p0003",), ("p0004",), ("p0005",)]
    set_consents(con, {"p0000": "y", "p0001": "n", "p0002": "y"})  # p0001 withdraws
    second = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert (second.removed, second.excluded_consent) == (1, 4)
    held = [
        json.loads(line)["profile_id"]
        for line in (tmp_path / "out" / "consented__current.jsonl").read_text().splitlines()
    ]
    assert sorted(held) == ["p0000", "p0002"]


def test_guard_aborts_a_large_removal_unless_forced(con, tmp_path):
    spec = write_spec(
        tmp_path, "guarded", "  type: file\n  format: csv\n  path: out\n", extra="guard: {max_remove_share: 0.2}\n"
    )
    set_audience(con, people(10))
    activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    set_audience(con, people(7))
    with pytest.raises(SyncAborted, match=r"would remove 3 of the 10 rows .*30%.* max_remove_share 20%.*--force"):
        activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert con.execute("select count(*) from activation.sync_state").fetchone()[0] == 10
    assert con.execute("select status from activation.sync_runs where run_id = 'r2'").fetchone() == ("aborted",)
    dry = activation.run_sync(con, spec, run_id="r3", base_dir=tmp_path, dry_run=True)
    assert (
        dry.removed == 3 and "max_remove_share" in dry.message and dry.preview["removed"] == ["p0007", "p0008", "p0009"]
    )
    forced = activation.run_sync(con, spec, run_id="r4", base_dir=tmp_path, force=True)
    assert (forced.removed, forced.sent) == (3, 3)


def test_a_pre_sync_check_can_block_the_run(con, tmp_path):
    spec = write_spec(
        tmp_path,
        "policed",
        "  type: file\n  format: csv\n  path: out\n",
        extra="marketing_actions: [export_to_third_party]\n",
    )
    set_audience(con, people(3))

    def no_third_party_exports(spec, plan):
        return (
            "export_to_third_party is not allowed here" if "export_to_third_party" in spec.marketing_actions else None
        )

    with pytest.raises(SyncAborted, match="blocked by no_third_party_exports: export_to_third_party"):
        activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path, checks=[no_third_party_exports])
    assert not (tmp_path / "out").exists()
    assert con.execute("select status from activation.sync_runs").fetchall() == [("blocked",)]


def test_old_state_tables_gain_the_new_columns(con):
    con.execute("create schema activation")
    con.execute("create table activation.sync_runs (run_id varchar, sync_name varchar)")
    con.execute("create table activation.sync_ledger (run_id varchar, record_key varchar)")
    activation.ensure_state_tables(con)
    columns = {
        c
        for (c,) in con.execute(
            "select column_name from information_schema.columns where table_schema = 'activation'"
        ).fetchall()
    }
    assert {"idempotency_key", "http_status", "excluded_consent", "rejected", "retried"} <= columns


def test_a_missing_secret_names_the_sync_and_the_variable(con, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    spec = write_spec(
        tmp_path, "secretless", "  type: webhook\n  url: http://127.0.0.1:9/\n  secret_env: NO_SUCH_SECRET\n"
    )
    set_audience(con, people(1))
    with pytest.raises(ActivationError, match="sync secretless: environment variable NO_SUCH_SECRET .* is not set"):
        activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)


# --- webhook --------------------------------------------------------------------------------------------


def test_webhook_mirrors_the_audience_in_signed_batches(con, tmp_path, server):
    spec = webhook_spec(tmp_path, server)
    audience = people(120)
    set_audience(con, audience)
    first = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (first.added, first.sent, first.failed) == (120, 120, 0)
    assert [rows for _, _, rows in server.requests] == [25, 25, 25, 25, 20]
    audience = people(100, suffix="") + people(2, start=100, suffix="-renamed") + people(5, start=200)
    set_audience(con, audience)
    second = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert (second.added, second.changed, second.removed) == (5, 2, 18)
    assert server.webhook_held == expected_rows(audience)
    assert max(server.applied_keys.values()) == 1
    codes = con.execute("select distinct http_status from activation.sync_ledger where status = 'sent'").fetchall()
    assert codes == [(200,)]


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([{"status": 429, "retry_after": "0.05"}] * 2, id="429-retry-after"),
        pytest.param([{"status": 500}, {"status": 503}], id="500-503"),
        pytest.param([{"sleep": 0.8}], id="timeout"),
        pytest.param([{"reset": True}], id="connection-reset"),
        pytest.param([{"reset_after_apply": True}], id="reset-after-applying"),
        pytest.param([{"fail_rows": 10}, {"fail_rows": 3}], id="partial-batch-failure"),
    ],
)
def test_webhook_faults_lose_and_duplicate_nothing(con, tmp_path, server, faults):
    spec = webhook_spec(tmp_path, server)
    audience = people(60)
    set_audience(con, audience)
    server.faults = [dict(f) for f in faults]
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (result.sent, result.failed, result.rejected) == (60, 0, 0)
    assert server.webhook_held == expected_rows(audience)
    assert max(server.applied_keys.values()) == 1, "an operation was applied twice"
    assert sent_keys(con, "hook") == {r[0] for r in audience}, "the ledger accounts for every row"
    assert server.hits > 3, "the fault made the client retry"


def test_webhook_rejected_rows_carry_the_reason_and_4xx_is_not_retried(con, tmp_path, server):
    spec = webhook_spec(tmp_path, server)
    audience = people(10) + [("p0999", "broken@example.invalid", None, "Broken")]
    set_audience(con, audience)
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (result.sent, result.rejected, result.failed) == (10, 1, 0)
    assert con.execute(
        "select error, http_status from activation.sync_ledger where status = 'rejected'"
    ).fetchall() == [("undeliverable email broken@example.invalid", 422)]
    server.faults = [{"status": 400}]
    set_audience(con, people(10, suffix="-v2"))
    refused = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert (refused.rejected, refused.failed, server.hits) == (10, 0, 2), "a 400 is final: one request"
    again = activation.run_sync(con, spec, run_id="r3", base_dir=tmp_path)
    assert (again.sent, again.retried) == (10, 10)
    assert server.webhook_held == expected_rows(people(10, suffix="-v2"))


def test_destination_down_for_a_whole_run_and_back_the_next(con, tmp_path, server):
    spec = webhook_spec(tmp_path, server)
    audience = people(40)
    set_audience(con, audience)
    server.stop()
    down = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (down.sent, down.failed, down.status) == (0, 40, "failed"), "a run that delivers nothing fails"
    assert con.execute("select count(*) from activation.sync_state").fetchone()[0] == 0
    server.start()
    back = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert (back.sent, back.retried, back.failed) == (40, 40, 0)
    assert server.webhook_held == expected_rows(audience)
    attempts = con.execute(
        "select status, attempt, count(*) from activation.sync_ledger group by all order by 1"
    ).fetchall()
    assert attempts == [("failed", 1, 40), ("sent", 2, 40)]


def test_rate_limit_spaces_requests(con, tmp_path, server):
    spec = webhook_spec(tmp_path, server, batch_size=5, extra_destination="  rate_limit_per_s: 40\n")
    set_audience(con, people(50))
    started = time.perf_counter()
    activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert time.perf_counter() - started >= 9 / 40, "10 requests at 40/s take at least 9 intervals"


def test_built_in_inbox_receives_verified_batches(con, tmp_path, monkeypatch):
    monkeypatch.delenv("CDP_WEBHOOK_SECRET", raising=False)
    spec = write_spec(tmp_path, "inbox", "  type: webhook\n  local_inbox: inbox\n  secret_env: CDP_WEBHOOK_SECRET\n")
    audience = people(30)
    set_audience(con, audience)
    activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    set_audience(con, audience[:25])
    activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    held = {
        json.loads(line)["key"]: json.loads(line)["data"]
        for line in (tmp_path / "inbox" / "held.jsonl").read_text().splitlines()
    }
    assert held == expected_rows(audience[:25])
    assert len(list((tmp_path / "inbox").glob("received__r*.jsonl"))) == 2


# --- ad audience ------------------------------------------------------------------------------------------


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_ad_audience_adds_and_removes_hashed_members(con, tmp_path, server):
    spec = write_spec(
        tmp_path,
        "ads",
        f"  type: ad_audience\n  url: {server.url}\n  audience_id: '123'\n  token_env: TEST_API_TOKEN\n"
        f"  batch_size: 20\n{FAST_HTTP}",
        mode="membership",
        fields="  profile_id: profile_id\n",
        extra="identifiers:\n  email_sha256: {column: email, type: email}\n  phone_sha256: {column: phone, type: phone}\n",
    )
    audience = people(30) + [
        ("p0900", "  Mixed.Case@Example.COM ", "07946 000", "X"),
        ("p0901", "not-an-email", None, "Y"),
    ]
    set_audience(con, audience)
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    # p0901 has no usable identifier: invalid, never sent, and in the match-rate denominator.
    assert (result.added, result.invalid, result.sent) == (31, 1, 31)
    expected = {(sha(r[1]), sha(r[2])) for r in people(30)} | {(sha("mixed.case@example.com"), None)}
    assert server.members["123"] == expected
    set_audience(con, people(25))
    second = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert second.removed == 6
    assert server.members["123"] == {(sha(r[1]), sha(r[2])) for r in people(25)}
    assert [m for m, _, _ in server.requests] == ["POST", "POST", "DELETE"]


# --- email tool ------------------------------------------------------------------------------------------


def test_email_tool_upserts_contacts_and_list_membership(con, tmp_path, server):
    spec = write_spec(
        tmp_path, "esp", f"  type: email\n  url: {server.url}\n  list_id: L1\n  token_env: TEST_API_TOKEN\n{FAST_HTTP}"
    )
    audience = people(8) + [("p0999", "bounce@example.invalid", None, "Bad")]
    set_audience(con, audience)
    server.faults = [{"status": 503}]
    first = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (first.sent, first.rejected) == (8, 1)
    assert (
        con.execute("select error from activation.sync_ledger where status = 'rejected'").fetchone()[0]
        == "ERROR_GENERIC: looks fake or invalid"
    )
    set_audience(con, people(6, suffix="-new"))
    activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert server.contacts["L1"] == {
        r[1]: {"email_address": r[1], "profile_id": r[0], "first_name": r[3]} for r in people(6, suffix="-new")
    }


# --- PostgreSQL --------------------------------------------------------------------------------------------


def pg_rows(dsn: str, table: str) -> dict[str, dict]:
    with psycopg.connect(dsn) as pg:
        cursor = pg.execute(f"select * from {table}")
        names = [d.name for d in cursor.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def test_postgres_upserts_and_deletes_in_transactions(con, tmp_path, postgres_server, monkeypatch):
    monkeypatch.setenv("TEST_PG_DSN", postgres_server.dsn)
    spec = write_spec(
        tmp_path, "pg", "  type: postgres\n  dsn_env: TEST_PG_DSN\n  table: cdp.audience_pg\n  batch_size: 30\n"
    )
    audience = people(100)
    set_audience(con, audience)
    first = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (first.sent, first.failed) == (100, 0)
    audience = people(90, suffix="-v2") + people(3, start=500)
    set_audience(con, audience)
    second = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert (second.added, second.changed, second.removed) == (3, 90, 10)
    assert pg_rows(postgres_server.dsn, "cdp.audience_pg") == expected_rows(audience)


def test_postgres_rejects_only_the_rows_the_table_refuses(con, tmp_path, postgres_server, monkeypatch):
    monkeypatch.setenv("TEST_PG_DSN", postgres_server.dsn)
    with psycopg.connect(postgres_server.dsn) as pg:
        pg.execute("drop table if exists typed_audience")
        pg.execute(
            "create table typed_audience (profile_id text primary key, email text not null "
            "check (email like '%@%'), first_name varchar(12))"
        )
    spec = write_spec(tmp_path, "pg_typed", "  type: postgres\n  dsn_env: TEST_PG_DSN\n  table: typed_audience\n")
    audience = people(20) + [("p0998", "no-at-sign", None, "Bad"), ("p0999", "ok@example.com", None, "FarTooLongAName")]
    set_audience(con, audience)
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (result.sent, result.rejected) == (20, 2)
    reasons = dict(
        con.execute("select record_key, error from activation.sync_ledger where status = 'rejected'").fetchall()
    )
    assert reasons["p0998"].startswith("PostgreSQL 23514") and reasons["p0999"].startswith("PostgreSQL 22001")
    assert pg_rows(postgres_server.dsn, "typed_audience") == expected_rows(people(20))


def test_postgres_down_for_a_run_fails_rows_for_the_next(con, tmp_path, postgres_server, monkeypatch):
    monkeypatch.setenv("TEST_PG_DSN", f"host=127.0.0.1 port=9 user={postgres_server.user} dbname=postgres")
    spec = write_spec(tmp_path, "pg_down", "  type: postgres\n  dsn_env: TEST_PG_DSN\n  table: down_audience\n")
    set_audience(con, people(5))
    down = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (down.sent, down.failed) == (0, 5)
    monkeypatch.setenv("TEST_PG_DSN", postgres_server.dsn)
    back = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert (back.sent, back.retried) == (5, 5)
    assert pg_rows(postgres_server.dsn, "down_audience") == expected_rows(people(5))


# --- a crash in the middle of a sync -------------------------------------------------------------------------


def test_process_killed_mid_sync_then_rerun_converges(tmp_path, server):
    """`cdp sync` is SIGKILLed while batches are in flight; the rerun sends the rest. The destination
    ends up holding exactly the audience, each operation applied once (only rows acknowledged since the
    last finished commit and the batch in flight at the kill may be delivered twice, under the same idempotency
    keys), and the ledger has every row sent. Commits every 30 rows (3 batches) here."""
    import os
    import signal
    import subprocess
    import sys

    syncs = tmp_path / "syncs"
    syncs.mkdir()
    spec = webhook_spec(syncs, server, name="killed", batch_size=10)
    warehouse = tmp_path / "w.duckdb"
    audience = people(200)
    with duckdb.connect(str(warehouse)) as con:
        set_audience(con, audience)
    server.delay_s = 0.05
    env = {
        **os.environ,
        "CDP_SYNCS_DIR": str(syncs),
        "CDP_DATA_DIR": str(tmp_path),
        "CDP_WAREHOUSE": str(warehouse),
        "CDP_SYNC_COMMIT_ROWS": "30",
        "CDP_SYNC_COMMIT_SECONDS": "600",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp.cli", "sync", "killed"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while server.hits < 8 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the sync finished before it could be killed"
    server.wait_idle()  # the request in flight at the kill is still processed by the destination
    delivered_before_rerun = set(server.deliveries)
    assert 0 < len(server.webhook_held) < 200
    server.delay_s = 0.0
    with duckdb.connect(str(warehouse)) as con:
        committed_keys = {k for (k,) in con.execute("select idempotency_key from activation.sync_ledger").fetchall()}
        committed = con.execute("select count(*) from activation.sync_state").fetchone()[0]
        rerun = activation.run_sync(con, spec, run_id="rerun", base_dir=tmp_path)
        assert sent_keys(con, "killed") == {r[0] for r in audience}
    assert committed % 30 == 0 and committed >= 30, "acknowledged rows are committed in windows of 30"
    assert rerun.sent == 200 - committed, "the rerun sends only what was not committed"
    assert server.webhook_held == expected_rows(audience)
    assert max(server.applied_keys.values()) == 1
    repeats = {key for key, times in server.deliveries.items() if times > 1}
    assert repeats <= delivered_before_rerun - committed_keys, "committed operations are never delivered again"
    # A window is committed in the background while the next one is sent (at most one commit in flight):
    # at the kill, the window whose commit had not finished (30), the acknowledged part of the next one
    # (20: it is committed at 30) and the batch in flight (10) may all be delivered again.
    assert len(repeats) <= 30 + 20 + 10, "only uncommitted windows and the batch in flight are delivered again"
    with duckdb.connect(str(warehouse)) as con:
        runs = con.execute("select status, sent from activation.sync_runs order by started_at").fetchall()
    assert runs == [("killed", committed), ("succeeded", 200 - committed)], "the killed run is recorded as such"


def test_postgres_rows_sent_but_not_committed_are_upserted_again(con, tmp_path, postgres_server, monkeypatch):
    """A crash after PostgreSQL committed a batch but before the engine committed its state: the rerun
    sends the same rows again (its COPY of 'new' rows meets them and falls back to the upsert)."""
    from activation import engine

    monkeypatch.setenv("TEST_PG_DSN", postgres_server.dsn)
    spec = write_spec(
        tmp_path, "pg_crash", "  type: postgres\n  dsn_env: TEST_PG_DSN\n  table: crash_audience\n  batch_size: 20\n"
    )
    audience = people(50)
    set_audience(con, audience)

    def crash(self):
        raise KeyboardInterrupt("killed before the commit")

    monkeypatch.setattr(engine._Window, "commit", crash)
    with pytest.raises(KeyboardInterrupt):
        activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path, commit_every_rows=40)
    assert con.execute("select count(*) from activation.sync_state").fetchone()[0] == 0
    assert len(pg_rows(postgres_server.dsn, "crash_audience")) == 40, "two batches reached PostgreSQL"
    monkeypatch.undo()
    monkeypatch.setenv("TEST_PG_DSN", postgres_server.dsn)
    rerun = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert (rerun.added, rerun.sent, rerun.failed, rerun.rejected) == (50, 50, 0, 0)
    assert pg_rows(postgres_server.dsn, "crash_audience") == expected_rows(audience)
    assert con.execute("select count(*) from activation.sync_state").fetchone()[0] == 50
