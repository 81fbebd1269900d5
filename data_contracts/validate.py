"""Row-level contract checks in polars: each row is accepted (typed) or rejected with its reasons.

Rules, in the order a row's first failure is reported:
  invalid_encoding   a value with bytes that are not UTF-8 (shown as U+FFFD)
  missing_required   empty or null value in a required column
  invalid_type       a value that does not parse as the column's type
  invalid_format     a value that is not a valid email, phone, URL, country or currency code, ISO-8601 time
  pattern_mismatch   a value that does not fully match the column's custom pattern
  not_allowed_value  a value outside the column's allowed values
  out_of_range       a number below the column's min or above its max
  too_long           a value longer than the column's max_length
  future_timestamp   an event time more than a day after the load
  duplicate_primary_key  the second and later rows with the same primary key in one file (or, for
                     immutable records, a key loaded before: see loader.py)
  duplicate_value    the second and later rows with the same value of a unique column in one file
  malformed_line     (from the reader) a line that could not be parsed at all
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import polars as pl

from data_contracts.contract import Column, Contract
from data_contracts.formats import matches_format
from data_contracts.readers import ROW_NUMBER

POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "decimal": pl.Decimal(18, 2),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us"),
}
EXTRA = "_extra"  # columns a file has beyond its contract (schema drift), kept as a JSON object
TRUE_VALUES = ("true", "t", "yes", "y", "1")
FALSE_VALUES = ("false", "f", "no", "n", "0")


@dataclass(frozen=True)
class ValidationResult:
    accepted: pl.DataFrame  # contract columns, typed, plus _row_number
    rejected: pl.DataFrame  # contract columns as text, plus _row_number, _rule, _column, _value, _errors


def _parse(column: Column) -> pl.Expr:
    text = pl.col(column.name)
    if column.type == "string":
        return text
    if column.format and column.type == "date":
        return text.str.to_date(column.format, strict=False)
    if column.format:
        return text.str.to_datetime(column.format, strict=False, time_unit="us")
    if column.type == "timestamp":
        # ISO-8601: with an offset or Z -> converted to UTC; without -> taken as UTC; a bare date -> midnight.
        # Literal replaces (cheap) bring "2024-01-02 10:00:00Z" to "2024-01-02T10:00:00+00:00"; anything
        # else that is not ISO-8601 fails all three parses and is reported as invalid_type.
        iso = text.str.replace(" ", "T", literal=True, n=1).str.replace("Z", "+00:00", literal=True, n=1)
        with_offset = (
            iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="us")
            .dt.convert_time_zone("UTC")
            .dt.replace_time_zone(None)
        )
        naive = iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
        date_only = iso.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
        return pl.coalesce(with_offset, naive, date_only)
    if column.type == "date":
        return text.str.to_date("%Y-%m-%d", strict=False)
    if column.type == "boolean":
        lowered = text.str.to_lowercase()
        return pl.when(lowered.is_in(TRUE_VALUES)).then(True).when(lowered.is_in(FALSE_VALUES)).then(False)
    return text.cast(POLARS_TYPES[column.type], strict=False)


def validate(rows: pl.DataFrame, contract: Contract, now: dt.datetime | None = None) -> ValidationResult:
    """Check `rows` (text columns + _row_number, as readers.py returns them) against `contract`."""
    columns = list(contract.columns.values())
    missing = [c.name for c in columns if c.name not in rows.columns]
    # Optional columns absent from the file are null; required ones are caught by the loader first.
    # One lazy plan, collected once: polars runs the checks in parallel and shares the parsing.
    text = (
        rows.lazy()
        .with_columns([pl.lit(None, pl.String).alias(name) for name in missing])
        .with_columns([pl.col(c.name).str.strip_chars().replace("", None).alias(c.name) for c in columns])
    )
    parsed = text.with_columns([_parse(c).alias(f"__typed_{c.name}") for c in columns])

    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    present = {c.name: pl.col(c.name).is_not_null() for c in columns}
    typed = {c.name: pl.col(f"__typed_{c.name}") for c in columns}
    failures: list[tuple[str, str, pl.Expr]] = []  # (rule, column, failing-row predicate)
    for c in columns:
        failures.append(
            ("invalid_encoding", c.name, present[c.name] & pl.col(c.name).str.contains("\ufffd", literal=True))
        )
    for c in columns:
        if c.required:
            failures.append(("missing_required", c.name, pl.col(c.name).is_null()))
    for c in columns:
        if c.type != "string":
            failures.append(("invalid_type", c.name, present[c.name] & typed[c.name].is_null()))
    for c in columns:
        if c.type == "string" and c.format:
            failures.append(("invalid_format", c.name, present[c.name] & ~matches_format(pl.col(c.name), c.format)))
    for c in columns:
        if c.pattern:
            failures.append(
                ("pattern_mismatch", c.name, present[c.name] & ~pl.col(c.name).str.contains(f"^(?:{c.pattern})$"))
            )
    for c in columns:
        if c.allowed_values is not None:
            failures.append(
                ("not_allowed_value", c.name, present[c.name] & ~pl.col(c.name).is_in(list(c.allowed_values)))
            )
    for c in columns:
        if c.min is not None:
            failures.append(("out_of_range", c.name, typed[c.name].cast(pl.Float64) < c.min))
        if c.max is not None:
            failures.append(("out_of_range", c.name, typed[c.name].cast(pl.Float64) > c.max))
    for c in columns:
        if c.max_length is not None:
            failures.append(("too_long", c.name, pl.col(c.name).str.len_chars() > c.max_length))
    if contract.event_time:
        failures.append(
            (
                "future_timestamp",
                contract.event_time,
                typed[contract.event_time].cast(pl.Datetime("us")) > now + dt.timedelta(days=1),
            )
        )
    flags = parsed.with_columns([predicate.alias(f"__fail_{i}") for i, (_, _, predicate) in enumerate(failures)])
    flags = flags.with_columns([pl.col(f"__fail_{i}").fill_null(False) for i in range(len(failures))])
    any_failure = (
        pl.any_horizontal([pl.col(f"__fail_{i}") for i in range(len(failures))]) if failures else pl.lit(False)
    )
    flags = flags.with_columns(any_failure.alias("__failed"))

    # Duplicate keys (and values of unique columns) among otherwise valid rows: the first in the file wins.
    key = list(contract.primary_key)
    flags = flags.with_columns(
        (
            ~pl.col("__failed")
            & ~(pl.col(key[0]) if len(key) == 1 else pl.struct(key)).is_first_distinct().over("__failed")
        ).alias("__duplicate")
    )
    unique_columns = [c.name for c in columns if c.unique and [c.name] != key]
    for name in unique_columns:
        flags = flags.with_columns(
            (
                ~pl.col("__failed")
                & ~pl.col("__duplicate")
                & pl.col(name).is_not_null()
                & ~pl.col(name).is_first_distinct().over("__failed")
            ).alias(f"__duplicate_{name}")
        )
    if unique_columns:
        flags = flags.with_columns(
            (pl.col("__duplicate") | pl.any_horizontal([pl.col(f"__duplicate_{n}") for n in unique_columns])).alias(
                "__rejected_duplicate"
            )
        )
    else:
        flags = flags.with_columns(pl.col("__duplicate").alias("__rejected_duplicate"))

    flags = flags.collect()
    passthrough = [pl.col(EXTRA)] if EXTRA in rows.columns else []
    accepted = flags.filter(~pl.col("__failed") & ~pl.col("__rejected_duplicate")).select(
        [pl.col(f"__typed_{c.name}").alias(c.name) for c in columns] + [pl.col(ROW_NUMBER)] + passthrough
    )
    rejected_flags = flags.filter(pl.col("__failed") | pl.col("__rejected_duplicate"))
    rejected = _describe_rejections(rejected_flags, columns, failures, key, unique_columns)
    return ValidationResult(accepted=accepted, rejected=rejected)


def _describe_rejections(
    rejected: pl.DataFrame,
    columns: list[Column],
    failures: list[tuple[str, str, pl.Expr]],
    key: list[str],
    unique_columns: list[str],
) -> pl.DataFrame:
    """One row per rejected row: the first failure as _rule/_column/_value, all of them in _errors."""
    names = [c.name for c in columns]
    records = []
    for row in rejected.iter_rows(named=True):
        errors = [
            {"rule": rule, "column": column, "value": row[column]}
            for i, (rule, column, _) in enumerate(failures)
            if row[f"__fail_{i}"]
        ]
        if row["__duplicate"]:
            errors.append(
                {"rule": "duplicate_primary_key", "column": ",".join(key), "value": ",".join(str(row[k]) for k in key)}
            )
        for name in unique_columns:
            if row[f"__duplicate_{name}"]:
                errors.append({"rule": "duplicate_value", "column": name, "value": row[name]})
        first = errors[0]
        records.append(
            {
                **{name: row[name] for name in names},
                ROW_NUMBER: row[ROW_NUMBER],
                "_rule": first["rule"],
                "_column": first["column"],
                "_value": first["value"],
                "_errors": json.dumps(errors),
                EXTRA: row.get(EXTRA),
            }
        )
    schema = {
        **{name: pl.String for name in names},
        ROW_NUMBER: pl.Int64,
        "_rule": pl.String,
        "_column": pl.String,
        "_value": pl.String,
        "_errors": pl.String,
        EXTRA: pl.String,
    }
    return pl.DataFrame(records, schema=schema)
