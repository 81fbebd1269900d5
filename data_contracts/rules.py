"""The contract's checks, defined once.

`contract_rules` turns a contract into rules. Each rule names the values of a column that fail it,
in a form both validators execute: validate.py runs every rule in polars, row by row, to accept or
quarantine each row; expectations.py runs the same rules as Great Expectations expectations on the
same normalized frame (values trimmed, empty -> null, codes upper-cased: `normalized_frame`). So the
two cannot disagree about a value by construction, and each load checks that they did not (the GX
count of every expectation must equal the polars count of its rule).

A few rules only exist row by row: a value that does not parse as the column's type (`invalid_type`)
and an event time in the future (`future_timestamp`), which GX cannot say, and bytes that were not
UTF-8 (`invalid_encoding`), which is the reader's finding rather than the contract's. Uniqueness is counted alike
on both sides (every row of a repeated value); row by row, the first valid row of a key is kept.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from data_contracts.contract import Column, Contract
from data_contracts.formats import FORMATS, normalize

# Characters no value may hold: C0 controls (NUL included), DEL and the C1 controls. A column that
# allows line breaks still refuses all but tab, line feed and carriage return.
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f-\x9f]"
CONTROL_CHARACTERS_BUT_LINE_BREAKS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
REPLACEMENT_CHARACTER = "\ufffd"  # what the readers put in place of bytes that are not UTF-8
NUMBER_SUFFIX = "__number"  # the GX frame holds a numeric column's parsed value under <name>__number
POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "decimal": pl.Decimal(18, 2),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us"),
}
TRUE_VALUES = ("true", "t", "yes", "y", "1")
FALSE_VALUES = ("false", "f", "no", "n", "0")


@dataclass(frozen=True)
class Rule:
    """One check of one column (or of the key columns together).

    kind: not_null | in_set | match | not_match | between | max_length | unique | parses | not_future
    """

    name: str  # the rule a failing row is quarantined under (_rule)
    column: str  # the column it checks (for a compound key: the key columns joined by commas)
    kind: str
    values: tuple[str, ...] | None = None  # in_set
    regex: str | None = None  # match (the whole value), not_match (anywhere in it)
    minimum: float | None = None  # between
    maximum: float | None = None
    length: int | None = None  # max_length
    columns: tuple[str, ...] = ()  # unique
    in_suite: bool = True  # False: checked row by row only, though GX could say it

    @property
    def row_only(self) -> bool:
        """A rule checked row by row only (GX cannot express it, or it is the reader's, not the contract's)."""
        return self.kind in ("parses", "not_future") or not self.in_suite


def contract_rules(contract: Contract) -> list[Rule]:
    """Every rule of the contract, in the order a row's first failure is reported."""
    columns = list(contract.columns.values())
    rules: list[Rule] = []
    for c in columns:
        # Bytes the reader could not decode: a property of the file, not a contract rule, and one GX
        # expectation per column costs more than the check (GX spends ~20 ms per expectation).
        rules.append(Rule("invalid_encoding", c.name, "not_match", regex=REPLACEMENT_CHARACTER, in_suite=False))
    for c in columns:
        if c.type == "string":
            pattern = CONTROL_CHARACTERS_BUT_LINE_BREAKS if c.allow_line_breaks else CONTROL_CHARACTERS
            rules.append(Rule("control_character", c.name, "not_match", regex=pattern))
    for c in columns:
        if c.required:
            rules.append(Rule("missing_required", c.name, "not_null"))
    for c in columns:
        if c.type != "string":
            rules.append(Rule("invalid_type", c.name, "parses"))
    for c in columns:
        if c.type == "string" and c.format in FORMATS:
            fmt = FORMATS[c.format]
            if fmt.values is not None:
                rules.append(Rule("invalid_format", c.name, "in_set", values=tuple(sorted(fmt.values))))
            else:
                rules.append(Rule("invalid_format", c.name, "match", regex=fmt.regex))
    for c in columns:
        if c.pattern:
            rules.append(Rule("pattern_mismatch", c.name, "match", regex=f"^(?:{c.pattern})$"))
    for c in columns:
        if c.allowed_values is not None:
            rules.append(Rule("not_allowed_value", c.name, "in_set", values=c.allowed_values))
    for c in columns:
        if c.min is not None or c.max is not None:
            rules.append(Rule("out_of_range", c.name, "between", minimum=c.min, maximum=c.max))
    for c in columns:
        if c.max_length is not None:
            rules.append(Rule("too_long", c.name, "max_length", length=c.max_length))
    if contract.event_time:
        rules.append(Rule("future_timestamp", contract.event_time, "not_future"))
    return rules


