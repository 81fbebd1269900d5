"""Privacy requests: access (export everything held about a person) and erasure (delete it
everywhere, tell every destination, and keep it from coming back).

A person is named by one identifier, `<namespace>:<value>` (email:ana@example.com). The identity
graph resolves it to the person's profile(s), and through them to every identifier and every source
record of the person. One matcher finds the person's rows in every table of the warehouse:

- raw.<contract>: the person's source records ('<contract>:<primary key>' is a record id), rows that
  carry one of the person's identifiers in an identifier column, and child rows of removed records
  (an order's lines: a column named as another contract's primary key);
- quarantine.<contract>: the same, with the raw (un-normalized) identifier values of the removed raw
  rows and a text search of malformed lines;
- every other table (xdm, identity, profiles, segments, predictions, snapshots, activation ledger,
  any table added later): rows where a text column equals one of the person's profile ids, record
  ids, identifier values, identity keys or hashes, and JSON/text payload columns that contain one.

Erasure also removes the person from every destination that holds them (activation.sync_state says
which), republishes the serving store, and adds the SHA-256 of every identifier and record key to
governance.suppressed_identifiers, which the loader consults: re-loading the landing files (the
customer's source of truth, never edited) does not bring the person back. audit.privacy_requests
records the request with hashed identifiers only, the rows deleted per table, the destinations
notified and the times; audit.events gets one row per request.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

import activation
import data_contracts
from activation.audit import record_event
from activation.erasure import PENDING_TABLE, delete_at_destination, hold_pending
from activation.inbox import erase_from_inbox
from activation.suppression import normalize_identifier, sha256, suppress
from cdp.errors import CdpError
from cdp.sources import SourceLineage

REQUESTS_DDL = """
    request_id VARCHAR PRIMARY KEY, kind VARCHAR, actor VARCHAR, namespace VARCHAR, identifier_sha256 VARCHAR,
    status VARCHAR, profile_ids_sha256 VARCHAR[], identifiers_sha256 VARCHAR[], rows_found JSON,
    rows_deleted JSON, destinations JSON, suppressed_added BIGINT, output_file VARCHAR,
    requested_at TIMESTAMP, completed_at TIMESTAMP, seconds DOUBLE
"""
# Never scanned for deletion: the records of the requests themselves (hashes only, by design).
KEPT_TABLES = {
    ("governance", "suppressed_identifiers"),
    ("audit", "privacy_requests"),
    ("audit", "events"),
    ("audit", "loads"),
    ("audit", "expectation_results"),
    ("governance", "column_labels"),
    # Deletes still owed to a destination, with the row it needs to find the person; removed once confirmed.
    tuple(PENDING_TABLE.split(".")),
}
PAYLOAD_COLUMNS = ("row_json", "_raw_line", "_extra", "_errors", "details")
MIN_SEARCH_LENGTH = 6  # shorter values are not searched inside payload text (too many false matches)


class PrivacyRequestError(CdpError):
    """The request cannot be carried out as asked; the message says why and what to do."""


@dataclass
class Person:
    namespace: str
    value: str  # normalized
    profile_ids: set[str] = field(default_factory=set)
    identities: set[tuple[str, str]] = field(default_factory=set)  # (namespace, normalized value)
    record_ids: set[str] = field(default_factory=set)
    raw_values: set[str] = field(default_factory=set)  # identifier values as the sources wrote them (lower, trimmed)
    parent_keys: dict[str, set[str]] = field(default_factory=dict)  # contract -> primary keys of removed records

    @property
    def values(self) -> set[str]:
        return {v for _, v in self.identities} | {self.value}

    def hashes(self) -> dict[str, str]:
        """Every hash the suppression list should hold for this person: {sha256: namespace}."""
        hashes = {sha256(v): ns for ns, v in self.identities}
        hashes[sha256(self.value)] = self.namespace
        hashes.update({sha256(v): "source_value" for v in self.raw_values})
        for contract, keys in self.parent_keys.items():
            hashes.update({sha256(k.strip().lower()): f"key:{contract}" for k in keys})
        return hashes

    def match_values(self) -> set[str]:
        values = set(self.profile_ids) | self.record_ids | self.values | self.raw_values
        values |= {f"{ns}:{v}" for ns, v in self.identities}
        values |= {sha256(v) for v in self.values}
        values |= {v.lower() for v in values}
        return {v for v in values if v}


def identifier_columns() -> dict[str, list[str]]:
    """Per contract, the columns holding an identifier: the contract columns behind the identifiers the
    staging models declare (cdp.identifiers), through their column lineage."""
    return SourceLineage().identifier_columns()


def child_key_columns(contracts: dict[str, data_contracts.Contract]) -> dict[str, list[tuple[str, str]]]:
    """Per contract, (column, parent contract) where the column is named as the parent's one-column
    primary key and is not the contract's own key: webshop__order_lines.order_id -> webshop__orders."""
    keys = {name: c.primary_key[0] for name, c in contracts.items() if len(c.primary_key) == 1}
    result: dict[str, list[tuple[str, str]]] = {}
    for name, contract in contracts.items():
        for parent, key in keys.items():
            if parent != name and key in contract.columns and key not in contract.primary_key:
                result.setdefault(name, []).append((key, parent))
    return result


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return (
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
        ).fetchone()[0]
        > 0
    )


