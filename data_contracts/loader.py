"""Load landing files into the warehouse under a contract, never losing a row.

Per file, in one transaction: accepted rows -> raw.<name>, rejected rows -> quarantine.<name>,
and a ledger row -> audit.loads. Invariant: rows read = accepted + quarantined. A file whose
content hash was loaded before is skipped, so loads are idempotent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from data_contracts.contract import Contract
from data_contracts.errors import ContractError
from data_contracts.readers import ROW_NUMBER, file_format, read_landing_file
from data_contracts.validate import validate

DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "decimal": "DECIMAL(18, 2)",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
RAW_METADATA = {"_load_id": "VARCHAR", "_source_file": "VARCHAR", "_row_number": "BIGINT", "_loaded_at": "TIMESTAMP"}
QUARANTINE_METADATA = {
    "_rule": "VARCHAR", "_column": "VARCHAR", "_value": "VARCHAR", "_errors": "VARCHAR", "_raw_line": "VARCHAR",
    "_source_file": "VARCHAR", "_row_number": "BIGINT", "_load_id": "VARCHAR", "_quarantined_at": "TIMESTAMP",
}
LOADS_LEDGER = {
    "load_id": "VARCHAR", "source": "VARCHAR", "table_name": "VARCHAR", "file_path": "VARCHAR", "file_hash": "VARCHAR",
    "file_format": "VARCHAR", "rows_read": "BIGINT", "rows_accepted": "BIGINT", "rows_quarantined": "BIGINT",
    "status": "VARCHAR", "error": "VARCHAR", "extra_columns": "VARCHAR", "started_at": "TIMESTAMP",
    "finished_at": "TIMESTAMP",
}


@dataclass
class TableLoadReport:
    name: str
    files_loaded: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    quarantine_reasons: Counter = field(default_factory=Counter)
    extra_columns: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    @property
    def reject_rate(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0


def _columns_ddl(columns: dict[str, str]) -> str:
    return ", ".join(f'"{name}" {sql_type}' for name, sql_type in columns.items())


def raw_columns(contract: Contract) -> dict[str, str]:
    return {name: DUCKDB_TYPES[c.type] for name, c in contract.columns.items()} | RAW_METADATA


def quarantine_columns(contract: Contract) -> dict[str, str]:
    return {name: "VARCHAR" for name in contract.columns} | QUARANTINE_METADATA


def ensure_tables(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Create the schemas and the contract's raw and quarantine tables, and the load ledger."""
    for schema in ("raw", "quarantine", "audit"):
        con.execute(f"create schema if not exists {schema}")
    con.execute(f"create table if not exists raw.{contract.name} ({_columns_ddl(raw_columns(contract))})")
    con.execute(f"create table if not exists quarantine.{contract.name} ({_columns_ddl(quarantine_columns(contract))})")
    con.execute(f"create table if not exists audit.loads ({_columns_ddl(LOADS_LEDGER)})")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _landing_files(contract: Contract, landing_dir: Path) -> list[Path]:
    table_dir = landing_dir / contract.source / contract.table
    if not table_dir.is_dir():
        return []
    return sorted(p for p in table_dir.iterdir() if p.is_file() and file_format(p) and not p.name.startswith("."))


def _already_loaded(con: duckdb.DuckDBPyConnection, contract: Contract, file_hash: str) -> bool:
    return con.execute(
        "select count(*) from audit.loads where source = ? and table_name = ? and file_hash = ? and status = 'loaded'",
        [contract.source, contract.table, file_hash],
    ).fetchone()[0] > 0


def _record_load(con: duckdb.DuckDBPyConnection, values: dict) -> None:
    con.execute(
        f"insert into audit.loads ({', '.join(LOADS_LEDGER)}) values ({', '.join('?' * len(LOADS_LEDGER))})",
        [values.get(name) for name in LOADS_LEDGER],
    )


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, columns: dict[str, str]) -> None:
    if frame.height == 0:
        return
    arrow = frame.select(list(columns)).to_arrow()
    con.register("incoming_rows", arrow)
    try:
        con.execute(f"insert into {table} by name select * from incoming_rows")
    finally:
        con.unregister("incoming_rows")


