"""Load landing files into the warehouse under a contract, never losing a row.

Per file, in one transaction: accepted rows -> raw.<name>, rejected rows -> quarantine.<name>,
and a ledger row -> audit.loads. Invariant: rows read = accepted + quarantined. A file whose
content hash was loaded before is skipped, so loads are idempotent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
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
RAW_METADATA = {
    "_load_id": "VARCHAR",
    "_source_file": "VARCHAR",
    "_row_number": "BIGINT",
    "_loaded_at": "TIMESTAMP",
    "_extra": "VARCHAR",
}
QUARANTINE_METADATA = {
    "_rule": "VARCHAR",
    "_column": "VARCHAR",
    "_value": "VARCHAR",
    "_errors": "VARCHAR",
    "_raw_line": "VARCHAR",
    "_extra": "VARCHAR",
    "_source_file": "VARCHAR",
    "_row_number": "BIGINT",
    "_load_id": "VARCHAR",
    "_quarantined_at": "TIMESTAMP",
}
EXPECTATION_RESULTS = {
    "load_id": "VARCHAR",
    "source": "VARCHAR",
    "table_name": "VARCHAR",
    "file_path": "VARCHAR",
    "expectation": "VARCHAR",
    "column_name": "VARCHAR",
    "success": "BOOLEAN",
    "element_count": "BIGINT",
    "unexpected_count": "BIGINT",
    "checked_at": "TIMESTAMP",
}
REJECTED_DIR = "_rejected"
LOADS_LEDGER = {
    "load_id": "VARCHAR",
    "source": "VARCHAR",
    "table_name": "VARCHAR",
    "file_path": "VARCHAR",
    "file_hash": "VARCHAR",
    "file_format": "VARCHAR",
    "rows_read": "BIGINT",
    "rows_accepted": "BIGINT",
    "rows_quarantined": "BIGINT",
    "status": "VARCHAR",
    "error": "VARCHAR",
    "extra_columns": "VARCHAR",
    "moved_to": "VARCHAR",
    "started_at": "TIMESTAMP",
    "finished_at": "TIMESTAMP",
    "rows_suppressed": "BIGINT",
}
# Erased people (privacy erasure) stay out: rows carrying one of their identifiers or record keys are
# not loaded again, and are counted as suppressed (rows read = accepted + quarantined + suppressed).
SUPPRESSION_TABLE = "governance.suppressed_identifiers"
_TOKEN_SEPARATORS = re.compile(r"[,;|\t\s\"']+")


@dataclass
class TableLoadReport:
    name: str
    files_loaded: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    files_moved_aside: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    rows_suppressed: int = 0  # rows of erased people, kept out by the suppression list
    quarantine_reasons: Counter = field(default_factory=Counter)
    extra_columns: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    expectation_failures: list[str] = field(default_factory=list)  # GX: "<file>: <what failed>"
    expectations_checked: int = 0  # files validated with the GX suite

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
    con.execute(f"create table if not exists audit.expectation_results ({_columns_ddl(EXPECTATION_RESULTS)})")
    # Tables created by an older version gain the columns added since (schema evolution of our own tables).
    for table, columns in (
        (f"raw.{contract.name}", RAW_METADATA),
        (f"quarantine.{contract.name}", QUARANTINE_METADATA),
        ("audit.loads", LOADS_LEDGER),
    ):
        schema, name = table.split(".")
        existing = {
            row[0]
            for row in con.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
                [schema, name],
            ).fetchall()
        }
        for column, sql_type in columns.items():
            if column not in existing:
                con.execute(f'alter table {table} add column "{column}" {sql_type}')


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
    return (
        con.execute(
            "select count(*) from audit.loads where source = ? and table_name = ? and file_hash = ? and status = 'loaded'",
            [contract.source, contract.table, file_hash],
        ).fetchone()[0]
        > 0
    )


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


def _move_aside(path: Path, landing_dir: Path) -> Path:
    """A file that cannot be loaded at all goes to landing/_rejected/<source>/<table>/, never deleted."""
    target = landing_dir / REJECTED_DIR / path.relative_to(landing_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target = target.with_name(f"{target.stem}.{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}{target.suffix}")
    path.replace(target)
    return target


def _keys_loaded_before(con: duckdb.DuckDBPyConnection, contract: Contract, accepted: pl.DataFrame) -> pl.Series:
    """For immutable records: which accepted rows carry a key already in raw (a re-sent event)."""
    key = list(contract.primary_key)
    if accepted.height == 0 or not con.execute(f"select count(*) from raw.{contract.name}").fetchone()[0]:
        return pl.repeat(False, accepted.height, eager=True)
    con.register("incoming_keys", accepted.select(key).with_row_index("_position").to_arrow())
    try:
        matched = {
            p
            for (p,) in con.execute(
                f"select _position from incoming_keys semi join raw.{contract.name} using ({', '.join(key)})"
            ).fetchall()
        }
    finally:
        con.unregister("incoming_keys")
    return pl.int_range(0, accepted.height, dtype=pl.UInt32, eager=True).is_in(list(matched))


def _erased_hashes_exist(con: duckdb.DuckDBPyConnection) -> bool:
    return (
        con.execute(
            "select count(*) from information_schema.tables where table_schema = 'governance' "
            "and table_name = 'suppressed_identifiers'"
        ).fetchone()[0]
        > 0
        and con.execute(f"select count(*) from {SUPPRESSION_TABLE} where reason = 'erasure'").fetchone()[0] > 0
    )


def suppression_columns(contract: Contract) -> list[str]:
    """Columns whose values may identify a person or one of their records: personal data (pii not
    none), the primary key, and keys of other records (names ending in _id)."""
    return [
        name
        for name, column in contract.columns.items()
        if column.type == "string" and (column.pii != "none" or name in contract.primary_key or name.endswith("_id"))
    ]


def _suppressed_mask(con: duckdb.DuckDBPyConnection, contract: Contract, frame: pl.DataFrame) -> pl.Series:
    """True for rows holding a value whose SHA-256 (trimmed, lower-cased) is on the erasure list."""
    columns = [c for c in suppression_columns(contract) if c in frame.columns]
    if frame.height == 0 or not columns:
        return pl.repeat(False, frame.height, eager=True)
    con.register(
        "incoming_suppression",
        frame.select([pl.col(c).cast(pl.String) for c in columns]).with_row_index("_position").to_arrow(),
    )
    try:
        listed = f"(select identifier_sha256 from {SUPPRESSION_TABLE} where reason = 'erasure')"
        matched = {
            p
            for (p,) in con.execute(
                "select _position from incoming_suppression where "
                + " or ".join(f'sha256(lower(trim("{c}"))) in {listed}' for c in columns)
            ).fetchall()
        }
    finally:
        con.unregister("incoming_suppression")
    return pl.int_range(0, frame.height, dtype=pl.UInt32, eager=True).is_in(list(matched))


def _suppressed_lines(con: duckdb.DuckDBPyConnection, lines: list[str]) -> list[bool]:
    """Malformed lines have no fields: a line is suppressed when one of its tokens is listed."""
    if not lines:
        return []
    token_sets = [
        {hashlib.sha256(t.lower().encode()).hexdigest() for t in _TOKEN_SEPARATORS.split(line or "") if t}
        for line in lines
    ]
    listed = {
        h
        for (h,) in con.execute(
            f"select identifier_sha256 from {SUPPRESSION_TABLE} where reason = 'erasure' and "
            "list_contains(?, identifier_sha256)",
            [sorted(set().union(*token_sets))],
        ).fetchall()
    }
    return [bool(tokens & listed) for tokens in token_sets]


def load_file(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    path: Path,
    landing_dir: Path,
    load_id: str,
    report: TableLoadReport,
    run_expectations: bool = False,
) -> None:
    relative_path = path.relative_to(landing_dir).as_posix()
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    file_hash = _sha256(path)
    ledger = {
        "load_id": load_id,
        "source": contract.source,
        "table_name": contract.table,
        "file_path": relative_path,
        "file_hash": file_hash,
        "file_format": file_format(path),
        "started_at": started,
    }
    if _already_loaded(con, contract, file_hash):
        report.files_skipped += 1
        return

    file_rows = read_landing_file(path)
    missing_required = [name for name in contract.required_columns if name not in file_rows.columns]
    if file_rows.columns and missing_required:  # a file with no header at all is empty, not wrong
        error = (
            f"{relative_path}: required column(s) {', '.join(missing_required)} of contract {contract.path.name} "
            f"are missing; the file has {', '.join(file_rows.columns) or 'no columns'}. Fix the export (or the "
            "contract) and drop the corrected file into the landing folder; this file was not loaded."
        )
        moved_to = _move_aside(path, landing_dir)
        error += f" It was moved to {moved_to}."
        _record_load(
            con,
            {
                **ledger,
                "status": "failed",
                "error": error,
                "rows_read": 0,
                "rows_accepted": 0,
                "rows_quarantined": 0,
                "moved_to": str(moved_to),
                "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
            },
        )
        report.files_failed += 1
        report.files_moved_aside.append(str(moved_to))
        report.errors.append(error)
        return

    extra = sorted(set(file_rows.columns) - set(contract.columns))
    rows = file_rows.rows
    if extra:  # schema drift: the extra columns are kept (as JSON) and reported, not dropped
        rows = rows.with_columns(pl.struct(extra).struct.json_encode().alias("_extra"))
    result = validate(rows, contract)
    accepted_rows, rejected_rows = result.accepted, result.rejected
    malformed_rows = file_rows.malformed
    suppressed = 0
    if _erased_hashes_exist(con):
        keep_accepted = ~_suppressed_mask(con, contract, accepted_rows)
        keep_rejected = ~_suppressed_mask(con, contract, rejected_rows)
        keep_malformed = pl.Series(
            [not hit for hit in _suppressed_lines(con, [line for _, line, _ in malformed_rows.iter_rows()])],
            dtype=pl.Boolean,
        )
        suppressed = int((~keep_accepted).sum() + (~keep_rejected).sum() + (~keep_malformed).sum())
        accepted_rows, rejected_rows = accepted_rows.filter(keep_accepted), rejected_rows.filter(keep_rejected)
        if malformed_rows.height:
            malformed_rows = malformed_rows.filter(keep_malformed)
    if contract.records == "immutable":
        seen = _keys_loaded_before(con, contract, accepted_rows)
        if seen.any():
            again = accepted_rows.filter(seen)
            accepted_rows = accepted_rows.filter(~seen)
            key = list(contract.primary_key)
            rejected_rows = pl.concat(
                [
                    rejected_rows,
                    again.select(
                        [pl.col(c).cast(pl.String) for c in contract.columns]
                        + [pl.col(ROW_NUMBER)]
                        + ([pl.col("_extra")] if "_extra" in again.columns else [])
                    )
                    .with_columns(
                        pl.lit("duplicate_primary_key").alias("_rule"),
                        pl.lit(",".join(key)).alias("_column"),
                        pl.concat_str([pl.col(k).cast(pl.String) for k in key], separator=",").alias("_value"),
                    )
                    .with_columns(
                        pl.format(
                            '[{{"rule": "duplicate_primary_key", "column": "{}", "value": "{}", '
                            '"note": "loaded before from another file"}}]',
                            pl.col("_column"),
                            pl.col("_value"),
                        ).alias("_errors")
                    ),
                ],
                how="diagonal_relaxed",
            )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    accepted = accepted_rows.with_columns(
        pl.lit(load_id).alias("_load_id"),
        pl.lit(relative_path).alias("_source_file"),
        pl.lit(now).alias("_loaded_at"),
    )
    malformed = pl.DataFrame(
        [
            {
                ROW_NUMBER: number,
                "_raw_line": raw_line,
                "_rule": "malformed_line",
                "_column": None,
                "_value": error,
                "_errors": json.dumps([{"rule": "malformed_line", "column": None, "value": error}]),
            }
            for number, raw_line, error in malformed_rows.iter_rows()
        ],
        schema={
            ROW_NUMBER: pl.Int64,
            "_raw_line": pl.String,
            "_rule": pl.String,
            "_column": pl.String,
            "_value": pl.String,
            "_errors": pl.String,
        },
    )
    quarantined = pl.concat([rejected_rows, malformed], how="diagonal_relaxed").with_columns(
        pl.lit(load_id).alias("_load_id"),
        pl.lit(relative_path).alias("_source_file"),
        pl.lit(now).alias("_quarantined_at"),
    )
    for name in quarantine_columns(contract):
        if name not in quarantined.columns:
            quarantined = quarantined.with_columns(pl.lit(None, pl.String).alias(name))

    rows_read = file_rows.rows.height + file_rows.malformed.height
    if rows_read != accepted.height + quarantined.height + suppressed:
        raise ContractError(
            f"{relative_path}: {rows_read} rows read but {accepted.height} accepted + {quarantined.height} "
            f"quarantined + {suppressed} suppressed; the loader lost track of rows. Nothing was written. This is a "
            "bug: report it with the file."
        )
    for name in raw_columns(contract):
        if name not in accepted.columns:
            accepted = accepted.with_columns(pl.lit(None, pl.String).alias(name))
    suite = None
    if run_expectations and file_rows.rows.height:
        from data_contracts.expectations import describe, run_suite

        suite = run_suite(contract, file_rows.rows)
        report.expectations_checked += 1
        if not suite.success:
            report.expectation_failures.append(f"{relative_path}: {describe(suite)}")
    con.execute("begin transaction")
    try:
        _insert(con, f"raw.{contract.name}", accepted, raw_columns(contract))
        _insert(con, f"quarantine.{contract.name}", quarantined, quarantine_columns(contract))
        _record_load(
            con,
            {
                **ledger,
                "status": "loaded",
                "rows_read": rows_read,
                "rows_accepted": accepted.height,
                "rows_quarantined": quarantined.height,
                "rows_suppressed": suppressed,
                "extra_columns": ",".join(extra) or None,
                "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
            },
        )
        if suite is not None:
            con.executemany(
                f"insert into audit.expectation_results values ({', '.join('?' * len(EXPECTATION_RESULTS))})",
                [
                    [
                        load_id,
                        contract.source,
                        contract.table,
                        relative_path,
                        o.expectation,
                        o.column,
                        o.success,
                        o.element_count,
                        o.unexpected_count,
                        now,
                    ]
                    for o in suite.outcomes
                ],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    report.files_loaded += 1
    report.rows_read += rows_read
    report.rows_accepted += accepted.height
    report.rows_quarantined += quarantined.height
    report.rows_suppressed += suppressed
    report.quarantine_reasons.update(quarantined["_rule"].to_list())
    report.extra_columns.update(extra)


def load_table(
    con: duckdb.DuckDBPyConnection, contract: Contract, landing_dir: Path, load_id: str, run_expectations: bool = False
) -> TableLoadReport:
    """Load every landing file of the contract's table that was not loaded before; with
    `run_expectations`, each file is also validated with the contract's Great Expectations suite."""
    ensure_tables(con, contract)
    report = TableLoadReport(name=contract.name)
    landing_dir = Path(landing_dir)
    for path in _landing_files(contract, landing_dir):
        load_file(con, contract, path, landing_dir, load_id, report, run_expectations)
    return report


