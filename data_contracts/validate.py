"""Row-level contract checks in polars: each row is accepted (typed) or rejected with its reasons.

The rules come from rules.py (the same definitions the Great Expectations suite runs), checked on
normalized values (trimmed, empty -> null, codes upper-cased). In the order a row's first failure is
reported:
  invalid_encoding   a value with bytes that are not UTF-8 (shown as U+FFFD)
  control_character  a NUL or other control character in a string (tab and line breaks only where
                     the column has allow_line_breaks)
  missing_required   empty or null value in a required column
  invalid_type       a value that does not parse as the column's type
  invalid_format     a value that is not a valid email, phone, URL, country or currency code, ISO-8601 time
  pattern_mismatch   a value that does not fully match the column's custom pattern
  not_allowed_value  a value outside the column's allowed values
  out_of_range       a number below the column's min or above its max
  too_long           a value longer than the column's max_length (every string column has one: the
                     contract's defaults, 4096 characters unless set)
  future_timestamp   an event time more than a day after the load
  duplicate_primary_key  the second and later rows with the same primary key in one file (or, for
                     immutable records, a key loaded before: see loader.py)
  duplicate_value    the second and later rows with the same value of a unique column in one file
  malformed_line     (from the reader) a line that could not be parsed at all

A failure in a column with `on_invalid: null_value` does not reject the row: the row is accepted with
that value null, and the value comes back in `nulled` with its reason (the loader records it in
quarantine with _action = 'null_value'). A missing required value always rejects the row.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import polars as pl

from data_contracts.contract import Contract
from data_contracts.readers import ROW_NUMBER
from data_contracts.rules import (
    POLARS_TYPES,
    Rule,
    contract_rules,
    failing,
    normalized_frame,
    typed,
    typed_name,
    uniqueness_rules,
)

__all__ = ["EXTRA", "POLARS_TYPES", "ValidationResult", "validate"]

EXTRA = "_extra"  # columns a file has beyond its contract (schema drift), kept as a JSON object
# A quoted value in a quarantine reason is cut to this many characters (the column keeps it whole).
QUOTED_VALUE_LIMIT = 200


@dataclass(frozen=True)
class ValidationResult:
    accepted: pl.DataFrame  # contract columns, typed (nulled values null), plus _row_number
    rejected: pl.DataFrame  # contract columns as delivered, plus _row_number, _rule, _column, _value, _errors
    # Accepted rows that had values nulled (on_invalid: null_value), shaped like `rejected`.
    nulled: pl.DataFrame = field(default_factory=pl.DataFrame)
    # Rows failing each rule (name, column) over the whole batch, as the GX suite counts them.
    rule_counts: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def values_nulled(self) -> int:
        return sum(len(json.loads(errors)) for errors in self.nulled["_errors"]) if self.nulled.height else 0


def _quoted(value: str | None) -> str | None:
    if value is None or len(value) <= QUOTED_VALUE_LIMIT:
        return value
    return f"{value[:QUOTED_VALUE_LIMIT]}... ({len(value):,} characters)"


def _any_failure(indices: list[int]) -> pl.Expr:
    return pl.any_horizontal([pl.col(f"__fail_{i}") for i in indices]) if indices else pl.lit(False)


def validate(
    rows: pl.DataFrame, contract: Contract, now: dt.datetime | None = None, count_rules: bool = True
) -> ValidationResult:
    """Check `rows` (text columns + _row_number, as readers.py returns them) against `contract`. With
    `count_rules`, also count the rows failing each rule as the GX suite counts them (rule_counts)."""
    columns = list(contract.columns.values())
    rules = contract_rules(contract)
    unique = uniqueness_rules(contract) if count_rules else []
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    # One lazy plan, collected once: polars runs the checks in parallel and shares the parsing.
    parsed = normalized_frame(rows.lazy(), contract).with_columns([typed(c).alias(typed_name(c.name)) for c in columns])
    flags = parsed.with_columns(
        [failing(rule, now).fill_null(False).alias(f"__fail_{i}") for i, rule in enumerate(rules)]
        + [failing(rule).fill_null(False).alias(f"__repeated_{j}") for j, rule in enumerate(unique)]
    )
    nulls_value = [
        i
        for i, rule in enumerate(rules)
        if rule.name != "missing_required"
        and rule.column in contract.columns
        and contract.columns[rule.column].on_invalid == "null_value"
    ]
    rejects_row = [i for i in range(len(rules)) if i not in nulls_value]
    flags = flags.with_columns(_any_failure(rejects_row).alias("__failed"))

    # Duplicate keys (and values of unique columns) among otherwise valid rows: the first in the file wins.
    key = list(contract.primary_key)
    flags = flags.with_columns(
        (
            ~pl.col("__failed")
            & ~(pl.col(key[0]) if len(key) == 1 else pl.struct(key)).is_first_distinct().over("__failed")
        ).alias("__duplicate")
    )
    _, *other_unique = uniqueness_rules(contract)
    unique_columns = [rule.column for rule in other_unique]
    for name in unique_columns:
        flags = flags.with_columns(
            (
                ~pl.col("__failed")
                & ~pl.col("__duplicate")
                & pl.col(name).is_not_null()
                & ~pl.col(name).is_first_distinct().over("__failed")
            ).alias(f"__duplicate_{name}")
        )
    flags = flags.with_columns(
        pl.any_horizontal([pl.col("__duplicate"), *[pl.col(f"__duplicate_{n}") for n in unique_columns]]).alias(
            "__rejected_duplicate"
        )
    )
    nulled_columns = sorted({rules[i].column for i in nulls_value})
    flags = flags.with_columns(
        [_any_failure([i for i in nulls_value if rules[i].column == n]).alias(f"__null_{n}") for n in nulled_columns]
    ).with_columns(_any_failure(nulls_value).alias("__any_nulled"))

    flags = flags.collect()
    rule_counts: dict[tuple[str, str], int] = {}
    for i, rule in enumerate(rules if count_rules else []):
        rule_counts[(rule.name, rule.column)] = rule_counts.get((rule.name, rule.column), 0) + int(
            flags[f"__fail_{i}"].sum()
        )
    for j, rule in enumerate(unique):
        rule_counts[(rule.name, rule.column)] = int(flags[f"__repeated_{j}"].sum())

    passthrough = [pl.col(EXTRA)] if EXTRA in rows.columns else []
    kept = flags.filter(~pl.col("__failed") & ~pl.col("__rejected_duplicate"))
    accepted = kept.select(
        [
            (
                pl.when(pl.col(f"__null_{c.name}")).then(None).otherwise(pl.col(typed_name(c.name)))
                if c.name in nulled_columns
                else pl.col(typed_name(c.name))
            ).alias(c.name)
            for c in columns
        ]
        + [pl.col(ROW_NUMBER)]
        + passthrough
    )
    rejected_flags = flags.filter(pl.col("__failed") | pl.col("__rejected_duplicate"))
    originals = _originals(
        rows, contract, pl.concat([rejected_flags[ROW_NUMBER], kept.filter("__any_nulled")[ROW_NUMBER]])
    )
    rejected = _describe(rejected_flags, originals, contract, rules, range(len(rules)), key, unique_columns)
    nulled = _describe(kept.filter("__any_nulled"), originals, contract, rules, nulls_value, key, [], "null_value")
    return ValidationResult(accepted=accepted, rejected=rejected, nulled=nulled, rule_counts=rule_counts)


def _originals(rows: pl.DataFrame, contract: Contract, numbers: pl.Series) -> dict[int, dict]:
    """The values as delivered (untrimmed, not normalized) of the rows quarantine will show."""
    if numbers.len() == 0:
        return {}
    present = [name for name in contract.columns if name in rows.columns]
    subset = rows.filter(pl.col(ROW_NUMBER).is_in(numbers.implode())).select([ROW_NUMBER, *present])
    return {row[ROW_NUMBER]: row for row in subset.iter_rows(named=True)}


def _describe(
    frame: pl.DataFrame,
    originals: dict[int, dict],
    contract: Contract,
    rules: list[Rule],
    indices,
    key: list[str],
    unique_columns: list[str],
    action: str | None = None,
) -> pl.DataFrame:
    """One row per row of `frame`: the first failure as _rule/_column/_value, all of them in _errors.
    With `action` (null_value), only the failures that nulled a value, each marked with the action."""
    names = list(contract.columns)
    records = []
    for row in frame.iter_rows(named=True):
        original = originals.get(row[ROW_NUMBER], {})
        errors = []
        for i in indices:
            if row[f"__fail_{i}"]:
                rule = rules[i]
                value = None if rule.name == "missing_required" else _quoted(original.get(rule.column))
                errors.append(
                    {"rule": rule.name, "column": rule.column, "value": value} | ({"action": action} if action else {})
                )
        if action is None and row["__duplicate"]:
            errors.append(
                {"rule": "duplicate_primary_key", "column": ",".join(key), "value": ",".join(str(row[k]) for k in key)}
            )
        for name in unique_columns:
            if row[f"__duplicate_{name}"]:
                errors.append({"rule": "duplicate_value", "column": name, "value": row[name]})
        first = errors[0]
        records.append(
            {
                **{name: original.get(name) for name in names},
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