def load_file(con: duckdb.DuckDBPyConnection, contract: Contract, path: Path, relative_path: str, load_id: str,
              report: TableLoadReport) -> None:
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    file_hash = _sha256(path)
    ledger = {"load_id": load_id, "source": contract.source, "table_name": contract.table, "file_path": relative_path,
              "file_hash": file_hash, "file_format": file_format(path), "started_at": started}
    if _already_loaded(con, contract, file_hash):
        report.files_skipped += 1
        return

    file_rows = read_landing_file(path)
    missing_required = [name for name in contract.required_columns if name not in file_rows.columns]
    if file_rows.rows.height + file_rows.malformed.height > 0 and missing_required:
        error = (
            f"{relative_path}: required column(s) {', '.join(missing_required)} of contract {contract.path.name} "
            f"are missing; the file has {', '.join(file_rows.columns) or 'no columns'}. Fix the export (or the "
            "contract) and drop the corrected file into the landing folder; this file was not loaded."
        )
        _record_load(con, {**ledger, "status": "failed", "error": error, "rows_read": 0, "rows_accepted": 0,
                           "rows_quarantined": 0, "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
        report.files_failed += 1
        report.errors.append(error)
        return

    result = validate(file_rows.rows, contract)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    accepted = result.accepted.with_columns(
        pl.lit(load_id).alias("_load_id"), pl.lit(relative_path).alias("_source_file"), pl.lit(now).alias("_loaded_at"),
    )
    malformed = pl.DataFrame(
        [
            {ROW_NUMBER: number, "_raw_line": raw_line, "_rule": "malformed_line", "_column": None, "_value": error,
             "_errors": json.dumps([{"rule": "malformed_line", "column": None, "value": error}])}
            for number, raw_line, error in file_rows.malformed.iter_rows()
        ],
        schema={ROW_NUMBER: pl.Int64, "_raw_line": pl.String, "_rule": pl.String, "_column": pl.String,
                "_value": pl.String, "_errors": pl.String},
    )
    quarantined = pl.concat([result.rejected, malformed], how="diagonal_relaxed").with_columns(
        pl.lit(load_id).alias("_load_id"), pl.lit(relative_path).alias("_source_file"),
        pl.lit(now).alias("_quarantined_at"),
    )
    for name in quarantine_columns(contract):
        if name not in quarantined.columns:
            quarantined = quarantined.with_columns(pl.lit(None, pl.String).alias(name))

    rows_read = file_rows.rows.height + file_rows.malformed.height
    if rows_read != accepted.height + quarantined.height:
        raise ContractError(
            f"{relative_path}: {rows_read} rows read but {accepted.height} accepted + {quarantined.height} "
            "quarantined; the loader lost track of rows. Nothing was written. This is a bug: report it with the file."
        )
    extra = sorted(set(file_rows.columns) - set(contract.columns))
    con.execute("begin transaction")
    try:
        _insert(con, f"raw.{contract.name}", accepted, raw_columns(contract))
        _insert(con, f"quarantine.{contract.name}", quarantined, quarantine_columns(contract))
        _record_load(con, {**ledger, "status": "loaded", "rows_read": rows_read, "rows_accepted": accepted.height,
                           "rows_quarantined": quarantined.height, "extra_columns": ",".join(extra) or None,
                           "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    report.files_loaded += 1
    report.rows_read += rows_read
    report.rows_accepted += accepted.height
    report.rows_quarantined += quarantined.height
    report.quarantine_reasons.update(quarantined["_rule"].to_list())
    report.extra_columns.update(extra)


def load_table(con: duckdb.DuckDBPyConnection, contract: Contract, landing_dir: Path, load_id: str) -> TableLoadReport:
    """Load every landing file of the contract's table that was not loaded before."""
    ensure_tables(con, contract)
    report = TableLoadReport(name=contract.name)
    landing_dir = Path(landing_dir)
    for path in _landing_files(contract, landing_dir):
        load_file(con, contract, path, path.relative_to(landing_dir).as_posix(), load_id, report)
    return report
