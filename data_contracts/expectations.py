"""The contract as a Great Expectations 1.x suite, validated through GX's pandas data source (its
SQL path does not work with DuckDB). An independent second check of every load: the polars rules
decide row by row; GX judges the batch, each expectation allowed the contract's max_reject_rate."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl

from data_contracts.contract import Contract
from data_contracts.formats import COUNTRY_CODES, CURRENCY_CODES, EMAIL, ISO8601, PHONE_CHARACTERS, URL
from data_contracts.validate import _parse

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no network calls from GX

FORMAT_REGEX = {"email": EMAIL, "phone": PHONE_CHARACTERS, "url": URL, "iso8601": ISO8601}


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    element_count: int
    unexpected_count: int


@dataclass(frozen=True)
class SuiteOutcome:
    success: bool
    outcomes: list[ExpectationOutcome]

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]


def expectation_suite(contract: Contract):
    """The GX suite generated from the contract (same rules as validate.py, batch-level)."""
    import great_expectations as gx

    mostly = max(0.0, 1.0 - contract.max_reject_rate)
    suite = gx.ExpectationSuite(name=f"contract__{contract.name}")
    suite.add_expectation(
        gx.expectations.ExpectTableColumnsToMatchSet(column_set=list(contract.columns), exact_match=False)
    )
    for column in contract.columns.values():
        name = column.name
        if column.required:
            suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=name, mostly=mostly))
        if column.allowed_values is not None:
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToBeInSet(
                    column=name, value_set=list(column.allowed_values), mostly=mostly
                )
            )
        if column.type == "string" and column.format in FORMAT_REGEX:
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToMatchRegex(
                    column=name, regex=FORMAT_REGEX[column.format], mostly=mostly
                )
            )
        if column.type == "string" and column.format in ("country_code", "currency_code"):
            codes = COUNTRY_CODES if column.format == "country_code" else CURRENCY_CODES
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToBeInSet(column=name, value_set=sorted(codes), mostly=mostly)
            )
        if column.pattern:
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToMatchRegex(
                    column=name, regex=f"^(?:{column.pattern})$", mostly=mostly
                )
            )
        if column.min is not None or column.max is not None:
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column=name, min_value=column.min, max_value=column.max, mostly=mostly
                )
            )
        if column.max_length is not None:
            suite.add_expectation(
                gx.expectations.ExpectColumnValueLengthsToBeBetween(
                    column=name, max_value=column.max_length, mostly=mostly
                )
            )
        if column.unique:
            suite.add_expectation(gx.expectations.ExpectColumnValuesToBeUnique(column=name, mostly=mostly))
    if len(contract.primary_key) == 1:
        suite.add_expectation(
            gx.expectations.ExpectColumnValuesToBeUnique(column=contract.primary_key[0], mostly=mostly)
        )
    else:
        suite.add_expectation(
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=list(contract.primary_key), mostly=mostly)
        )
    return suite


@cache
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def batch_frame(rows: pl.DataFrame, contract: Contract):
    """What GX checks: the rows as read, text for strings and parsed values for numbers (a value that
    does not parse is null there, and counted by the text-side rules)."""
    columns = []
    for column in contract.columns.values():
        if column.name not in rows.columns:
            continue
        text = pl.col(column.name).str.strip_chars().replace("", None)
        if column.type in ("integer", "decimal", "float"):
            columns.append(_parse(column).cast(pl.Float64).alias(column.name))
        elif column.type in ("date", "timestamp"):
            columns.append(_parse(column).cast(pl.String).alias(column.name))
        else:
            columns.append(text.alias(column.name))
    trimmed = rows.with_columns(
        [pl.col(c).str.strip_chars().replace("", None) for c in contract.columns if c in rows.columns]
    )
    return trimmed.select(columns).to_pandas()


def run_suite(contract: Contract, rows: pl.DataFrame) -> SuiteOutcome:
    context = _context()
    source_name = f"contract__{contract.name}"
    try:
        source = context.data_sources.get(source_name)
    except Exception:
        source = context.data_sources.add_pandas(source_name)
    try:
        asset = source.get_asset("rows")
    except Exception:
        asset = source.add_dataframe_asset("rows")
    try:
        batch_definition = asset.get_batch_definition("whole")
    except Exception:
        batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    batch = batch_definition.get_batch(batch_parameters={"dataframe": batch_frame(rows, contract)})
    result = batch.validate(expectation_suite(contract))
    outcomes = [
        ExpectationOutcome(
            expectation=r.expectation_config.type,
            column=r.expectation_config.kwargs.get("column"),
            success=bool(r.success),
            element_count=int(r.result.get("element_count") or 0),
            unexpected_count=int(r.result.get("unexpected_count") or 0),
        )
        for r in result.results
    ]
    return SuiteOutcome(success=bool(result.success), outcomes=outcomes)


def build_data_docs(contracts: dict[str, Contract], target_dir: Path) -> Path:
    """Write GX data docs (the suites of every contract) as static HTML under `target_dir`;
    returns the index page."""
    import great_expectations as gx

    target_dir = Path(target_dir)
    context = gx.get_context(mode="file", project_root_dir=str(target_dir))
    for contract in contracts.values():
        suite = expectation_suite(contract)
        with contextlib.suppress(Exception):
            context.suites.delete(suite.name)
        context.suites.add(suite)
    context.build_data_docs()
    index = next(target_dir.rglob("data_docs/local_site/index.html"))
    return index


def describe(outcome: SuiteOutcome) -> str:
    if outcome.success:
        return f"all {len(outcome.outcomes)} expectations met"
    return "; ".join(
        f"{o.expectation}({o.column or 'table'}): {o.unexpected_count} of {o.element_count} unexpected"
        for o in outcome.failed
    )