def replay_quarantine(con: duckdb.DuckDBPyConnection, contract: Contract, load_id: str) -> TableLoadReport:
    """Validate the quarantined rows of the contract's table again (after a contract fix): rows that
    pass now move to raw, keeping their source file and row number; the rest stay, with their reasons
    brought up to date. Malformed lines have no fields to check and stay. One transaction."""
    ensure_tables(con, contract)
    names = list(contract.columns)
    held = con.execute(
        f"""select {", ".join(f'"{n}"' for n in names)}, _row_number, _source_file, _extra, _load_id as _original_load
                   , _rule as _original_rule
            from quarantine.{contract.name} where _rule <> 'malformed_line'"""
    ).pl()
    report = TableLoadReport(name=contract.name, rows_read=held.height)
    if held.height == 0:
        return report
    held = held.with_row_index("_position")
    result = validate(held.rename({"_row_number": "_file_row"}).rename({"_position": ROW_NUMBER}), contract)
    passed_positions = result.accepted[ROW_NUMBER]
    # A key already in raw stays out: for immutable records always; for versioned ones when the row
    # was quarantined as a duplicate copy in the first place.
    seen = _keys_loaded_before(con, contract, result.accepted)
    was_duplicate = passed_positions.is_in(
        held.filter(pl.col("_original_rule") == "duplicate_primary_key")["_position"].to_list()
    )
    blocked = seen if contract.records == "immutable" else (seen & was_duplicate)
    passed_positions = passed_positions.filter(~blocked)
    moved = held.filter(pl.col("_position").is_in(passed_positions.to_list()))
    accepted = (
        result.accepted.filter(pl.col(ROW_NUMBER).is_in(passed_positions.to_list()))
        .join(
            moved.select(
                pl.col("_position").alias(ROW_NUMBER),
                "_source_file",
                pl.col("_row_number").alias("_file_row"),
                "_extra",
            ),
            on=ROW_NUMBER,
        )
        .drop(ROW_NUMBER)
        .rename({"_file_row": "_row_number"})
        .with_columns(
            pl.lit(load_id).alias("_load_id"), pl.lit(dt.datetime.now(dt.UTC).replace(tzinfo=None)).alias("_loaded_at")
        )
    )
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    con.execute("begin transaction")
    try:
        _insert(con, f"raw.{contract.name}", accepted, raw_columns(contract))
        con.register("replayed_rows", moved.select("_source_file", "_row_number").to_arrow())
        con.execute(f"""delete from quarantine.{contract.name} as q using replayed_rows as r
                        where q._source_file = r._source_file and q._row_number = r._row_number""")
        con.unregister("replayed_rows")
        _record_load(
            con,
            {
                "load_id": load_id,
                "source": contract.source,
                "table_name": contract.table,
                "file_path": f"quarantine.{contract.name}",
                "file_hash": None,
                "file_format": "replay",
                "rows_read": held.height,
                "rows_accepted": accepted.height,
                "rows_quarantined": held.height - accepted.height,
                "status": "replayed",
                "started_at": started,
                "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
            },
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    report.rows_accepted = accepted.height
    report.rows_quarantined = held.height - accepted.height
    return report


def freshness(con: duckdb.DuckDBPyConnection, contract: Contract, now: dt.datetime) -> tuple[dt.datetime | None, bool]:
    """(newest event time in raw, whether it is within the contract's max_age_hours of `now`)."""
    if not contract.event_time:
        return None, True
    newest = con.execute(f'select max("{contract.event_time}") from raw.{contract.name}').fetchone()[0]
    if contract.max_age_hours is None:
        return newest, True
    newest_instant = (
        newest
        if isinstance(newest, dt.datetime)
        else (dt.datetime.combine(newest, dt.time()) if newest is not None else None)
    )
    return newest, newest_instant is not None and now - newest_instant <= dt.timedelta(hours=contract.max_age_hours)
