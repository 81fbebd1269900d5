"""Run a sync: diff, gate (consent, removal guard, pre-sync checks), send in batches, and after each
batch commit what the destination acknowledged together with its ledger rows. A crash loses at most
the batch in flight, which the rerun sends again under the same idempotency keys."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from activation.destinations import DEFAULT_BATCH_SIZE, Batch, BatchResult, Destination, RowOperation, build_destination
from activation.diff import SyncPlan, plan_sync
from activation.errors import SyncAborted
from activation.hooks import PreSyncCheck, block_reason
from activation.spec import SyncSpec

PREVIEW_ROWS = 10


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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _batch_size(spec: SyncSpec, destination: Destination | None, override: int | None) -> int:
    return int(override or spec.setting("batch_size") or getattr(destination, "batch_size", None) or DEFAULT_BATCH_SIZE)


def _guard_message(spec: SyncSpec, plan: SyncPlan) -> str | None:
    if plan.held and plan.removed > spec.max_remove_share * plan.held:
        return (f"sync {spec.name}: this run would remove {plan.removed:,} of the {plan.held:,} rows the destination "
                f"holds ({plan.removed / plan.held:.0%}), more than the guard's max_remove_share "
                f"{spec.max_remove_share:.0%}. Check the audience {spec.audience}; if the drop is intended, rerun "
                "with --force (force=True) or raise guard.max_remove_share in the spec.")
    return None


def run_sync(con: duckdb.DuckDBPyConnection, spec: SyncSpec, *, run_id: str, base_dir: Path,
             dry_run: bool = False, destination: Destination | None = None, force: bool = False,
             progress: Callable[[int], None] | None = None, checks: Sequence[PreSyncCheck] | None = None,
             batch_size: int | None = None) -> SyncResult:
    """Send the audience's changes since the last successful sync. Rows that failed or were refused
    stay out of the state, so the next run sends them again. `progress` is called with the number of
    rows of each batch once it is done. Raises SyncAborted (nothing sent) when the removal guard or a
    pre-sync check stops the run."""
    started_at, started = _now(), time.perf_counter()
    plan = plan_sync(con, spec)
    counts = {"sent": 0, "failed": 0, "rejected": 0}
    con.execute(
        """
        create or replace temp table sync_plan_attempts as
        select record_key, count(*) as attempts from activation.sync_ledger
        where sync_name = ? and status in ('failed', 'rejected') group by 1
        """, [spec.name])
    retried = con.execute(
        "select count(*) from sync_plan_changes join sync_plan_attempts using (record_key)").fetchone()[0]

    def result(status: str, message: str | None = None, preview: dict | None = None,
               output_files: list[str] | None = None) -> SyncResult:
        return SyncResult(
            sync_name=spec.name, run_id=run_id, added=plan.added, changed=plan.changed, removed=plan.removed,
            invalid=plan.invalid, unchanged=plan.unchanged, sent=counts["sent"], failed=counts["failed"],
            duration_s=time.perf_counter() - started, dry_run=dry_run, output_files=output_files or [],
            excluded_consent=plan.excluded_consent, rejected=counts["rejected"], retried=0 if dry_run else retried,
            status=status, message=message, preview=preview or {},
        )

    stop = _guard_message(spec, plan) if not force else None
    blocked = block_reason(spec, plan, checks)
    if dry_run:
        preview = {kind: [k for (k,) in con.execute(
            "select record_key from sync_plan_changes where change_kind = ? order by seq limit ?",
            [kind, PREVIEW_ROWS]).fetchall()] for kind in ("added", "changed", "removed")}
        outcome = result("dry_run", blocked or stop, preview)
        _record_run(con, spec, started_at, outcome, ledger=False)
        return outcome
    if blocked or stop:
        outcome = result("blocked" if blocked else "aborted", blocked or stop)
        _record_run(con, spec, started_at, outcome, ledger=False)
        raise SyncAborted(outcome.message if stop and not blocked else f"sync {spec.name} blocked by {blocked}")

    destination = destination or build_destination(spec, base_dir)
    try:
        begin = getattr(destination, "begin", None)
        if begin:
            begin(run_id)
        size = _batch_size(spec, destination, batch_size)
        changes = con.execute(
            "select seq, record_key, change_kind, idempotency_key, row_json from sync_plan_changes order by seq").pl()
        seqs, keys, kinds = changes["seq"].to_list(), changes["record_key"].to_list(), changes["change_kind"].to_list()
        idempotency_keys, rows = changes["idempotency_key"].to_list(), changes["row_json"].to_list()
        del changes
        for number, start in enumerate(range(0, len(keys), size), start=1):
            stop_at = min(start + size, len(keys))
            upserts, deletes = [], []
            for i in range(start, stop_at):
                (deletes if kinds[i] == "removed" else upserts).append(
                    RowOperation(keys[i], idempotency_keys[i], rows[i]))
            batch = Batch(sync_name=spec.name, run_id=run_id, number=number, key_field=spec.key_field,
                          upsert_operations=upserts, delete_operations=deletes)
            try:
                outcome = destination.send(batch)
            except Exception as error:  # the whole batch failed: retried next run
                outcome = BatchResult(failed={k: f"{type(error).__name__}: {error}" for k in keys[start:stop_at]})
            _checkpoint(con, spec, run_id, number, seqs[start], seqs[stop_at - 1], outcome)
            bad = len(outcome.failed) + len(outcome.rejected.keys() - outcome.failed.keys())
            counts["failed"] += len(outcome.failed)
            counts["rejected"] += len(outcome.rejected.keys() - outcome.failed.keys())
            counts["sent"] += stop_at - start - bad
            if progress:
                progress(stop_at - start)
        output_files: list[str] = []
        status = "partial" if counts["failed"] or counts["rejected"] else "succeeded"
        final = result(status)
        _record_run(con, spec, started_at, final, ledger=True)
        if getattr(destination, "wants_held_rows", False):
            held = [json.loads(r) for (r,) in con.execute(
                "select row_json from activation.sync_state where sync_name = ? order by record_key", [spec.name]
            ).fetchall()]
            output_files = destination.finish(held)
            final = result(status, output_files=output_files)
        return final
    finally:
        close = getattr(destination, "close", None)
        if close:
            close()


def _checkpoint(con: duckdb.DuckDBPyConnection, spec: SyncSpec, run_id: str, number: int, first_seq: int,
                last_seq: int, outcome: BatchResult) -> None:
    """One transaction per batch: the acknowledged rows reach the state, every row gets its ledger row."""
    bad = [(k, "failed", e) for k, e in outcome.failed.items()]
    bad += [(k, "rejected", e) for k, e in outcome.rejected.items() if k not in outcome.failed]
    outcomes = pl.DataFrame(
        {"record_key": [b[0] for b in bad], "status": [b[1] for b in bad], "error": [b[2] for b in bad],
         "http_status": [outcome.http_status.get(b[0]) for b in bad]},
        schema={"record_key": pl.String, "status": pl.String, "error": pl.String, "http_status": pl.Int32},
    )
    http_codes = pl.DataFrame({"record_key": list(outcome.http_status), "code": list(outcome.http_status.values())},
                              schema={"record_key": pl.String, "code": pl.Int32})
    con.execute("begin transaction")
    try:
        con.register("batch_outcomes", outcomes.to_arrow())
        con.register("batch_http_codes", http_codes.to_arrow())
        con.execute(
            """
            insert or replace into activation.sync_state
            select ?, changes.record_key, changes.row_hash, changes.row_json,
                   coalesce(held.first_synced_at, now()::timestamp), now()::timestamp, ?
            from sync_plan_changes as changes
            left join activation.sync_state as held on held.sync_name = ? and held.record_key = changes.record_key
            where changes.seq between ? and ? and changes.change_kind <> 'removed'
              and changes.record_key not in (select record_key from batch_outcomes)
            """,
            [spec.name, run_id, spec.name, first_seq, last_seq],
        )
        con.execute(
            """
            delete from activation.sync_state
            where sync_name = ? and record_key in (
                select record_key from sync_plan_changes
                where seq between ? and ? and change_kind = 'removed'
                  and record_key not in (select record_key from batch_outcomes))
            """,
            [spec.name, first_seq, last_seq],
        )
        con.execute(
            """
            insert into activation.sync_ledger by name
            select ? as run_id, ? as sync_name, changes.record_key,
                   case when changes.change_kind = 'removed' then 'delete' else 'upsert' end as operation,
                   changes.change_kind, ? as batch_number, coalesce(attempts.attempts, 0) + 1 as attempt,
                   coalesce(outcomes.status, 'sent') as status, outcomes.error, now()::timestamp as recorded_at,
                   changes.idempotency_key, coalesce(outcomes.http_status, codes.code, ?) as http_status
            from sync_plan_changes as changes
            left join batch_outcomes as outcomes using (record_key)
            left join batch_http_codes as codes using (record_key)
            left join sync_plan_attempts as attempts using (record_key)
            where changes.seq between ? and ?
            """,
            [run_id, spec.name, number, outcome.default_http_status, first_seq, last_seq],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        con.unregister("batch_outcomes")
        con.unregister("batch_http_codes")


def _record_run(con: duckdb.DuckDBPyConnection, spec: SyncSpec, started_at: dt.datetime, result: SyncResult,
                *, ledger: bool) -> None:
    """The run's row in activation.sync_runs, and (for a real run) the ledger rows of the rows it did
    not send: invalid ones and those excluded for consent."""
    con.execute("begin transaction")
    try:
        if ledger:
            con.execute(
                """
                insert into activation.sync_ledger by name
                select ? as run_id, ? as sync_name, record_key, status, reason as error, now()::timestamp as recorded_at
                from (select record_key, 'invalid' as status, reason from sync_plan_invalid
                      union all select record_key, 'excluded_consent', reason from sync_plan_excluded)
                """,
                [result.run_id, spec.name],
            )
        con.execute(
            """
            insert into activation.sync_runs by name
            select ? as run_id, ? as sync_name, ? as started_at, ? as finished_at, ? as status, ? as dry_run,
                   ? as added, ? as changed, ? as removed, ? as invalid, ? as unchanged, ? as sent, ? as failed,
                   ? as duration_s, ? as excluded_consent, ? as rejected, ? as retried, ? as message
            """,
            [result.run_id, spec.name, started_at, _now(), result.status, result.dry_run, result.added,
             result.changed, result.removed, result.invalid, result.unchanged, result.sent, result.failed,
             result.duration_s, result.excluded_consent, result.rejected, result.retried, result.message],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