def uniqueness_rules(contract: Contract) -> list[Rule]:
    """The primary key, and every other unique column."""
    key = tuple(contract.primary_key)
    rules = [Rule("duplicate_primary_key", ",".join(key), "unique", columns=key)]
    for c in contract.columns.values():
        if c.unique and (c.name,) != key:
            rules.append(Rule("duplicate_value", c.name, "unique", columns=(c.name,)))
    return rules


def normalized_frame(rows: pl.LazyFrame, contract: Contract) -> pl.LazyFrame:
    """The values every rule checks: each contract column as text, trimmed, empty -> null, normalized
    by its format (codes upper-cased); a column the file lacks is null."""
    names = set(rows.collect_schema().names())
    missing = [c.name for c in contract.columns.values() if c.name not in names]
    return rows.with_columns([pl.lit(None, pl.String).alias(name) for name in missing]).with_columns(
        [
            normalize(pl.col(c.name).str.strip_chars().replace("", None), c.format).alias(c.name)
            for c in contract.columns.values()
        ]
    )


def typed(column: Column) -> pl.Expr:
    """The column's value parsed as its contract type (null where it does not parse)."""
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


def typed_name(name: str) -> str:
    return f"__typed_{name}"


def failing(rule: Rule, now: dt.datetime | None = None) -> pl.Expr:
    """The rows that fail `rule`, over the normalized frame with typed columns (__typed_<name>) beside.
    Null where a value is absent counts as passing (fill_null(False) by the caller)."""
    value = pl.col(rule.column) if rule.kind != "unique" else None
    if rule.kind == "not_null":
        return value.is_null()
    if rule.kind == "in_set":
        return value.is_not_null() & ~value.is_in(list(rule.values))
    if rule.kind == "match":
        return value.is_not_null() & ~value.str.contains(rule.regex)
    if rule.kind == "not_match":
        return value.is_not_null() & value.str.contains(rule.regex)
    if rule.kind == "between":
        number = pl.col(typed_name(rule.column)).cast(pl.Float64)
        below = number < rule.minimum if rule.minimum is not None else pl.lit(False)
        above = number > rule.maximum if rule.maximum is not None else pl.lit(False)
        return below | above
    if rule.kind == "max_length":
        return value.str.len_chars() > rule.length
    if rule.kind == "parses":
        return value.is_not_null() & pl.col(typed_name(rule.column)).is_null()
    if rule.kind == "not_future":
        return pl.col(typed_name(rule.column)).cast(pl.Datetime("us")) > now + dt.timedelta(days=1)
    if rule.kind == "unique":
        # As GX counts it: every row of a value that occurs more than once (nulls aside).
        if len(rule.columns) == 1:
            column = pl.col(rule.columns[0])
            return column.is_not_null() & column.is_duplicated()
        present = pl.any_horizontal([pl.col(c).is_not_null() for c in rule.columns])
        return present & pl.struct(list(rule.columns)).is_duplicated().over(present)
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def gx_expectation(rule: Rule, mostly: float = 1.0):
    """The rule as a Great Expectations 1.x expectation (None for the row-only rules)."""
    import great_expectations as gx

    e = gx.expectations
    column = rule.column
    if rule.kind == "not_null":
        return e.ExpectColumnValuesToNotBeNull(column=column, mostly=mostly)
    if rule.kind == "in_set":
        return e.ExpectColumnValuesToBeInSet(column=column, value_set=list(rule.values), mostly=mostly)
    if rule.kind == "match":
        return e.ExpectColumnValuesToMatchRegex(column=column, regex=rule.regex, mostly=mostly)
    if rule.kind == "not_match":
        return e.ExpectColumnValuesToNotMatchRegex(column=column, regex=rule.regex, mostly=mostly)
    if rule.kind == "between":
        return e.ExpectColumnValuesToBeBetween(
            column=column + NUMBER_SUFFIX, min_value=rule.minimum, max_value=rule.maximum, mostly=mostly
        )
    if rule.kind == "max_length":
        return e.ExpectColumnValueLengthsToBeBetween(column=column, max_value=rule.length, mostly=mostly)
    if rule.kind == "unique":
        if len(rule.columns) == 1:
            return e.ExpectColumnValuesToBeUnique(column=rule.columns[0], mostly=mostly)
        return e.ExpectCompoundColumnsToBeUnique(column_list=list(rule.columns), mostly=mostly)
    return None
