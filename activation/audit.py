"""audit.events: one row per governed action (sync run, policy decision, privacy request, contract
override), with who did it, what, on which object, the details as JSON, and when.

Who: $CDP_ACTOR when set (a scheduler or a service sets it), else the operating-system user.
Lives in the plain activation library so the sync engine, the loader's callers and the privacy
requests all write the same table.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import uuid
from typing import Any

import duckdb

EVENTS_DDL = """
    event_id VARCHAR PRIMARY KEY, occurred_at TIMESTAMP NOT NULL, actor VARCHAR NOT NULL,
    action VARCHAR NOT NULL, object VARCHAR, outcome VARCHAR, details JSON
"""
ACTIONS = ("sync_run", "policy_decision", "privacy_request", "contract_override", "suppression")


def actor() -> str:
    if os.environ.get("CDP_ACTOR"):
        return os.environ["CDP_ACTOR"]
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return f"uid:{os.getuid()}"


def ensure_audit_events(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists audit")
    con.execute(f"create table if not exists audit.events ({EVENTS_DDL})")


def record_event(
    con: duckdb.DuckDBPyConnection, action: str, object_name: str, outcome: str, details: dict[str, Any] | None = None
) -> str:
    """Append one audit event; returns its id."""
    if action not in ACTIONS:
        raise ValueError(f"audit action {action!r} is unknown; expected one of {', '.join(ACTIONS)}")
    ensure_audit_events(con)
    event_id = uuid.uuid4().hex
    con.execute(
        "insert into audit.events values (?, ?, ?, ?, ?, ?, ?)",
        [
            event_id,
            dt.datetime.now(dt.UTC).replace(tzinfo=None),
            actor(),
            action,
            object_name,
            outcome,
            json.dumps(details or {}, default=str),
        ],
    )
    return event_id
