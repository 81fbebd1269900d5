"""Run a sync: diff, gate (consent, removal guard, pre-sync checks), send in batches, and commit what
the destination acknowledged together with its ledger rows every COMMIT_EVERY_ROWS rows or
COMMIT_EVERY_S seconds (and at the end). A crash loses at most the uncommitted window, which the rerun
sends again under the same idempotency keys."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from activation.audit import record_event
from activation.destinations import DEFAULT_BATCH_SIZE, Batch, BatchResult, Destination, build_destination
from activation.diff import IDEMPOTENCY_KEY_SQL, SyncPlan, copy_text_sql, plan_sync
from activation.erasure import retry_pending_erasures
from activation.errors import SyncAborted, SyncInterrupted
from activation.hooks import PreSyncCheck, block_reason
from activation.policies import policy_pre_sync_check
from activation.spec import SyncSpec
from activation.state import ensure_state_tables

PREVIEW_ROWS = 10
# Acknowledged rows are committed to the state and ledger (one transaction) at least this often.
# (CDP_SYNC_COMMIT_ROWS / CDP_SYNC_COMMIT_SECONDS override the defaults.)
COMMIT_EVERY_ROWS = int(os.environ.get("CDP_SYNC_COMMIT_ROWS") or 500_000)
COMMIT_EVERY_S = float(os.environ.get("CDP_SYNC_COMMIT_SECONDS") or 5.0)
RENDER_CHUNK_ROWS = 100_000  # rows rendered to JSON / COPY text per warehouse query (whole batches)


@dataclass(frozen=True)
class SyncResult:
    sync_name: str
    run_id: str
    added: int
    changed: int
    removed: int
    invalid: int
    unchanged: int
    sent: int
    failed: int
    duration_s: float
    dry_run: bool
    output_files: list[str] = field(default_factory=list)
    excluded_consent: int = 0
    rejected: int = 0
    retried: int = 0  # rows sent this run that had failed or been rejected before
    status: str = "succeeded"
    message: str | None = None
    preview: dict[str, list[str]] = field(default_factory=dict)  # dry run: some keys per change kind
    suppressed: int = 0  # audience rows left out by the global suppression list
    not_sent: int = 0  # rows of the change set never tried: the run stopped early (kept for the next run)
    http_retries: int = 0  # requests repeated within the run (429, 5xx, timeouts, rows a receiver failed)
    held_out: int = 0  # members of a holdout split not sent (recorded in the ledger as held_out)
    as_of: dt.datetime | None = None  # the as-of instant the audience was evaluated at (CDP_AS_OF), if set


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def evaluated_as_of() -> dt.datetime | None:
    """The instant the audience was evaluated at when the pipeline runs as of a given day (CDP_AS_OF,
    YYYY-MM-DD: a replay, the demo, the tests): the end of that day, the rule of cdp.settings.as_of_instant
    and dbt's as_of_timestamp. None when the run uses the present. Campaign analytics time a member's
    exposure by the run's as-of instant when there is one, else by when the run started."""
    day = os.environ.get("CDP_AS_OF")
    return dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time()) if day else None


def _batch_size(spec: SyncSpec, destination: Destination | None, override: int | None) -> int:
    return int(override or spec.setting("batch_size") or getattr(destination, "batch_size", None) or DEFAULT_BATCH_SIZE)


def _guard_message(spec: SyncSpec, plan: SyncPlan) -> str | None:
    if plan.held and plan.removed > spec.max_remove_share * plan.held:
        return (
            f"sync {spec.name}: this run would remove {plan.removed:,} of the {plan.held:,} rows the destination "
            f"holds ({plan.removed / plan.held:.0%}), more than the guard's max_remove_share "
            f"{spec.max_remove_share:.0%}. Check the audience {spec.audience}; if the drop is intended, rerun "
            "with --force (force=True) or raise guard.max_remove_share in the spec."
        )
    return None


