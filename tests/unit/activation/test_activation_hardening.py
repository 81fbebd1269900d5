"""Nothing lost (issue 19, activation items): idempotency keys unique per intended operation and stable
across retries and crashes; a run that delivers nothing fails; a down destination stops the run; SIGTERM
and SIGINT commit what was acknowledged; a killed run is recorded; in-run HTTP retries are recorded; the
engine works on an encrypted warehouse. Each test checks the destination's state (a real HTTP server or
the built-in inbox) or the warehouse against what the audience says, independently of the engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from test_activation_destinations import FAST_HTTP, people, set_audience, webhook_spec, write_spec

import activation
from activation.inbox import WebhookInbox
from support.workspace import PROJECT_ROOT


def inbox_held(directory: Path) -> set[str]:
    path = directory / "held.jsonl"
    return {json.loads(line)["key"] for line in path.read_text().splitlines()} if path.exists() else set()


# --- item 1: a member who leaves and comes back is sent again, under a new key ---------------------------


def test_a_member_who_leaves_and_comes_back_unchanged_is_delivered_again(con, tmp_path, monkeypatch):
    """The built-in inbox drops operations whose idempotency key it has applied. Leave + come back
    unchanged is a new operation: it must get a new key, or the inbox drops it as a repeat and the
    engine (which counted it as sent) never sends it again."""
    monkeypatch.setenv("TEST_HOOK_SECRET", "s3cret")
    spec = write_spec(
        tmp_path,
        "reentry",
        "  type: webhook\n  local_inbox: inbox\n  secret_env: TEST_HOOK_SECRET\n  batch_size: 100\n",
    )
    everyone, leavers = people(1000), set(f"p{i:04d}" for i in range(0, 1000, 100))
    stayers = [row for row in everyone if row[0] not in leavers]
    held: list[set[str]] = []
    for run, audience in enumerate([everyone, stayers, everyone, stayers, everyone]):
        set_audience(con, audience)
        result = activation.run_sync(con, spec, run_id=f"r{run}", base_dir=tmp_path)
        assert result.failed == 0 and result.status == "succeeded"
        held.append(inbox_held(tmp_path / "inbox"))
    assert [len(h) for h in held] == [1000, 990, 1000, 990, 1000]
    keys = con.execute(
        "select record_key, list(idempotency_key order by run_id) from activation.sync_ledger "
        "where status = 'sent' and record_key in ('p0000', 'p0100') group by 1"
    ).fetchall()
    for _key, operation_keys in keys:
        assert len(operation_keys) == 5 and len(set(operation_keys)) == 5, "one key per intended operation"


def test_a_retried_operation_keeps_its_key(con, tmp_path, server):
    """A row that failed is retried next run under the key of its first attempt (the receiver may
    have applied it): stable across retries."""
    spec = webhook_spec(tmp_path, server, name="retry_key", batch_size=10)
    set_audience(con, people(10))
    server.faults = [{"status": 503}] * 4  # the first batch fails all its attempts
    first = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert first.failed == 10
    second = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert second.sent == 10
    pairs = con.execute(
        "select record_key, count(distinct idempotency_key) from activation.sync_ledger group by 1"
    ).fetchall()
    assert {n for _, n in pairs} == {1}


# --- item 2: a rerun after a crash resends the uncommitted rows in the same requests ---------------------


def test_a_rerun_after_a_crash_resends_rows_under_the_same_request_key(con, tmp_path, server, monkeypatch):
    """A crash after some batches were acknowledged but before their commit: the rerun builds the same
    batches again, so each request carries the Idempotency-Key header it carried the first time."""
    from activation import engine

    spec = webhook_spec(tmp_path, server, name="crash_header", batch_size=50)
    set_audience(con, people(3000))
    committed_windows = {"n": 0}
    real_commit = engine._Window.commit

    def crash_on_second_window(self, background=True):
        committed_windows["n"] += 1
        if committed_windows["n"] == 2:
            raise KeyboardInterrupt("killed before the commit")
        return real_commit(self, background=False)

    monkeypatch.setattr(engine._Window, "commit", crash_on_second_window)
    monkeypatch.setattr(engine._Window, "commit_on_error", lambda self: self.close())
    with pytest.raises(KeyboardInterrupt):
        activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path, commit_every_rows=500)
    first_headers = dict(server.request_keys)
    monkeypatch.undo()
    monkeypatch.setenv("TEST_HOOK_SECRET", server.secret)
    rerun = activation.run_sync(con, spec, run_id="r2", base_dir=tmp_path)
    assert rerun.sent == 2500
    resent = [key for key in server.request_keys if key in first_headers]
    assert server.request_count_by_key, "the server saw requests"
    repeated_rows = sum(n for key, n in first_headers.items() if server.request_count_by_key[key] > 1)
    assert repeated_rows == 500, f"the 500 uncommitted rows come again in the same requests ({len(resent)} requests)"


# --- item 3: a run that delivers nothing it tried fails -----------------------------------------------------


def test_a_run_where_every_row_fails_is_failed_not_partial(con, tmp_path, server):
    spec = webhook_spec(tmp_path, server, name="all_fail", batch_size=10)
    set_audience(con, people(5))
    server.faults = [{"status": 400}]
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (result.sent, result.rejected, result.status) == (0, 5, "failed")
    assert con.execute("select status from activation.sync_runs where run_id = 'r1'").fetchone() == ("failed",)


def cli_env(tmp_path: Path, syncs: Path, warehouse: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CDP_SYNCS_DIR": str(syncs),
        "CDP_DATA_DIR": str(tmp_path),
        "CDP_WAREHOUSE": str(warehouse),
        **extra,
    }


def test_cdp_sync_exits_non_zero_when_a_sync_delivers_nothing(tmp_path, server):
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    webhook_spec(syncs, server, name="refused", batch_size=10).path.write_text(
        (syncs / "refused.yml").read_text().replace(server.url, "http://127.0.0.1:9")
    )
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        set_audience(con, people(5))
    done = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "sync", "refused"],
        env=cli_env(tmp_path, syncs, warehouse),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert "refused" in done.stderr and "nothing delivered" in done.stderr
    assert "Traceback" not in done.stderr


# --- item 4: a destination that is clearly down stops the run ------------------------------------------------


def test_a_refused_port_stops_the_run_after_consecutive_failed_batches(con, tmp_path, server):
    spec = write_spec(
        tmp_path,
        "down",
        f"  type: webhook\n  url: http://127.0.0.1:9/hook\n  secret_env: TEST_HOOK_SECRET\n  batch_size: 10\n"
        f"{FAST_HTTP}  max_consecutive_failed_batches: 3\n",
    )
    set_audience(con, people(1000))
    started = time.perf_counter()
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    elapsed = time.perf_counter() - started
    assert result.status == "failed" and "3 consecutive failed batches" in result.message
    assert result.failed == 30 and result.not_sent == 970
    assert elapsed < 10
    run = con.execute("select status, message, failed, not_sent from activation.sync_runs").fetchone()
    assert run[0] == "failed" and "destination looks down" in run[1] and run[2:] == (30, 970)
    # Everything is kept for the next run: nothing in the state, every row sent once the port answers.
    assert con.execute("select count(*) from activation.sync_state").fetchone()[0] == 0


def test_a_hanging_destination_stops_at_the_run_deadline(con, tmp_path, server):
    spec = webhook_spec(
        tmp_path,
        server,
        name="hanging",
        batch_size=10,
        extra_destination="  deadline_s: 2\n  max_consecutive_failed_batches: 1000\n",
    )
    set_audience(con, people(500))
    server.delay_s = 0.3  # slower than nothing, faster than the timeout: 50 batches would take 15 s
    started = time.perf_counter()
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    elapsed = time.perf_counter() - started
    server.delay_s = 0.0
    assert result.status == "partial" and "deadline" in result.message
    assert 0 < result.sent < 500 and result.not_sent == 500 - result.sent - result.failed
    assert elapsed < 5
    spec.path.write_text(spec.path.read_text().replace("  deadline_s: 2\n", ""))
    second = activation.run_sync(con, activation.load_sync_spec(spec.path), run_id="r2", base_dir=tmp_path)
    assert second.sent == 500 - result.sent and server.webhook_held.keys() == {p[0] for p in people(500)}


# --- item 5: SIGTERM / SIGINT commit what was acknowledged; killed runs are recorded; retries recorded ------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_terminated_sync_commits_every_acknowledged_row(tmp_path, server, signum):
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    webhook_spec(syncs, server, name="terminated", batch_size=10)
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        set_audience(con, people(400))
    server.delay_s = 0.03
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp.cli", "sync", "terminated"],
        env=cli_env(tmp_path, syncs, warehouse, CDP_SYNC_COMMIT_ROWS="1000", CDP_SYNC_COMMIT_SECONDS="600"),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while server.hits < 8 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    server.wait_idle()
    server.delay_s = 0.0
    assert process.returncode != 0 and "Traceback" not in stderr, stderr
    assert "interrupted" in stderr
    held_by_destination = set(server.webhook_held)
    assert 0 < len(held_by_destination) < 400
    with duckdb.connect(str(warehouse)) as con:
        committed = {k for (k,) in con.execute("select record_key from activation.sync_state").fetchall()}
        runs = con.execute("select status, sent from activation.sync_runs").fetchall()
    assert committed == held_by_destination, "every acknowledged row is committed"
    assert runs == [("interrupted", len(committed))]


def test_in_run_http_retries_are_recorded(con, tmp_path, server):
    spec = webhook_spec(tmp_path, server, name="retried", batch_size=10)
    set_audience(con, people(20))
    server.faults = [{"status": 503}, {"status": 429, "retry_after": "0"}]  # the first batch takes 3 requests
    result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
    assert (result.sent, result.http_retries) == (20, 2)
    assert con.execute("select http_retries from activation.sync_runs").fetchone() == (2,)
    requests = dict(con.execute("select batch_number, max(requests) from activation.sync_ledger group by 1").fetchall())
    assert requests == {1: 3, 2: 1}


# --- item 10: the engine on an encrypted warehouse ----------------------------------------------------------


def test_a_sync_runs_on_an_encrypted_warehouse(tmp_path, monkeypatch):
    from cdp import warehouse as database

    monkeypatch.setenv(database.ENCRYPTION_KEY_ENV, "correct horse battery staple")
    spec = write_spec(tmp_path, "encrypted", "  type: file\n  format: csv\n  path: out\n")
    with database.connect(tmp_path / "warehouse.duckdb") as con:
        set_audience(con, people(30))
        result = activation.run_sync(con, spec, run_id="r1", base_dir=tmp_path)
        assert (result.sent, result.status) == (30, "succeeded")
        assert con.execute("select count(*) from activation.sync_state").fetchone()[0] == 30
    assert b"user7@example.com" not in (tmp_path / "warehouse.duckdb").read_bytes()


def test_inbox_reports_repeats(tmp_path):
    """The built-in inbox says which operations it had already applied (status duplicate)."""
    from activation.destinations.webhook import signature

    inbox = WebhookInbox(tmp_path, "secret", persist=False)
    body = json.dumps(
        {"operations": [{"op": "upsert", "key": "k1", "idempotency_key": "i1", "data": {"a": 1}}]}
    ).encode()
    assert inbox.receive(body, signature("secret", body))[1]["results"][0]["status"] == "ok"
    assert inbox.receive(body, signature("secret", body))[1]["results"][0]["status"] == "duplicate"
    inbox.server.server_close()
