"""The global suppression / exclusion list, governance.suppressed_identifiers: SHA-256 hashes of
identifiers (normalized: emails trimmed and lower-cased, phones E.164) that no sync may send and,
for erased people, that the loader keeps out of the warehouse.

Reasons: `erasure` (a privacy erasure request; the loader also drops such rows, counting them) and
`do_not_contact` (an exclusion: the person stays in the warehouse but no sync sends them).
"""

from __future__ import annotations

import datetime as dt
import hashlib

import duckdb

TABLE = "governance.suppressed_identifiers"
REASONS = ("erasure", "do_not_contact")
# Audience columns holding a direct identifier whose hash is compared with the list.
IDENTIFIER_COLUMNS = ("email", "phone")


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalize_identifier(namespace: str, value: str) -> str:
    """The normalized form hashed into the list (emails trimmed and lower-cased; other values trimmed)."""
    value = value.strip()
    return value.lower() if namespace == "email" else value


def ensure_suppression_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists governance")
    con.execute(f"""create table if not exists {TABLE} (
        identifier_sha256 VARCHAR NOT NULL, namespace VARCHAR, reason VARCHAR NOT NULL, request_id VARCHAR,
        added_at TIMESTAMP, PRIMARY KEY (identifier_sha256, reason))""")


def suppress(con: duckdb.DuckDBPyConnection, hashes: dict[str, str], reason: str, request_id: str | None = None) -> int:
    """Add {sha256: namespace} to the list; returns how many were new."""
    if reason not in REASONS:
        raise ValueError(f"suppression reason {reason!r} is unknown; expected one of {', '.join(REASONS)}")
    ensure_suppression_table(con)
    before = con.execute(f"select count(*) from {TABLE}").fetchone()[0]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    con.executemany(
        f"insert or ignore into {TABLE} values (?, ?, ?, ?, ?)",
        [[h, ns, reason, request_id, now] for h, ns in sorted(hashes.items())],
    )
    return con.execute(f"select count(*) from {TABLE}").fetchone()[0] - before


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return (
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
        ).fetchone()[0]
        > 0
    )


def excluded_audience_sql(
    con: duckdb.DuckDBPyConnection, audience: str, columns: list[str], qualifier: str = ""
) -> str | None:
    """A filter (SQL boolean over the audience's columns, prefixed with `qualifier.` when given, for
    a query that joins the audience) that is true for rows to exclude, or None when nothing is
    suppressed. A row is excluded when its email/phone hashes to a listed identifier, or its profile
    holds any listed identifier (profiles.profile_identities)."""
    prefix = f"{qualifier}." if qualifier else ""
    if (
        not _exists(con, "governance", "suppressed_identifiers")
        or not con.execute(f"select count(*) from {TABLE}").fetchone()[0]
    ):
        return None
    listed = f"(select identifier_sha256 from {TABLE})"
    conditions = [
        f'sha256(lower(trim(cast({prefix}"{c}" as varchar)))) in {listed}' for c in IDENTIFIER_COLUMNS if c in columns
    ]
    if "profile_id" in columns and _exists(con, "profiles", "profile_identities"):
        conditions.append(
            f"{prefix}profile_id in (select profile_id from profiles.profile_identities "
            f"where identity_value_sha256 in {listed})"
        )
    return " or ".join(f"({c})" for c in conditions) if conditions else None
