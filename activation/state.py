"""Sync state in the warehouse (schema activation): what each destination holds, every row
operation ever attempted, and one row per run. Older warehouses get the newer columns added.

sync_state has no PRIMARY KEY: maintaining DuckDB's ART index over 1M inserted keys cost more than
the rest of a commit. Each (sync_name, record_key) is held once because the engine's commit is
set-based in one transaction (keys it inserts are deleted first; changed rows are updated in place).
Tables created before (with the key) keep working unchanged: the same statements run on them."""

from __future__ import annotations

import duckdb

TABLES = {
    # row_json: the version last sent, for destinations that send it again (HTTP deletes, file
    # destinations' current file); null for PostgreSQL, which deletes by key.
    "sync_state": """
        sync_name VARCHAR NOT NULL, record_key VARCHAR NOT NULL, row_hash VARCHAR NOT NULL, row_json VARCHAR,
        first_synced_at TIMESTAMP, last_synced_at TIMESTAMP, last_run_id VARCHAR
    """,
    # status: sent | failed (transient: retried next run) | rejected (refused by the destination, with its
    # reason) | invalid (null or duplicate key, no usable identifier) | excluded_consent | held_out (a member
    # of a holdout split, not sent: every run records each one). split_name: the row's split in an audience
    # with splits (campaign analytics tell the groups apart by it).
    "sync_ledger": """
        run_id VARCHAR, sync_name VARCHAR, record_key VARCHAR, operation VARCHAR, change_kind VARCHAR,
        batch_number INTEGER, attempt INTEGER, status VARCHAR, error VARCHAR, recorded_at TIMESTAMP,
        idempotency_key VARCHAR, http_status INTEGER, requests INTEGER, split_name VARCHAR
    """,
    # status: running (until it ends; a run still `running` when the next starts was killed) | succeeded |
    # partial (some rows failed or were rejected, or the run stopped early after delivering some) | failed
    # (nothing it tried was delivered, or an error stopped it) | interrupted (SIGTERM/SIGINT: what was
    # acknowledged is committed) | killed | aborted (guard) | blocked (pre-sync hook) | dry_run
    # not_sent: rows of the change set never tried (the run stopped early); http_retries: requests repeated
    # within the run (429, 5xx, timeouts); held_out: members of a holdout split not sent; as_of: the as-of
    # instant the audience was evaluated at when the run was given one (CDP_AS_OF), else null.
    "sync_runs": """
        run_id VARCHAR, sync_name VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR,
        dry_run BOOLEAN, added BIGINT, changed BIGINT, removed BIGINT, invalid BIGINT, unchanged BIGINT,
        sent BIGINT, failed BIGINT, duration_s DOUBLE, output_files VARCHAR,
        excluded_consent BIGINT, rejected BIGINT, retried BIGINT, message VARCHAR, not_sent BIGINT,
        http_retries BIGINT, held_out BIGINT, as_of TIMESTAMP
    """,
}
# Columns added after the first release: warehouses built before them get them on the next run.
ADDED_COLUMNS = {
    "sync_ledger": {
        "idempotency_key": "VARCHAR",
        "http_status": "INTEGER",
        "requests": "INTEGER",
        "split_name": "VARCHAR",
    },
    "sync_runs": {
        "excluded_consent": "BIGINT",
        "rejected": "BIGINT",
        "retried": "BIGINT",
        "message": "VARCHAR",
        "not_sent": "BIGINT",
        "http_retries": "BIGINT",
        "held_out": "BIGINT",
        "as_of": "TIMESTAMP",
    },
}


def ensure_state_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists activation")
    for name, columns in TABLES.items():
        con.execute(f"create table if not exists activation.{name} ({columns})")
    for table, columns in ADDED_COLUMNS.items():
        for column, column_type in columns.items():
            con.execute(f"alter table activation.{table} add column if not exists {column} {column_type}")
