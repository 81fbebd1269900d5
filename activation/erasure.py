"""Erasure at the destinations: the delete each destination's own API needs, and the deletes still owed.

A privacy erasure (cdp/governance/privacy.py) removes a person's rows from every destination that
holds them. Each destination is sent the row as it last received it, so it finds the person by its own
key: the email tool by the member id of the email, the ad audience by the SHA-256 identifiers, the
webhook and PostgreSQL by the record key; file destinations rewrite their files without the rows.
A delete that is not confirmed (the destination was down, or refused it) stays in
activation.pending_erasures, with the row it needs; every later run of that sync sends it again before
its own changes (activation/engine.py) until the destination confirms, then settles the request in
audit.privacy_requests: per destination `confirmed`, and the request `completed` once none is pending.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import duckdb

from activation.destinations import Batch, Destination, RowOperation
from activation.spec import SyncSpec

PENDING_TABLE = "activation.pending_erasures"
PENDING_COLUMNS = """
    request_id VARCHAR, sync_name VARCHAR, record_key VARCHAR, row_json VARCHAR, requested_at TIMESTAMP,
    attempts INTEGER, last_error VARCHAR
"""
REQUESTS_TABLE = "audit.privacy_requests"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _redacted(text: str, keys: Iterable[str]) -> str:
    """An error to record without the record keys it may quote (the request record names nobody)."""
    for key in keys:
        if key:
            text = text.replace(key, "<key>")
    return text[:300]


def delete_at_destination(
    destination: Destination,
    spec: SyncSpec,
    rows: list[tuple[str, str | None]],
    request_id: str,
    values: set[str] | None = None,
) -> tuple[set[str], str | None, str | None]:
    """Delete (record key, row as last sent) at the destination. Returns the keys it confirmed, the
    first error (keys redacted) when some were not, and a note of what was done."""
    keys = [key for key, _ in rows]
    if hasattr(destination, "erase"):  # files: rewrite every file the sync wrote, without the rows
        removed = destination.erase(set(keys), values or set())
        return set(keys), None, f"erased from {removed} file row(s)"
    key_field = spec.key_field
    deletes = [
        RowOperation(key, f"erase:{request_id}:{key}", row_json or json.dumps({key_field: key}))
        for key, row_json in rows
    ]
    result = destination.send(
        Batch(
            sync_name=spec.name,
            run_id=request_id,
            number=1,
            key_field=key_field,
            given_upserts=[],
            given_deletes=deletes,
        )
    )
    unconfirmed = {**result.rejected, **result.failed}
    error = _redacted(next(iter(unconfirmed.values())), keys) if unconfirmed else None
    return set(keys) - set(unconfirmed), error, "delete sent and confirmed" if not unconfirmed else None


def ensure_pending_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists activation")
    con.execute(f"create table if not exists {PENDING_TABLE} ({PENDING_COLUMNS})")


def hold_pending(
    con: duckdb.DuckDBPyConnection, request_id: str, sync_name: str, rows: list[tuple[str, str | None]], error: str
) -> None:
    """Keep deletes not confirmed, with the row each destination needs, for the next runs."""
    ensure_pending_table(con)
    now = _now()
    con.executemany(
        f"insert into {PENDING_TABLE} values (?, ?, ?, ?, ?, 1, ?)",
        [[request_id, sync_name, key, row_json, now, error] for key, row_json in rows],
    )


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ? "
            "and table_catalog = current_database()",
            [schema, table],
        ).fetchone()[0]
    )


def settle_request(
    con: duckdb.DuckDBPyConnection, request_id: str, sync_name: str, destination_type: str, note: dict
) -> None:
    """Record one destination's outcome on the request; the request is `completed` once no delete of
    it is pending, `pending` until then."""
    if not _table_exists(con, "audit", "privacy_requests"):
        return
    pending = (
        con.execute(f"select count(*) from {PENDING_TABLE} where request_id = ?", [request_id]).fetchone()[0]
        if _table_exists(con, "activation", "pending_erasures")
        else 0
    )
    patch = json.dumps({sync_name: {"destination": destination_type, **note}})
    con.execute(
        f"""
        update {REQUESTS_TABLE} set
            destinations = json_merge_patch(coalesce(destinations, '{{}}'), ?::json),
            status = case when ? > 0 then 'pending' else 'completed' end,
            completed_at = case when ? > 0 then completed_at else now()::timestamp end
        where request_id = ?
        """,
        [patch, pending, pending, request_id],
    )


def retry_pending_erasures(
    con: duckdb.DuckDBPyConnection, spec: SyncSpec, destination: Destination, run_id: str
) -> int:
    """Send the deletes this sync still owes (before its changes); returns how many were confirmed."""
    if not _table_exists(con, "activation", "pending_erasures"):
        return 0
    owed = con.execute(
        f"select request_id, record_key, row_json from {PENDING_TABLE} where sync_name = ? order by 1, 2",
        [spec.name],
    ).fetchall()
    by_request: dict[str, list[tuple[str, str | None]]] = {}
    for request_id, key, row_json in owed:
        by_request.setdefault(request_id, []).append((key, row_json))
    confirmed_total = 0
    for request_id, rows in by_request.items():
        try:
            confirmed, error, _ = delete_at_destination(destination, spec, rows, request_id)
        except Exception as failure:  # the destination's own error: kept, tried again next run
            confirmed, error = set(), _redacted(f"{type(failure).__name__}: {failure}", [k for k, _ in rows])
        con.execute(
            f"delete from {PENDING_TABLE} where request_id = ? and sync_name = ? and list_contains(?, record_key)",
            [request_id, spec.name, sorted(confirmed)],
        )
        con.execute(
            f"update {PENDING_TABLE} set attempts = attempts + 1, last_error = ? where request_id = ? and sync_name = ?",
            [error, request_id, spec.name],
        )
        confirmed_total += len(confirmed)
        left = len(rows) - len(confirmed)
        note = (
            {"status": "confirmed", "records": len(rows), "confirmed_by_run": run_id}
            if not left
            else {"status": "pending", "records": len(rows), "pending": left, "error": error}
        )
        settle_request(con, request_id, spec.name, spec.destination.type, note)
    return confirmed_total