def _count(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> int:
    return con.execute(f"select count(*) from {schema}.{table}").fetchone()[0] if _exists(con, schema, table) else 0


def parse_identifier(identifier: str) -> tuple[str, str]:
    namespace, _, value = identifier.partition(":")
    if not namespace or not value.strip():
        raise PrivacyRequestError(f"{identifier!r}: expected <namespace>:<value>, e.g. email:ana@example.com")
    return namespace.strip(), normalize_identifier(namespace.strip(), value)


def resolve(con: duckdb.DuckDBPyConnection, identifier: str) -> Person:
    """The person behind one identifier, through the identity graph: profiles, identities, records."""
    namespace, value = parse_identifier(identifier)
    person = Person(namespace=namespace, value=value)
    if _exists(con, "profiles", "profile_identities"):
        person.profile_ids = {
            p
            for (p,) in con.execute(
                "select distinct profile_id from profiles.profile_identities where namespace = ? and identity_value = ?",
                [namespace, value],
            ).fetchall()
        }
    if not person.profile_ids and _exists(con, "identity", "identity_graph"):
        person.profile_ids = {
            p
            for (p,) in con.execute(
                "select distinct profile_id from identity.identity_graph where namespace = ? and identity_value = ?",
                [namespace, value],
            ).fetchall()
        }
    person.identities = {(namespace, value)}
    if person.profile_ids:
        ids = sorted(person.profile_ids)
        if _exists(con, "profiles", "profile_identities"):
            person.identities |= set(
                con.execute(
                    "select namespace, identity_value from profiles.profile_identities where list_contains(?, profile_id)",
                    [ids],
                ).fetchall()
            )
        if _exists(con, "identity", "record_profiles"):
            person.record_ids = {
                r
                for (r,) in con.execute(
                    "select record_id from identity.record_profiles where list_contains(?, profile_id)", [ids]
                ).fetchall()
            }
    return person


def _load_values(con: duckdb.DuckDBPyConnection, name: str, values: set[str]) -> None:
    con.execute(f"create or replace temp table {name} (v varchar)")
    if values:
        con.executemany(f"insert into {name} values (?)", [[v] for v in sorted(values)])


def _table_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    return {
        c
        for (c,) in con.execute(
            "select column_name from information_schema.columns where table_schema = ? "
            "and table_name = ? and table_catalog = current_database()",
            [schema, table],
        ).fetchall()
    }


def _raw_conditions(
    contract: data_contracts.Contract,
    person: Person,
    id_columns: list[str],
    child_keys: list[tuple[str, str]],
    quarantine: bool,
    present: set[str],
) -> str:
    """The person's rows in raw.<contract> or quarantine.<contract> (columns the table lacks, e.g.
    added to the contract later, are skipped)."""
    id_columns = [c for c in id_columns if c in present]
    child_keys = [(c, parent) for c, parent in child_keys if c in present]
    quarantine = quarantine and "_raw_line" in present
    key = contract.primary_key[0] if len(contract.primary_key) == 1 and contract.primary_key[0] in present else None
    conditions = []
    if key:
        conditions.append(f"'{contract.name}:' || cast(\"{key}\" as varchar) in (select v from person_records)")
    for column in id_columns:
        conditions.append(f'lower(trim(cast("{column}" as varchar))) in (select v from person_identifiers)')
    for column, parent in child_keys:
        if person.parent_keys.get(parent):
            conditions.append(
                f"cast(\"{column}\" as varchar) in (select v from parent_keys where contract = '{parent}')"
            )
    if quarantine:
        conditions.append(
            "_raw_line is not null and exists (select 1 from person_search s where contains(lower(_raw_line), s.v))"
        )
    return " or ".join(f"({c})" for c in conditions) or "false"


def _text_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ? "
        "and (data_type in ('VARCHAR', 'JSON') or data_type = 'VARCHAR[]')",
        [schema, table],
    ).fetchall()


