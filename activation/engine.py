"""Run a sync: diff, send in batches, record every row operation, commit what succeeded."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from activation.destinations import Batch, Destination, build_destination
from activation.diff import plan_sync
from activation.audit import record_event
from activation.errors import ActivationError
from activation.policies import policy_pre_sync_check
from activation.spec import SyncSpec

BATCH_SIZE = 10_000


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
    suppressed: int = 0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def run_sync(con: duckdb.DuckDBPyConnection, spec: SyncSpec, *, run_id: str, base_dir: Path,
             dry_run: bool = False, destination: Destination | None = None) -> SyncResult:
    """Send the audience's changes since the last successful sync. Rows the destination refused
    or that failed stay out of the state, so the next run sends them again."""
    started_at, started = _now(), time.perf_counter()
    _policy_gate(con, spec, run_id)
    plan = plan_sync(con, spec)
    changes = con.execute(
        "select record_key, change_kind, row_hash, row_json from sync_plan_changes order by change_kind, record_key"
    ).pl()
    invalid = con.execute("select record_key, reason from sync_plan_invalid").pl()
    ledger: list[dict] = []
    failed: dict[str, str] = {}
    output_files: list[str] = []
    if not dry_run:
        destination = destination or build_destination(spec, base_dir)
        attempts = _previous_failures(con, spec.name)
        for number, start in enumerate(range(0, changes.height, BATCH_SIZE), start=1):
            batch_rows = changes.slice(start, BATCH_SIZE)
            upserts = batch_rows.filter(pl.col("change_kind") != "removed")
            deletes = batch_rows.filter(pl.col("change_kind") == "removed")
            batch = Batch(
                sync_name=spec.name, run_id=run_id, number=number, key_field=_key_field(spec),
                upserts=[json.loads(r) for r in upserts["row_json"]],
                deletes=[json.loads(r) for r in deletes["row_json"]],
            )
            try:
                batch_failed = destination.send(batch).failed
            except Exception as error:  # the whole batch failed: retried next run
                batch_failed = {key: f"{type(error).__name__}: {error}" for key in batch_rows["record_key"]}
            failed.update(batch_failed)
            at = _now()
            for key, kind in batch_rows.select("record_key", "change_kind").iter_rows():
                ledger.append({
                    "run_id": run_id, "sync_name": spec.name, "record_key": key,
                    "operation": "delete" if kind == "removed" else "upsert", "change_kind": kind,
                    "batch_number": number, "attempt": attempts.get(key, 0) + 1,
                    "status": "failed" if key in batch_failed else "sent", "error": batch_failed.get(key), "recorded_at": at,
                })
        at = _now()
        for key, reason in invalid.iter_rows():
            ledger.append({"run_id": run_id, "sync_name": spec.name, "record_key": key, "operation": None,
                           "change_kind": None, "batch_number": None, "attempt": None, "status": "invalid",
                           "error": reason, "recorded_at": at})
    sent = changes.height - len(failed) if not dry_run else 0
    result = SyncResult(
        sync_name=spec.name, run_id=run_id, added=plan.added, changed=plan.changed, removed=plan.removed,
        invalid=plan.invalid, unchanged=plan.unchanged, sent=sent, failed=len(failed),
        duration_s=time.perf_counter() - started, dry_run=dry_run, output_files=output_files,
        suppressed=plan.suppressed,
    )
    _commit(con, spec, run_id, started_at, result, ledger, failed)
    record_event(con, "sync_run", spec.name, "failed" if result.failed else "succeeded", {
        "run_id": run_id, "audience": spec.audience, "destination": spec.destination.type, "dry_run": dry_run,
        "added": result.added, "changed": result.changed, "removed": result.removed, "sent": result.sent,
        "failed": result.failed, "suppressed": result.suppressed,
        "marketing_actions": list(spec.marketing_actions)})
    if not dry_run and destination is not None:
        held = [json.loads(r) for (r,) in con.execute(
            "select row_json from activation.sync_state where sync_name = ? order by record_key", [spec.name]
        ).fetchall()]
        output_files.extend(destination.finish(held))
    return result


def _policy_gate(con: duckdb.DuckDBPyConnection, spec: SyncSpec, run_id: str) -> None:
    """Data-usage policies run before anything is sent: a violation blocks the sync and names the
    policy, the label, the column and the source contract column it came from."""
    reason = policy_pre_sync_check(con)(spec)
    if reason:
        raise ActivationError(f"sync {spec.name} (run {run_id}) is blocked; nothing was sent. {reason}")


def _key_field(spec: SyncSpec) -> str:
    return next(target for target, column in spec.fields.items() if column == spec.primary_key)


def _previous_failures(con: duckdb.DuckDBPyConnection, sync_name: str) -> dict[str, int]:
    return dict(con.execute(
        "select record_key, count(*) from activation.sync_ledger where sync_name = ? and status = 'failed' group by 1",
        [sync_name],
    ).fetchall())


def _commit(con: duckdb.DuckDBPyConnection, spec: SyncSpec, run_id: str, started_at: dt.datetime,
            result: SyncResult, ledger: list[dict], failed: dict[str, str]) -> None:
    """State, ledger and run record in one transaction: only acknowledged operations reach the state."""
    con.execute("begin transaction")
    try:
        if not result.dry_run:
            succeeded = pl.DataFrame({"record_key": [k for k in failed]}, schema={"record_key": pl.String})
            con.register("failed_keys", succeeded.to_arrow())
            con.execute(
                """
                insert or replace into activation.sync_state
                select ?, changes.record_key, changes.row_hash, changes.row_json,
                       coalesce(held.first_synced_at, now()::timestamp), now()::timestamp, ?
                from sync_plan_changes as changes
                left join activation.sync_state as held
                    on held.sync_name = ? and held.record_key = changes.record_key
                where changes.change_kind <> 'removed'
                  and changes.record_key not in (select record_key from failed_keys)
                """,
                [spec.name, run_id, spec.name],
            )
            con.execute(
                """
                delete from activation.sync_state
                where sync_name = ?
                  and record_key in (select record_key from sync_plan_changes where change_kind = 'removed')
                  and record_key not in (select record_key from failed_keys)
                """,
                [spec.name],
            )
            con.unregister("failed_keys")
            if ledger:
                con.register("ledger_rows", pl.DataFrame(ledger, infer_schema_length=None).to_arrow())
                con.execute("insert into activation.sync_ledger by name select * from ledger_rows")
                con.unregister("ledger_rows")
        con.execute(
            "insert into activation.sync_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run_id, spec.name, started_at, _now(), "failed" if result.failed else "succeeded", result.dry_run,
             result.added, result.changed, result.removed, result.invalid, result.unchanged, result.sent,
             result.failed, result.duration_s, None],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
