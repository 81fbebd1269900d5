"""The contract as a Great Expectations 1.x suite, validated through GX's pandas data source (its
SQL path does not work with DuckDB).

The suite is generated from the same rule definitions as the polars row checks (rules.py) and runs
on the same normalized values, so it is an independent recount of every rule: each expectation's
unexpected count must equal the number of rows the polars rule flagged. A load where the two differ
has found a bug in one of them, and the blocking asset check says which expectation. The verdict on
the data itself (too many rows quarantined?) is the reject-rate check's; each expectation here asks
that every row meet it (mostly = 1.0), so GX's own success says whether any row failed it."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl

from data_contracts import rules as rule_definitions
from data_contracts.contract import Contract
from data_contracts.rules import NUMBER_SUFFIX, contract_rules, normalized_frame, typed, uniqueness_rules

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no network calls from GX


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    element_count: int
    unexpected_count: int
    rule: str | None = None  # the row rule it recounts (None: a table-level expectation)
    row_rule_count: int | None = None  # rows the polars rule flagged in the same batch

    @property
    def agrees(self) -> bool:
        return self.row_rule_count is None or self.row_rule_count == self.unexpected_count


@dataclass(frozen=True)
class SuiteOutcome:
    success: bool
    outcomes: list[ExpectationOutcome]

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    @property
    def disagreements(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.agrees]

    @property
    def agrees(self) -> bool:
        return not self.disagreements


def _suite_rules(contract: Contract):
    return [rule for rule in contract_rules(contract) + uniqueness_rules(contract) if not rule.row_only]


def expectation_suite(contract: Contract):
    """The GX suite generated from the contract's rules (one expectation per rule GX can express)."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(
        name=f"contract__{contract.name}",
        meta={
            "notes": {
                "format": "markdown",
                "content": f"Generated from `{contract.path.name}` by data_contracts/rules.py, the same rules the "
                f"loader applies row by row. Each expectation holds for every row (rows failing it are "
                f"quarantined); the table may quarantine at most {contract.max_reject_rate:.2%} of a file's rows "
                "(the reject-rate asset check).",
            }
        },
    )
    required = [c.name for c in contract.columns.values() if c.required]
    suite.add_expectation(gx.expectations.ExpectTableColumnsToMatchSet(column_set=required, exact_match=False))
    for rule in _suite_rules(contract):
        expectation = rule_definitions.gx_expectation(rule, 1.0)
        expectation.meta = {"rule": rule.name, "column": rule.column}
        suite.add_expectation(expectation)
    return suite


@cache
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def batch_frame(rows: pl.DataFrame, contract: Contract):
    """What GX checks: the normalized values the row rules check (text), and for numeric columns with
    a range their parsed number under <name>__number (null where it does not parse)."""
    numeric = [c for c in contract.columns.values() if c.min is not None or c.max is not None]
    frame = normalized_frame(rows.lazy(), contract).select(
        [pl.col(name) for name in contract.columns]
        + [typed(c).cast(pl.Float64).alias(c.name + NUMBER_SUFFIX) for c in numeric]
    )
    return frame.collect().to_pandas()


def run_suite(
    contract: Contract, rows: pl.DataFrame, rule_counts: dict[tuple[str, str], int] | None = None
) -> SuiteOutcome:
    """Validate `rows` (as read) with the contract's suite, and set beside each expectation the count of
    the polars rule it recounts (`rule_counts` from validate(), computed here when not given)."""
    if rule_counts is None:
        from data_contracts.validate import validate

        rule_counts = validate(rows, contract).rule_counts
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
    outcomes = []
    # BASIC: counts without the lists of unexpected values (a third less of GX's per-expectation overhead).
    for result in batch.validate(expectation_suite(contract), result_format="BASIC").results:
        meta = result.expectation_config.meta or {}
        rule, column = meta.get("rule"), meta.get("column")
        outcomes.append(
            ExpectationOutcome(
                expectation=result.expectation_config.type,
                column=column,
                success=bool(result.success),
                element_count=int(result.result.get("element_count") or 0),
                unexpected_count=int(result.result.get("unexpected_count") or 0),
                rule=rule,
                row_rule_count=rule_counts.get((rule, column)) if rule else None,
            )
        )
    return SuiteOutcome(success=all(o.success for o in outcomes), outcomes=outcomes)


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
    if outcome.agrees:
        return f"all {len(outcome.outcomes)} expectations agree with the row rules"
    return "; ".join(
        f"{o.expectation}({o.column or 'table'}) counted {o.unexpected_count} unexpected of {o.element_count}, "
        f"the row rule {o.rule} flagged {o.row_rule_count}"
        for o in outcome.disagreements
    )