def _generic_condition(columns: list[tuple[str, str]]) -> str | None:
    conditions = []
    for column, data_type in columns:
        quoted = f'"{column}"'
        if data_type == "VARCHAR[]":
            conditions.append(f"list_has_any({quoted}, (select list(v) from person_values))")
        elif data_type == "JSON" or column in PAYLOAD_COLUMNS:
            conditions.append(
                f"exists (select 1 from person_search s where contains(lower(cast({quoted} as varchar)), s.v))"
            )
        else:
            conditions.append(f"{quoted} in (select v from person_values)")
    return " or ".join(f"({c})" for c in conditions) if conditions else None


def _base_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_type = 'BASE TABLE' and table_catalog = current_database() "
        "and table_schema not in ('information_schema', 'pg_catalog') order by 1, 2"
    ).fetchall()


def find_rows(con: duckdb.DuckDBPyConnection, person: Person) -> dict[str, str]:
    """{schema.table: where clause} of the person's rows in every table. Raw tables first: the records
    they remove feed the matcher of the quarantine and of every other table."""
    contracts = data_contracts.load_contracts()
    id_columns, child_keys = identifier_columns(), child_key_columns(contracts)
    _load_values(con, "person_records", person.record_ids)
    _load_values(con, "person_identifiers", {v.lower() for v in person.values})
    con.execute("create or replace temp table parent_keys (contract varchar, v varchar)")
    where: dict[str, str] = {}
    # Parents before children, so an order's key is known when its lines are matched.
    order = sorted(contracts, key=lambda n: (len(child_keys.get(n, [])) > 0, n))
    for name in order:
        contract = contracts[name]
        if not _exists(con, "raw", name):
            continue
        present = _table_columns(con, "raw", name)
        condition = _raw_conditions(
            contract, person, id_columns.get(name, []), child_keys.get(name, []), False, present
        )
        where[f"raw.{name}"] = condition
        columns = [c for c in id_columns.get(name, []) + list(contract.primary_key) if c in present]
        selected = ", ".join(f'cast("{c}" as varchar)' for c in columns)
        for row in con.execute(f"select {selected} from raw.{name} where {condition}").fetchall():
            values = dict(zip(columns, row))
            for column in id_columns.get(name, []):
                if values.get(column):
                    person.raw_values.add(values[column].strip().lower())
            if len(contract.primary_key) == 1 and contract.primary_key[0] in values and values[contract.primary_key[0]]:
                key = values[contract.primary_key[0]]
                person.parent_keys.setdefault(name, set()).add(key)
                person.record_ids.add(f"{name}:{key}")
                con.execute("insert into parent_keys values (?, ?)", [name, key])
    _load_values(con, "person_records", person.record_ids)
    _load_values(con, "person_identifiers", {v.lower() for v in person.values} | person.raw_values)
    _load_values(con, "person_values", person.match_values())
    _load_values(con, "person_search", {v.lower() for v in person.match_values() if len(v) >= MIN_SEARCH_LENGTH})
    for name in order:
        if _exists(con, "quarantine", name):
            where[f"quarantine.{name}"] = _raw_conditions(
                contracts[name],
                person,
                id_columns.get(name, []),
                child_keys.get(name, []),
                True,
                _table_columns(con, "quarantine", name),
            )
    for schema, table in _base_tables(con):
        if schema in ("raw", "quarantine") or (schema, table) in KEPT_TABLES:
            continue
        condition = _generic_condition(_text_columns(con, schema, table))
        if condition:
            where[f"{schema}.{table}"] = condition
    return where