def run_sync(
    con: duckdb.DuckDBPyConnection,
    spec: SyncSpec,
    *,
    run_id: str,
    base_dir: Path,
    dry_run: bool = False,
    destination: Destination | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    checks: Sequence[PreSyncCheck] | None = None,
    batch_size: int | None = None,
    commit_every_rows: int | None = None,
    commit_every_s: float | None = None,
) -> SyncResult:
    """Send the audience's changes since the last successful sync. Rows that failed or were refused
    stay out of the state, so the next run sends them again. `progress` is called with the number of
    rows of each batch once it is done. Raises SyncAborted (nothing sent) when the removal guard or a
    pre-sync check stops the run, and SyncInterrupted (after committing what was acknowledged) on
    SIGTERM or SIGINT. A run that delivers nothing it tried returns status `failed`; a run stopped early
    (the destination looks down, or its deadline passed) says why in `message` and leaves the unsent
    rows (`not_sent`) to the next run."""
    started_at, started = _now(), time.perf_counter()
    as_of = evaluated_as_of()
    ensure_state_tables(con)
    if not dry_run:
        _record_killed_runs(con, spec, run_id)
    plan = plan_sync(con, spec)
    counts = {"sent": 0, "failed": 0, "rejected": 0, "not_sent": 0, "http_retries": 0}
    # Per key: the earlier attempts that failed or were refused (the attempt number), and the operations
    # the destination acknowledged (the key's operation sequence, part of the idempotency key).
    con.execute(
        """
        create or replace temp table sync_plan_attempts as
        select record_key,
               count(*) filter (where status in ('failed', 'rejected')) as attempts,
               count(*) filter (where status = 'sent') as operations_sent
        from activation.sync_ledger
        where sync_name = ? and status in ('sent', 'failed', 'rejected')
          and record_key in (select record_key from sync_plan_changes)
        group by 1
        """,
        [spec.name],
    )
    retried = con.execute(
        "select count(*) from sync_plan_changes join sync_plan_attempts using (record_key) where attempts > 0"
    ).fetchone()[0]
    messages: list[str] = []

    def result(
        status: str, message: str | None = None, preview: dict | None = None, output_files: list[str] | None = None
    ) -> SyncResult:
        return SyncResult(
            sync_name=spec.name,
            run_id=run_id,
            added=plan.added,
            changed=plan.changed,
            removed=plan.removed,
            invalid=plan.invalid,
            unchanged=plan.unchanged,
            sent=counts["sent"],
            failed=counts["failed"],
            duration_s=time.perf_counter() - started,
            dry_run=dry_run,
            output_files=output_files or [],
            excluded_consent=plan.excluded_consent,
            rejected=counts["rejected"],
            retried=0 if dry_run else retried,
            status=status,
            message=message,
            preview=preview or {},
            suppressed=plan.suppressed,
            not_sent=counts["not_sent"],
            http_retries=counts["http_retries"],
            held_out=plan.held_out,
            as_of=as_of,
        )

    stop = _guard_message(spec, plan) if not force else None
    # Data-usage policies always run first (activation/policies.py): a violation blocks the sync and
    # names the policy, the label, the column and the source it came from.
    blocked = policy_pre_sync_check(con)(spec, plan) or block_reason(spec, plan, checks)
    if dry_run:
        preview = {
            kind: [
                k
                for (k,) in con.execute(
                    "select record_key from sync_plan_changes where change_kind = ? order by record_key limit ?",
                    [kind, PREVIEW_ROWS],
                ).fetchall()
            ]
            for kind in ("added", "changed", "removed")
        }
        outcome = result("dry_run", blocked or stop, preview)
        _record_run(con, spec, started_at, outcome, ledger=False)
        return outcome
    if blocked or stop:
        outcome = result("blocked" if blocked else "aborted", blocked or stop)
        _record_run(con, spec, started_at, outcome, ledger=False)
        raise SyncAborted(outcome.message if stop and not blocked else f"sync {spec.name} blocked by {blocked}")

    # The run's row says `running` until it ends: a row still `running` when the next run starts is a
    # run that was killed (_record_killed_runs).
    _record_run(con, spec, started_at, result("running"), ledger=False, event=False)
    destination = destination or build_destination(spec, base_dir)
    breaker = _Breaker(spec, started)
    signals = _SignalStop()
    try:
        begin = getattr(destination, "begin", None)
        if begin:
            begin(run_id)
        # Erasure deletes this destination did not confirm before (activation/erasure.py) go first.
        retry_pending_erasures(con, spec, destination, run_id)
        size = _batch_size(spec, destination, batch_size)
        # The whole change set as one Arrow table, rows still structs, with each row's attempt number and
        # operation sequence; nothing below goes back to sync_plan_changes. Ordered (adds and changes,
        # then removals; by a hash of the key within each), so a rerun after a crash cuts the uncommitted
        # rows into the same batches as the crashed run: same requests, same Idempotency-Key headers.
        # JSON (and, for PostgreSQL, COPY text) is rendered in the warehouse one chunk of batches at a
        # time, as the sending goes.
        changes = con.execute(
            """
            select changes.record_key, changes.change_kind, changes.row_hash, changes.row_struct,
                   changes.row_json as held_json, changes.old_hash, changes.split_name,
                   coalesce(attempts.attempts, 0) + 1 as attempt,
                   coalesce(attempts.operations_sent, 0) as operation_sequence
            from sync_plan_changes as changes left join sync_plan_attempts as attempts using (record_key)
            order by changes.change_kind = 'removed', hash(changes.record_key), changes.record_key
            """
        ).to_arrow_table()
        text_sql = copy_text_sql([*spec.fields, *spec.identifiers]) if spec.destination.type == "postgres" else None
        chunk_rows = max(size, min(RENDER_CHUNK_ROWS, size * 100)) // size * size
        # Destinations that never read the JSON (PostgreSQL gets COPY text and deletes by key) skip its
        # rendering, and the state keeps only key + hash for them.
        sends_json = getattr(destination, "sends_json", True)
        window = _Window(con, spec, run_id, size)
        # The next chunk is rendered on a cursor of its own in a worker thread while this one is sent
        # (DuckDB and the socket writes release the GIL).
        renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-render")
        render_cursor = same_catalog_cursor(con)
        starts = range(0, changes.num_rows, chunk_rows)

        def rendered(chunk_start: int) -> Future:
            return renderer.submit(
                _render,
                render_cursor,
                changes.slice(chunk_start, chunk_rows),
                text_sql,
                sends_json,
                spec.name,
                spec.key_field,
            )

        attempted = 0
        try:
            signals.install()
            number = 0
            upcoming = rendered(starts[0]) if starts else None
            for index, _chunk_start in enumerate(starts):
                chunk = upcoming.result()
                upcoming = rendered(starts[index + 1]) if index + 1 < len(starts) else None
                for start in range(0, chunk.num_rows, size):
                    if signals.reason() or breaker.deadline_passed():
                        break
                    number += 1
                    piece = chunk.slice(start, size)
                    batch = Batch(
                        sync_name=spec.name, run_id=run_id, number=number, key_field=spec.key_field, frame=piece
                    )
                    try:
                        outcome = destination.send(batch)
                    except Exception as error:  # the whole batch failed: retried next run
                        outcome = BatchResult(
                            failed={
                                k: f"{type(error).__name__}: {error}" for k in piece.column("record_key").to_pylist()
                            }
                        )
                    attempted += piece.num_rows
                    window.add(number, piece, outcome)
                    rejected = len(outcome.rejected.keys() - outcome.failed.keys())
                    counts["failed"] += len(outcome.failed)
                    counts["rejected"] += rejected
                    counts["sent"] += piece.num_rows - len(outcome.failed) - rejected
                    counts["http_retries"] += outcome.retries
                    if window.due(commit_every_rows or COMMIT_EVERY_ROWS, commit_every_s or COMMIT_EVERY_S):
                        window.commit()
                    if progress:
                        progress(piece.num_rows)
                    breaker.batch_done(piece.num_rows, outcome)
                    if breaker.tripped():
                        break
                else:
                    continue
                break
            window.commit(background=False)
            window.close()
        except BaseException as error:
            counts["not_sent"] = changes.num_rows - attempted
            problem = window.commit_on_error()
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            message = f"stopped by {type(error).__name__}: {error}" + (f"; {problem}" if problem else "")
            if problem:
                error.add_note(problem)
            _record_run_quietly(con, spec, started_at, result(status, message))
            raise
        finally:
            signals.restore()
            renderer.shutdown(cancel_futures=True)
            render_cursor.close()
        counts["not_sent"] = changes.num_rows - attempted
        stopped = signals.reason() or breaker.stop_reason()
        if stopped:
            messages.append(f"{stopped}; {counts['not_sent']:,} row(s) not sent, kept for the next run")
        if counts["sent"] == 0 and (counts["failed"] or counts["rejected"] or counts["not_sent"]):
            messages.insert(
                0,
                f"nothing delivered: {counts['failed']:,} row(s) failed, {counts['rejected']:,} rejected"
                + (f" (last error: {breaker.last_error})" if breaker.last_error else ""),
            )
            status = "failed"
        elif counts["failed"] or counts["rejected"] or counts["not_sent"]:
            status = "partial"
        else:
            status = "succeeded"
        if signals.reason():
            status = "interrupted"
        final = result(status, "; ".join(messages) or None)
        output_files: list[str] = []
        _record_run(con, spec, started_at, final, ledger=True)
        if signals.reason():
            raise SyncInterrupted(
                f"sync {spec.name} interrupted by {signals.name()}: {counts['sent']:,} row(s) delivered and "
                f"committed, {counts['not_sent']:,} not sent (the next run sends them)",
                signals.signal_number,
            )
        if getattr(destination, "wants_held_rows", False):
            # Rows held while the sync went to a destination that keeps no JSON (PostgreSQL): the key alone.
            held = [
                json.loads(r)
                for (r,) in con.execute(
                    "select coalesce(row_json, json_object(?, record_key)::varchar) from activation.sync_state "
                    "where sync_name = ? order by record_key",
                    [spec.key_field, spec.name],
                ).fetchall()
            ]
            output_files = destination.finish(held)
            final = result(status, final.message, output_files=output_files)
        return final
    finally:
        close = getattr(destination, "close", None)
        if close:
            close()


