"""Load landing files into the warehouse under a contract, never losing a row.

Per file, in one transaction: accepted rows -> raw.<name>, rejected rows -> quarantine.<name>
(_action 'quarantine_row'), values nulled in accepted rows -> quarantine.<name> as well (_action
'null_value', the row itself is in raw), and a ledger row -> audit.loads. Invariant: rows read =
accepted + quarantined (+ suppressed). A file whose content hash was loaded before is skipped, so
loads are idempotent. A file that cannot be read at all is moved to landing/_rejected/ with its reason.

A file beyond its contract's max_reject_rate keeps failing the table's blocking check, run after run,
until the data is fixed (the file delivered again under its name, or its rows replayed after a
contract fix) or the failure is accepted (`accept_file`, `cdp quarantine accept`): see
`outstanding_failures`.
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
from data_contracts.errors import ContractError, UnreadableFile
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
    # quarantine_row: the row is not in raw; null_value: the row is in raw with this value nulled.
    "_action": "VARCHAR",
}
QUARANTINE_ROW, NULL_VALUE = "quarantine_row", "null_value"
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
    "rule": "VARCHAR",  # the row rule the expectation recounts
    "row_rule_count": "BIGINT",  # rows that rule flagged in the same file
    "agrees": "BOOLEAN",
}
# Failures a person accepted (`cdp quarantine accept`): the file, in the version accepted, stops failing.
LOAD_ACCEPTANCES = {
    "source": "VARCHAR",
    "table_name": "VARCHAR",
    "file_path": "VARCHAR",
    "file_hash": "VARCHAR",
    "load_id": "VARCHAR",
    "failure": "VARCHAR",
    "reason": "VARCHAR",
    "accepted_by": "VARCHAR",
    "accepted_at": "TIMESTAMP",
}
REJECTED_DIR = "_rejected"
EXTRA_COLUMN = "_extra"
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
    "values_nulled": "BIGINT",  # values nulled in accepted rows (on_invalid: null_value)
}
# Erased people (privacy erasure) stay out: rows carrying one of their identifiers or record keys are
# not loaded again, and are counted as suppressed (rows read = accepted + quarantined + suppressed).
SUPPRESSION_TABLE = "governance.suppressed_identifiers"
_TOKEN_SEPARATORS = re.compile(r"[,;|\t\s\"']+")


@dataclass(frozen=True)
class FileFailure:
    """A file of a table that still fails: beyond the reject rate (blocking) or rejected whole (warning)."""

    file_path: str
    load_id: str
    kind: str  # "reject_rate" | "rejected"
    rows_read: int
    rows_quarantined: int
    max_reject_rate: float
    error: str | None = None

    @property
    def reject_rate(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0

    def describe(self) -> str:
        if self.kind == "rejected":
            return f"{self.file_path} (rejected whole in load {self.load_id}: {self.error})"
        return (
            f"{self.file_path} ({self.rows_quarantined:,} of {self.rows_read:,} rows quarantined, "
            f"{self.reject_rate:.2%} > {self.max_reject_rate:.2%}, load {self.load_id})"
        )


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
    # GX: "<file>: <which expectation counted otherwise than its row rule>"
    expectation_failures: list[str] = field(default_factory=list)
    expectations_checked: int = 0  # files validated with the GX suite
    values_nulled: int = 0  # values nulled in accepted rows (on_invalid: null_value), kept in quarantine
    # After this load, every file of the table that still fails (not only this run's): see outstanding_failures.
    blocking_files: list[FileFailure] = field(default_factory=list)
    rejected_files: list[FileFailure] = field(default_factory=list)

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
    con.execute(f"create table if not exists audit.load_acceptances ({_columns_ddl(LOAD_ACCEPTANCES)})")
    # Tables created by an older version gain the columns added since (schema evolution of our own tables).
    for table, columns in (
        (f"raw.{contract.name}", RAW_METADATA),
        (f"quarantine.{contract.name}", QUARANTINE_METADATA),
        ("audit.loads", LOADS_LEDGER),
        ("audit.expectation_results", EXPECTATION_RESULTS),
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


def _extra_json(names: list[str], nested: dict[str, str]) -> pl.Expr:
    """The extra columns as one JSON object per row; nested (parquet list/struct) columns are JSON already."""
    if not nested:
        return pl.struct(names).struct.json_encode()
    members = []
    for name in names:
        value = pl.col(name)
        if name not in nested:
            value = pl.struct(value.alias("v")).struct.json_encode().str.strip_prefix('{"v":').str.strip_suffix("}")
        members.append(pl.lit(json.dumps(name) + ":") + value.fill_null("null"))
    return pl.concat_str([pl.lit("{"), pl.concat_str(members, separator=","), pl.lit("}")])


def _reject_file(
    con: duckdb.DuckDBPyConnection, path: Path, landing_dir: Path, ledger: dict, report: TableLoadReport, error: str
) -> None:
    """A file that cannot be loaded at all: moved aside, recorded as failed with its reason."""
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

    try:
        file_rows = read_landing_file(path)
    except UnreadableFile as error:
        _reject_file(
            con, path, landing_dir, ledger, report, f"{relative_path}: {error.reason} This file was not loaded."
        )
        return
    missing_required = [name for name in contract.required_columns if name not in file_rows.columns]
    if file_rows.columns and missing_required:  # a file with no header at all is empty, not wrong
        error = (
            f"{relative_path}: required column(s) {', '.join(missing_required)} of contract {contract.path.name} "
            f"are missing; the file has {', '.join(file_rows.columns) or 'no columns'}. Fix the export (or the "
            "contract) and drop the corrected file into the landing folder; this file was not loaded."
        )
        _reject_file(con, path, landing_dir, ledger, report, error)
        return
    nested = {name: kind for name, kind in file_rows.nested.items() if name in contract.columns}
    if nested:
        name, kind = next(iter(nested.items()))
        error = (
            f"{relative_path}: column {name!r} holds {kind.split('(')[0].lower()} values ({kind}); contract "
            f"{contract.path.name} declares it a {contract.columns[name].type}, one value per row. Flatten the "
            "column in the export (or drop it from the contract: columns outside the contract are kept as JSON "
            "in _extra) and drop the file into the landing folder again; this file was not loaded."
        )
        _reject_file(con, path, landing_dir, ledger, report, error)
        return

    extra = sorted(set(file_rows.columns) - set(contract.columns))
    rows = file_rows.rows
    if extra:  # schema drift: the extra columns are kept (as JSON) and reported, not dropped
        rows = rows.with_columns(_extra_json(extra, file_rows.nested).alias(EXTRA_COLUMN))
    result = validate(rows, contract, count_rules=run_expectations)
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
        pl.lit(QUARANTINE_ROW).alias("_action")
    )
    # Values nulled in rows that made it to raw (not suppressed, not re-sent events): recorded beside.
    nulled = result.nulled.filter(pl.col(ROW_NUMBER).is_in(accepted[ROW_NUMBER].implode()))
    values_nulled = sum(len(json.loads(errors)) for errors in nulled["_errors"])
    rows_quarantined = quarantined.height
    quarantine_entries = pl.concat(
        [quarantined, nulled.with_columns(pl.lit(NULL_VALUE).alias("_action"))], how="diagonal_relaxed"
    ).with_columns(
        pl.lit(load_id).alias("_load_id"),
        pl.lit(relative_path).alias("_source_file"),
        pl.lit(now).alias("_quarantined_at"),
    )
    for name in quarantine_columns(contract):
        if name not in quarantine_entries.columns:
            quarantine_entries = quarantine_entries.with_columns(pl.lit(None, pl.String).alias(name))

    rows_read = file_rows.rows.height + file_rows.malformed.height
    if rows_read != accepted.height + rows_quarantined + suppressed:
        raise ContractError(
            f"{relative_path}: {rows_read} rows read but {accepted.height} accepted + {rows_quarantined} "
            f"quarantined + {suppressed} suppressed; the loader lost track of rows. Nothing was written. This is a "
            "bug: report it with the file."
        )
    for name in raw_columns(contract):
        if name not in accepted.columns:
            accepted = accepted.with_columns(pl.lit(None, pl.String).alias(name))
    suite = None
    if run_expectations and file_rows.rows.height:
        from data_contracts.expectations import describe, run_suite

        suite = run_suite(contract, file_rows.rows, result.rule_counts)
        report.expectations_checked += 1
        if not suite.agrees:
            report.expectation_failures.append(f"{relative_path}: {describe(suite)}")
    con.execute("begin transaction")
    try:
        _insert(con, f"raw.{contract.name}", accepted, raw_columns(contract))
        _insert(con, f"quarantine.{contract.name}", quarantine_entries, quarantine_columns(contract))
        _record_load(
            con,
            {
                **ledger,
                "status": "loaded",
                "rows_read": rows_read,
                "rows_accepted": accepted.height,
                "rows_quarantined": rows_quarantined,
                "rows_suppressed": suppressed,
                "values_nulled": values_nulled,
                "extra_columns": ",".join(extra) or None,
                "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
            },
        )
        if suite is not None:
            results = list(EXPECTATION_RESULTS)
            con.executemany(
                f"insert into audit.expectation_results ({', '.join(results)}) values ({', '.join('?' * len(results))})",
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
                        o.rule,
                        o.row_rule_count,
                        o.agrees,
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
    report.rows_quarantined += rows_quarantined
    report.rows_suppressed += suppressed
    report.values_nulled += values_nulled
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
    failures = outstanding_failures(con, contract)
    report.blocking_files = [f for f in failures if f.kind == "reject_rate"]
    report.rejected_files = [f for f in failures if f.kind == "rejected"]
    return report


def outstanding_failures(con: duckdb.DuckDBPyConnection, contract: Contract) -> list[FileFailure]:
    """Every file of the table whose latest load still fails, whenever it was loaded: quarantined rows
    (still in quarantine: a replay that moved them to raw counts) beyond max_reject_rate, or rejected
    whole. A file stops failing when a later version of it (same path) loads within the rate, or when
    its failing version was accepted (accept_file)."""
    ensure_tables(con, contract)
    rows = con.execute(
        f"""
        with attempts as (
            select *, row_number() over (partition by file_path order by finished_at desc, started_at desc) as n
            from audit.loads
            where source = ? and table_name = ? and status in ('loaded', 'failed')
        ),
        still_quarantined as (
            select _source_file, _load_id, count(*) as rows_quarantined
            from quarantine.{contract.name}
            where coalesce(_action, '{QUARANTINE_ROW}') = '{QUARANTINE_ROW}'
            group by all
        )
        select latest.file_path, latest.load_id, latest.status, latest.error, latest.rows_read,
               coalesce(still_quarantined.rows_quarantined, 0)
        from attempts as latest
        left join still_quarantined
            on still_quarantined._source_file = latest.file_path and still_quarantined._load_id = latest.load_id
        where latest.n = 1
            and not exists (
                select 1 from audit.load_acceptances as accepted
                where accepted.source = latest.source and accepted.table_name = latest.table_name
                    and accepted.file_path = latest.file_path and accepted.load_id = latest.load_id
            )
        order by latest.file_path
        """,
        [contract.source, contract.table],
    ).fetchall()
    failures = []
    for file_path, load_id, status, error, rows_read, rows_quarantined in rows:
        failure = FileFailure(
            file_path=file_path,
            load_id=load_id,
            kind="rejected" if status == "failed" else "reject_rate",
            rows_read=rows_read or 0,
            rows_quarantined=rows_quarantined,
            max_reject_rate=contract.max_reject_rate,
            error=error,
        )
        if failure.kind == "rejected" or failure.reject_rate > contract.max_reject_rate:
            failures.append(failure)
    return failures


def accept_file(
    con: duckdb.DuckDBPyConnection, contract: Contract, file_path: str, reason: str, accepted_by: str
) -> FileFailure:
    """Accept the failure of one file (its latest load) so it stops failing the table's checks: the
    override for data that will not be fixed. Recorded in audit.load_acceptances with who and why."""
    if not reason.strip():
        raise ContractError(f"accepting {file_path} needs a reason (who asked, which ticket); none was given.")
    failures = outstanding_failures(con, contract)
    failure = next((f for f in failures if f.file_path == file_path), None)
    if failure is None:
        raise ContractError(
            f"{file_path}: no failing load of {contract.name} has this path, so there is nothing to accept. "
            f"Failing now: {', '.join(f.file_path for f in failures) or 'none'}."
        )
    file_hash = con.execute(
        "select file_hash from audit.loads where source = ? and table_name = ? and file_path = ? and load_id = ?",
        [contract.source, contract.table, file_path, failure.load_id],
    ).fetchone()[0]
    con.execute(
        f"insert into audit.load_acceptances ({', '.join(LOAD_ACCEPTANCES)}) values "
        f"({', '.join('?' * len(LOAD_ACCEPTANCES))})",
        [
            contract.source,
            contract.table,
            file_path,
            file_hash,
            failure.load_id,
            failure.describe(),
            reason,
            accepted_by,
            dt.datetime.now(dt.UTC).replace(tzinfo=None),
        ],
    )
    return failure


def replay_quarantine(con: duckdb.DuckDBPyConnection, contract: Contract, load_id: str) -> TableLoadReport:
    """Validate the quarantined rows of the contract's table again (after a contract fix): rows that
    pass now move to raw, keeping their source file and row number; the rest stay, with their reasons
    brought up to date. Malformed lines have no fields to check and stay. One transaction."""
    ensure_tables(con, contract)
    names = list(contract.columns)
    held = con.execute(
        f"""select {", ".join(f'"{n}"' for n in names)}, _row_number, _source_file, _extra, _load_id as _original_load
                   , _rule as _original_rule
            from quarantine.{contract.name}
            where _rule <> 'malformed_line' and coalesce(_action, '{QUARANTINE_ROW}') = '{QUARANTINE_ROW}'"""
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
    # Rows that pass now only because a value of theirs is nulled keep that value in quarantine.
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    nulled = (
        result.nulled.filter(pl.col(ROW_NUMBER).is_in(passed_positions.implode()))
        .drop(EXTRA_COLUMN)
        .join(
            moved.select(
                pl.col("_position").alias(ROW_NUMBER),
                "_source_file",
                pl.col("_row_number").alias("_file_row"),
                EXTRA_COLUMN,
            ),
            on=ROW_NUMBER,
        )
        .drop(ROW_NUMBER)
        .rename({"_file_row": ROW_NUMBER})
        .with_columns(
            pl.lit(NULL_VALUE).alias("_action"), pl.lit(load_id).alias("_load_id"), pl.lit(now).alias("_quarantined_at")
        )
    )
    for name in quarantine_columns(contract):
        if name not in nulled.columns:
            nulled = nulled.with_columns(pl.lit(None, pl.String).alias(name))
    started = now
    con.execute("begin transaction")
    try:
        _insert(con, f"raw.{contract.name}", accepted, raw_columns(contract))
        con.register("replayed_rows", moved.select("_source_file", "_row_number").to_arrow())
        con.execute(f"""delete from quarantine.{contract.name} as q using replayed_rows as r
                        where q._source_file = r._source_file and q._row_number = r._row_number
                            and coalesce(q._action, '{QUARANTINE_ROW}') = '{QUARANTINE_ROW}'""")
        con.unregister("replayed_rows")
        _insert(con, f"quarantine.{contract.name}", nulled, quarantine_columns(contract))
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
