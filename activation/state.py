"""Sync state in the warehouse (schema activation): what each destination holds, every row
operation ever attempted, and one row per run."""

from __future__ import annotations

import duckdb

TABLES = {
    "sync_state": """
        sync_name VARCHAR NOT NULL, record_key VARCHAR NOT NULL, row_hash VARCHAR NOT NULL, row_json VARCHAR,
        first_synced_at TIMESTAMP, last_synced_at TIMESTAMP, last_run_id VARCHAR,
        PRIMARY KEY (sync_name, record_key)
    """,
    "sync_ledger": """
        run_id VARCHAR, sync_name VARCHAR, record_key VARCHAR, operation VARCHAR, change_kind VARCHAR,
        batch_number INTEGER, attempt INTEGER, status VARCHAR, error VARCHAR, recorded_at TIMESTAMP
    """,
    "sync_runs": """
        run_id VARCHAR, sync_name VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR,
        dry_run BOOLEAN, added BIGINT, changed BIGINT, removed BIGINT, invalid BIGINT, unchanged BIGINT,
        sent BIGINT, failed BIGINT, duration_s DOUBLE, output_files VARCHAR
    """,
}


def ensure_state_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists activation")
    for name, columns in TABLES.items():
        con.execute(f"create table if not exists activation.{name} ({columns})")