def _ensure_requests(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(f"create table if not exists audit.privacy_requests ({REQUESTS_DDL})")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class PrivacyOutcome:
    request_id: str
    kind: str
    profile_ids: list[str]
    rows: dict[str, int]  # found (access) or deleted (erase), per table with any
    destinations: dict[str, Any] = field(default_factory=dict)
    suppressed_added: int = 0
    output_file: Path | None = None
    seconds: float = 0.0
    serving_republished: bool = False
    status: str = "completed"  # erase: pending until every destination confirmed its delete


def _record_request(con, outcome: PrivacyOutcome, person: Person, requested_at: dt.datetime, status: str) -> None:
    _ensure_requests(con)
    rows_json = json.dumps(outcome.rows)
    con.execute(
        "insert into audit.privacy_requests values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            outcome.request_id,
            outcome.kind,
            activation.audit.actor(),
            person.namespace,
            sha256(person.value),
            status,
            sorted(sha256(p) for p in person.profile_ids),
            sorted(person.hashes()),
            rows_json if outcome.kind == "access" else None,
            rows_json if outcome.kind == "erase" else None,
            json.dumps(outcome.destinations),
            outcome.suppressed_added,
            str(outcome.output_file) if outcome.output_file else None,
            requested_at,
            _now(),
            round(outcome.seconds, 3),
        ],
    )
    # The event names the request, not the person: the hashes stay in audit.privacy_requests only.
    record_event(
        con,
        "privacy_request",
        f"{outcome.kind}:{outcome.request_id}",
        status,
        {
            "namespace": person.namespace,
            "profiles": len(person.profile_ids),
            "rows": sum(outcome.rows.values()),
            "destinations": sorted(outcome.destinations),
            "serving_republished": outcome.serving_republished,
        },
    )