def same_catalog_cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor (a second connection to the same database) whose current catalog is the connection's: on
    an encrypted warehouse (attached to an in-memory database, cdp/warehouse.py) a bare cursor starts in
    `memory`."""
    catalog = con.execute("select current_database()").fetchone()[0]
    cursor = con.cursor()
    try:
        cursor.execute(f'use "{catalog.replace(chr(34), chr(34) * 2)}"')
    except BaseException:
        cursor.close()
        raise
    return cursor


DEFAULT_MAX_CONSECUTIVE_FAILED_BATCHES = 5


class _Breaker:
    """When to stop a run early: after max_consecutive_failed_batches batches in a row that failed whole
    (every row failed, none delivered: the destination looks down), or once deadline_s has passed."""

    def __init__(self, spec: SyncSpec, started: float):
        self.limit = int(spec.setting("max_consecutive_failed_batches") or DEFAULT_MAX_CONSECUTIVE_FAILED_BATCHES)
        deadline = spec.setting("deadline_s")
        self.deadline_s = float(deadline) if deadline else None
        self.started = started
        self.consecutive = 0
        self.last_error: str | None = None
        self.reason: str | None = None

    def batch_done(self, rows: int, outcome: BatchResult) -> None:
        if outcome.failed:
            self.last_error = next(iter(outcome.failed.values()))[:300]
        elif outcome.rejected:
            self.last_error = next(iter(outcome.rejected.values()))[:300]
        self.consecutive = self.consecutive + 1 if rows and len(outcome.failed) == rows else 0
        if self.consecutive >= self.limit:
            self.reason = (
                f"stopped after {self.consecutive} consecutive failed batches: the destination looks down "
                f"(last error: {self.last_error})"
            )

    def tripped(self) -> bool:
        return self.reason is not None

    def deadline_passed(self) -> bool:
        if self.deadline_s is not None and time.monotonic() - self.started >= self.deadline_s:
            self.reason = f"stopped at the run deadline ({self.deadline_s:g} s, destination setting deadline_s)"
            return True
        return False

    def stop_reason(self) -> str | None:
        return self.reason


class _SignalStop:
    """SIGTERM and SIGINT while batches are sent: finish the batch in flight, commit what was
    acknowledged, record the run, then raise SyncInterrupted. A second signal stops at once (the rows
    acknowledged since the last commit are then sent again by the next run, under the same keys). Only
    in the main thread (Python delivers signals there)."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self.previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for number in (signal.SIGTERM, signal.SIGINT):
            self.previous[number] = signal.signal(number, self._handle)

    def _handle(self, number: int, _frame) -> None:
        if self.signal_number is not None:  # the second one: stop now
            self.restore()
            raise KeyboardInterrupt(f"{signal.Signals(number).name} received twice")
        self.signal_number = number

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}

    def reason(self) -> str | None:
        return f"interrupted by {self.name()}" if self.signal_number is not None else None

    def name(self) -> str:
        return signal.Signals(self.signal_number).name if self.signal_number is not None else ""