def access(con: duckdb.DuckDBPyConnection, identifier: str, output_dir: Path) -> PrivacyOutcome:
    """Export everything held about the person as one JSON file: every matching row of every table
    (raw, quarantine, profile, identities, events, consents, traits, memberships, ...) and what was
    sent to which destination."""
    started, requested_at = time.perf_counter(), _now()
    request_id = f"access-{uuid.uuid4().hex[:12]}"
    person = resolve(con, identifier)
    where = find_rows(con, person)
    tables: dict[str, list[dict]] = {}
    for relation, condition in where.items():
        frame = con.execute(f"select * from {relation} where {condition}").pl()
        if frame.height:
            tables[relation] = frame.to_dicts()
    specs = _sync_specs()
    sent = {
        name: {
            "audience": spec.audience,
            "destination": {"type": spec.destination.type, **spec.destination.settings},
            "marketing_actions": list(spec.marketing_actions),
        }
        for name, spec in specs.items()
        if any(r.get("sync_name") == name for r in tables.get("activation.sync_state", []))
    }
    document = {
        "request_id": request_id,
        "requested_at": requested_at,
        "identifier": identifier,
        "profile_ids": sorted(person.profile_ids),
        "identities": [{"namespace": ns, "value": v} for ns, v in sorted(person.identities)],
        "destinations_holding_the_person": sent,
        "tables": tables,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{request_id}.json"
    path.write_text(json.dumps(document, indent=2, default=str, ensure_ascii=False))
    outcome = PrivacyOutcome(
        request_id=request_id,
        kind="access",
        profile_ids=sorted(person.profile_ids),
        rows={k: len(v) for k, v in tables.items()},
        destinations=sent,
        output_file=path,
        seconds=time.perf_counter() - started,
    )
    _record_request(con, outcome, person, requested_at, "completed" if person.profile_ids or tables else "not_found")
    return outcome


def _sync_specs() -> dict[str, activation.SyncSpec]:
    try:
        return activation.load_sync_specs()
    except activation.ActivationError:
        return {}


def _erase_from_destinations(
    con: duckdb.DuckDBPyConnection, person: Person, base_dir: Path, request_id: str
) -> dict[str, Any]:
    """Remove the person from every destination that holds them (activation.sync_state says which),
    each with the row it last sent them, which carries the destination's own key (activation/erasure.py).
    Deletes not confirmed move to activation.pending_erasures, which every later run of the sync sends
    again; the person's rows leave the sync state either way. Per destination: confirmed or pending
    (with the error, never a record key)."""
    if not _exists(con, "activation", "sync_state"):
        return {}
    held = con.execute(
        f"select sync_name, record_key, row_json from activation.sync_state where {find_state_condition()}"
    ).fetchall()
    by_sync: dict[str, list[tuple[str, str | None]]] = {}
    for sync_name, key, row_json in held:
        by_sync.setdefault(sync_name, []).append((key, row_json))
    specs = _sync_specs()
    notified: dict[str, Any] = {}
    for sync_name, rows in sorted(by_sync.items()):
        spec = specs.get(sync_name)
        confirmed: set[str] = set()
        note: str | None = None
        if spec is None:
            error = f"no sync spec named {sync_name}: the destination was not told; remove the rows there by hand"
        else:
            try:
                destination = activation.build_destination(spec, base_dir)
                try:
                    confirmed, error, note = delete_at_destination(
                        destination, spec, rows, request_id, person.match_values()
                    )
                    inbox = getattr(destination, "inbox", None)
                    if inbox is not None and confirmed:  # the built-in inbox also keeps a received log
                        keys = {k for k, _ in rows}
                        removed = erase_from_inbox(inbox.directory, keys | person.match_values())
                        note = f"{note}; {removed} line(s) erased from the inbox's log"
                finally:
                    getattr(destination, "close", lambda: None)()
            except Exception as failure:  # kept as pending, sent again by the next run of the sync
                error = f"{type(failure).__name__}: {failure}"
        unconfirmed = [(k, j) for k, j in rows if k not in confirmed]
        if unconfirmed:
            error = _redact(error or "not confirmed", person)
            hold_pending(con, request_id, sync_name, unconfirmed, error)
        notified[sync_name] = {
            "destination": spec.destination.type if spec else None,
            "records": len(rows),
            "status": "pending" if unconfirmed else "confirmed",
            **({"pending": len(unconfirmed), "error": error} if unconfirmed else {"detail": note}),
        }
        # The person leaves the state either way: confirmed deletes are done, the others are owed
        # through activation.pending_erasures (so the sync's own diff never sends them again).
        con.execute(
            "delete from activation.sync_state where sync_name = ? and list_contains(?, record_key)",
            [sync_name, [k for k, _ in rows]],
        )
    return notified


def _redact(text: str, person: Person) -> str:
    """An error message without the person's ids or identifiers (it is kept in the request record)."""
    for value in sorted(person.match_values(), key=len, reverse=True):
        if len(value) >= 3:
            text = text.replace(value, "<redacted>")
    return text[:300]


def _delete_access_exports(con: duckdb.DuckDBPyConnection, person: Person) -> int:
    """Delete the files of the person's earlier access requests (they hold everything about them)."""
    if not _exists(con, "audit", "privacy_requests"):
        return 0
    hashes = sorted(person.hashes())
    profile_hashes = sorted(sha256(p) for p in person.profile_ids)
    files = con.execute(
        """
        select output_file from audit.privacy_requests
        where kind = 'access' and output_file is not null
          and (list_contains(?, identifier_sha256) or list_has_any(profile_ids_sha256, ?::varchar[]))
        """,
        [hashes, profile_hashes],
    ).fetchall()
    deleted = 0
    for (name,) in files:
        path = Path(name)
        if path.exists():
            path.unlink()
            deleted += 1
    return deleted


def compact_warehouse(warehouse: Path, request_id: str) -> int:
    """Rewrite the warehouse file once the erasure committed, so the deleted rows' bytes are gone from
    its free blocks and WAL (cdp.warehouse.compact); note it on the request. Returns the file's size."""
    from cdp.warehouse import compact, connect

    with connect(warehouse) as con:
        con.execute(
            """update audit.privacy_requests
               set destinations = json_merge_patch(coalesce(destinations, '{}'), '{"warehouse_file": "rewritten"}')
               where request_id = ?""",
            [request_id],
        )
    return compact(warehouse)


def find_state_condition() -> str:
    return (
        "record_key in (select v from person_values) or exists "
        "(select 1 from person_search s where contains(lower(row_json), s.v))"
    )


def erase(con: duckdb.DuckDBPyConnection, identifier: str, base_dir: Path) -> PrivacyOutcome:
    """Erase the person from the warehouse and every destination (see the module docstring). The
    serving store is republished afterwards by `republish_serving_store`, once this connection is
    closed (DuckDB lets one process hold a file for writing, and publishing attaches it again)."""
    started, requested_at = time.perf_counter(), _now()
    request_id = f"erase-{uuid.uuid4().hex[:12]}"
    person = resolve(con, identifier)
    where = find_rows(con, person)
    state_before = _count(con, "activation", "sync_state")
    destinations = _erase_from_destinations(con, person, base_dir, request_id)
    exports = _delete_access_exports(con, person)
    if exports:
        destinations["access_exports"] = {"status": "confirmed", "records": exports, "detail": "export file(s) deleted"}
    deleted: dict[str, int] = {}
    if state_before - _count(con, "activation", "sync_state"):
        deleted["activation.sync_state"] = state_before - _count(con, "activation", "sync_state")
    con.execute("begin transaction")
    try:
        for relation, condition in where.items():
            count = con.execute(f"delete from {relation} where {condition}").fetchone()[0]
            if count:
                deleted[relation] = count
        added = suppress(con, person.hashes(), reason="erasure", request_id=request_id)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    outcome = PrivacyOutcome(
        request_id=request_id,
        kind="erase",
        profile_ids=sorted(person.profile_ids),
        rows=deleted,
        destinations=destinations,
        suppressed_added=added,
    )
    outcome.seconds = time.perf_counter() - started
    # Open (pending) until every destination confirmed its delete: later sync runs retry and settle it.
    status = "completed" if all(d["status"] == "confirmed" for d in destinations.values()) else "pending"
    outcome.status = status
    _record_request(con, outcome, person, requested_at, status if (person.profile_ids or deleted) else "not_found")
    return outcome


def republish_serving_store(warehouse: Path, store: Path, request_id: str) -> bool:
    """Replace the serving store with a publication of the erased warehouse (readers that hold the
    previous file finish on it; every new read sees the store without the person), and note it on
    the request. False when nothing was published before (nothing to replace)."""
    if not store.exists():
        return False
    from cdp.serving.publish import publish

    # Written anew, not from a copy of the previous file: a dropped table's pages could still hold the person.
    publish(warehouse, store, run_id=request_id, reuse=False)
    from cdp.warehouse import connect

    with connect(warehouse) as con:
        con.execute(
            """update audit.privacy_requests
                       set destinations = json_merge_patch(coalesce(destinations, '{}'),
                                                           '{"serving_store": "republished"}')
                       where request_id = ?""",
            [request_id],
        )
        record_event(con, "privacy_request", f"erase:{request_id}", "serving_store_republished", {"store": str(store)})
    return True