def _render(
    con: duckdb.DuckDBPyConnection,
    chunk: pa.Table,
    text_sql: str | None,
    sends_json: bool,
    sync_name: str,
    key_field: str,
) -> pa.Table:
    """A chunk of the change set with its idempotency keys, each row as JSON (removals: the version
    last sent; null when sends_json is False) and, when text_sql is given, as a PostgreSQL COPY text
    line; order kept."""
    # A removal of a row held without its JSON (sent while the sync went to PostgreSQL) carries its key.
    json_sql = (
        "coalesce(held_json, to_json(row_struct)::varchar, json_object(?, record_key)::varchar)"
        if sends_json
        else "null::varchar"
    )
    con.register("sync_chunk", chunk)
    try:
        return con.execute(
            f"""
            select record_key, change_kind, row_hash, {json_sql} as row_json,
                   {IDEMPOTENCY_KEY_SQL} as idempotency_key, attempt, split_name{f", {text_sql} as row_text" if text_sql else ""}
            from sync_chunk
            """,
            ([key_field] if sends_json else []) + [sync_name],
        ).to_arrow_table()
    finally:
        con.unregister("sync_chunk")


class _Window:
    """The batches sent since the last commit. A commit is one transaction: the acknowledged rows
    reach the state (one set-based upsert and one delete), every row of the window gets its ledger
    row. Committing every COMMIT_EVERY_ROWS rows or COMMIT_EVERY_S seconds rather than per batch is
    what makes small batches cheap; a crash loses at most the uncommitted window, which the rerun
    sends again under the same idempotency keys (receivers drop the repeats; upserts and deletes
    are idempotent anyway)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, spec: SyncSpec, run_id: str, size: int):
        self.con, self.spec, self.run_id, self.size = con, spec, run_id, size
        self.frames: list[pa.Table] = []  # the batches sent since the last commit
        self.rows = 0
        self.first_number = 1
        self.bad: dict[str, tuple[str, str, int | None]] = {}  # key -> (status, error, http status)
        self.codes: dict[str, int] = {}
        self.defaults: dict[int, int | None] = {}  # batch number -> status of rows not in codes
        self.requests: dict[int, int] = {}  # batch number -> requests it took (more than 1: retried)
        self.opened = time.monotonic()
        self.cursor = same_catalog_cursor(con)  # the worker's own connection to the warehouse
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-commit")
        self.in_flight: Future | None = None
        self.failed = False

    def add(self, number: int, frame: pa.Table, outcome: BatchResult) -> None:
        if not self.frames:
            self.first_number, self.opened = number, time.monotonic()
        self.frames.append(frame)
        self.rows += frame.num_rows
        for key, error in outcome.failed.items():
            self.bad[key] = ("failed", error, outcome.http_status.get(key))
        for key, error in outcome.rejected.items():
            if key not in outcome.failed:
                self.bad[key] = ("rejected", error, outcome.http_status.get(key))
        self.codes.update(outcome.http_status)
        self.defaults[number] = outcome.default_http_status
        self.requests[number] = outcome.attempts

    def due(self, every_rows: int, every_s: float) -> bool:
        return self.rows >= every_rows or time.monotonic() - self.opened >= every_s

    def commit_on_error(self) -> str | None:
        """Stopped by an error between batches: commit what was acknowledged. Returns what went wrong
        when that is not possible (a commit failed): those rows are sent again by the next run, under
        the same idempotency keys."""
        waiting = self.rows
        try:
            self.wait()
            if self.failed:
                return "an earlier commit of this run failed; its rows are sent again by the next run"
            if self.frames:
                self.commit(background=False)
            return None
        except Exception as error:
            return (
                f"{waiting:,} acknowledged row(s) could not be committed ({type(error).__name__}: {error}); "
                "the next run sends them again under the same idempotency keys"
            )
        finally:
            with contextlib.suppress(Exception):  # its error was reported above
                self.close()

    def wait(self) -> None:
        """Wait for the commit in flight; re-raise its error."""
        if self.in_flight is not None:
            future, self.in_flight = self.in_flight, None
            try:
                future.result()
            except BaseException:
                self.failed = True
                raise

    def close(self) -> None:
        self.wait()
        self.executor.shutdown()
        self.cursor.close()

    def commit(self, background: bool = True) -> None:
        """Commit the window: on a second connection in a worker thread (the next batches are sent
        meanwhile; at most one commit in flight, in order), or here when background is False."""
        if not self.frames:
            return
        rows = pa.concat_tables(self.frames)
        numbers = np.arange(rows.num_rows) // self.size + self.first_number
        rows = rows.select(
            ["record_key", "change_kind", "row_hash", "row_json", "idempotency_key", "attempt", "split_name"]
        ).append_column("batch_number", pa.array(numbers, pa.int32()))
        bad = pa.table(
            {
                "record_key": pa.array(list(self.bad), pa.string()),
                "status": pa.array([b[0] for b in self.bad.values()], pa.string()),
                "error": pa.array([b[1] for b in self.bad.values()], pa.string()),
                "http_status": pa.array([b[2] for b in self.bad.values()], pa.int32()),
            }
        )
        codes = pa.table(
            {
                "record_key": pa.array(list(self.codes), pa.string()),
                "code": pa.array(list(self.codes.values()), pa.int32()),
            }
        )
        defaults = pa.table(
            {
                "batch_number": pa.array(list(self.defaults), pa.int32()),
                "code": pa.array(list(self.defaults.values()), pa.int32()),
                "requests": pa.array([self.requests.get(n, 1) for n in self.defaults], pa.int32()),
            }
        )
        tables = {"window_rows": rows, "window_bad": bad, "window_codes": codes, "window_defaults": defaults}
        self.frames, self.rows = [], 0
        self.bad, self.codes, self.defaults, self.requests = {}, {}, {}, {}
        self.wait()
        if background:
            self.in_flight = self.executor.submit(_write_window, self.cursor, self.spec.name, self.run_id, tables)
        else:
            _write_window(self.cursor, self.spec.name, self.run_id, tables)


def _write_window(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str, tables: dict[str, pa.Table]) -> None:
    """One transaction: acknowledged rows to the state (set-based upsert and delete, no join against
    the state), every row of the window to the ledger."""
    for name, table in tables.items():
        con.register(name, table)
    try:
        con.execute(
            """
            create or replace temp table sync_window as
            select w.record_key, w.change_kind, w.row_hash, w.row_json, w.idempotency_key, w.attempt,
                   w.split_name, w.batch_number, coalesce(bad.status, 'sent') as status, bad.error,
                   coalesce(bad.http_status, codes.code, defaults.code) as http_status, defaults.requests
            from window_rows as w
            left join window_bad as bad using (record_key)
            left join window_codes as codes using (record_key)
            left join window_defaults as defaults using (batch_number)
            """
        )
        con.execute("begin transaction")
        try:
            # The state has no key index (activation/state.py): uniqueness comes from here. Keys added
            # or removed are deleted first (an added key is not held, the diff says so; deleting it
            # anyway keeps one row per key should two runs of a sync ever overlap), then added rows
            # are inserted and changed ones updated in place (first_synced_at kept).
            con.execute(
                """
                delete from activation.sync_state
                where sync_name = ? and record_key in (
                    select record_key from sync_window where status = 'sent' and change_kind <> 'changed')
                """,
                [sync_name],
            )
            con.execute(
                """
                insert into activation.sync_state
                select ?, record_key, row_hash, row_json, now()::timestamp, now()::timestamp, ?
                from sync_window where status = 'sent' and change_kind = 'added'
                """,
                [sync_name, run_id],
            )
            con.execute(
                """
                update activation.sync_state as state set
                    row_hash = w.row_hash, row_json = w.row_json, last_synced_at = now()::timestamp, last_run_id = ?
                from (select record_key, row_hash, row_json from sync_window
                      where status = 'sent' and change_kind = 'changed') as w
                where state.sync_name = ? and state.record_key = w.record_key
                """,
                [run_id, sync_name],
            )
            con.execute(
                """
                insert into activation.sync_ledger by name
                select ? as run_id, ? as sync_name, record_key,
                       case when change_kind = 'removed' then 'delete' else 'upsert' end as operation,
                       change_kind, batch_number, attempt, status, error, now()::timestamp as recorded_at,
                       idempotency_key, http_status, requests, split_name
                from sync_window
                """,
                [run_id, sync_name],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        for name in tables:
            con.unregister(name)


def _record_run(
    con: duckdb.DuckDBPyConnection,
    spec: SyncSpec,
    started_at: dt.datetime,
    result: SyncResult,
    *,
    ledger: bool,
    event: bool = True,
) -> None:
    """The run's row in activation.sync_runs (replacing its `running` row), and (for a real run) the
    ledger rows of the rows it did not send: invalid ones, those excluded for consent and the held out."""
    con.execute("begin transaction")
    try:
        if ledger:
            con.execute(
                """
                insert into activation.sync_ledger by name
                select ? as run_id, ? as sync_name, record_key, status, reason as error, now()::timestamp as recorded_at,
                       split_name
                from (select record_key, 'invalid' as status, reason, null::varchar as split_name from sync_plan_invalid
                      union all select record_key, 'excluded_consent', reason, null from sync_plan_excluded
                      union all select record_key, 'held_out', reason, split_name from sync_plan_held_out)
                """,
                [result.run_id, spec.name],
            )
        con.execute("delete from activation.sync_runs where run_id = ? and sync_name = ?", [result.run_id, spec.name])
        con.execute(
            """
            insert into activation.sync_runs by name
            select ? as run_id, ? as sync_name, ? as started_at, ? as finished_at, ? as status, ? as dry_run,
                   ? as added, ? as changed, ? as removed, ? as invalid, ? as unchanged, ? as sent, ? as failed,
                   ? as duration_s, ? as excluded_consent, ? as rejected, ? as retried, ? as message,
                   ? as not_sent, ? as http_retries, ? as held_out, ? as as_of
            """,
            [
                result.run_id,
                spec.name,
                started_at,
                None if result.status == "running" else _now(),
                result.status,
                result.dry_run,
                result.added,
                result.changed,
                result.removed,
                result.invalid,
                result.unchanged,
                result.sent,
                result.failed,
                result.duration_s,
                result.excluded_consent,
                result.rejected,
                result.retried,
                result.message,
                result.not_sent,
                result.http_retries,
                result.held_out,
                result.as_of,
            ],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    if not event:
        return
    record_event(
        con,
        "sync_run",
        spec.name,
        result.status,
        {
            "run_id": result.run_id,
            "audience": spec.audience,
            "destination": spec.destination.type,
            "dry_run": result.dry_run,
            "added": result.added,
            "changed": result.changed,
            "removed": result.removed,
            "sent": result.sent,
            "failed": result.failed,
            "rejected": result.rejected,
            "excluded_consent": result.excluded_consent,
            "suppressed": result.suppressed,
            "held_out": result.held_out,
            "not_sent": result.not_sent,
            "http_retries": result.http_retries,
            "marketing_actions": list(spec.marketing_actions),
            "message": result.message,
        },
    )


def _record_run_quietly(con: duckdb.DuckDBPyConnection, spec: SyncSpec, started_at: dt.datetime, result) -> None:
    """Record a run that an error stopped, on the way out: a failure to record must not hide the error
    that stopped the run (the row then stays `running`, and the next run records it as killed)."""
    try:
        _record_run(con, spec, started_at, result, ledger=False)
    except Exception as error:  # noqa: BLE001 (reported on the error being raised)
        import sys

        print(f"sync {spec.name}: could not record the stopped run: {error}", file=sys.stderr)


def _record_killed_runs(con: duckdb.DuckDBPyConnection, spec: SyncSpec, run_id: str) -> None:
    """Runs of this sync still `running` were killed (SIGKILL, power loss): record them as `killed`, with
    what their committed ledger says they delivered. Their uncommitted rows are in this run's diff."""
    killed = con.execute(
        "select run_id from activation.sync_runs where sync_name = ? and status = 'running' and run_id <> ?",
        [spec.name, run_id],
    ).fetchall()
    for (killed_run,) in killed:
        con.execute(
            """
            update activation.sync_runs set
                status = 'killed',
                finished_at = coalesce(ledger.last_recorded_at, sync_runs.started_at),
                sent = ledger.sent, failed = ledger.failed, rejected = ledger.rejected,
                message = 'the process ended before the run did (killed); rows it had not committed are sent '
                          || 'again by a later run under the same idempotency keys'
            from (
                select max(recorded_at) as last_recorded_at,
                       count(*) filter (where status = 'sent') as sent,
                       count(*) filter (where status = 'failed') as failed,
                       count(*) filter (where status = 'rejected') as rejected
                from activation.sync_ledger where sync_name = ? and run_id = ?
            ) as ledger
            where sync_runs.sync_name = ? and sync_runs.run_id = ?
            """,
            [spec.name, killed_run, spec.name, killed_run],
        )
