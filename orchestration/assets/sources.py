"""One asset per source table: load new landing files under the table's data contract."""

import dagster as dg

import data_contracts
from cdp.settings import as_of_instant, current_paths
from orchestration.resources import WarehouseResource

ROWS_ACCOUNTED = "rows_accounted"
REJECT_RATE = "reject_rate_within_contract"
EXPECTATIONS = "great_expectations_suite"
FRESHNESS = "fresh_within_contract"


def build_source_load_asset(contract: data_contracts.Contract) -> dg.AssetsDefinition:
    key = dg.AssetKey(["raw", contract.name])

    @dg.asset(
        key=key,
        group_name="sources",
        kinds={"duckdb", "polars"},
        description=f"Loads landing/{contract.source}/{contract.table}/ into raw.{contract.name} "
        f"under contract {contract.path.name}; rejected rows go to quarantine.{contract.name}.",
        check_specs=[
            dg.AssetCheckSpec(
                ROWS_ACCOUNTED,
                asset=key,
                blocking=True,
                description="rows read = rows accepted + rows quarantined + rows suppressed (erased people)",
            ),
            dg.AssetCheckSpec(
                REJECT_RATE,
                asset=key,
                blocking=True,
                description="share of quarantined rows within the contract's max_reject_rate",
            ),
            dg.AssetCheckSpec(
                EXPECTATIONS,
                asset=key,
                blocking=True,
                description="the contract's Great Expectations suite passes on every file loaded",
            ),
            dg.AssetCheckSpec(
                FRESHNESS, asset=key, description="newest event time within the contract's freshness max_age_hours"
            ),
        ],
    )
    def load_source_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            data_contracts.ensure_tables(con, contract)
            report = data_contracts.load_table(
                con, contract, current_paths().landing_dir, load_id=context.run_id, run_expectations=True
            )
            newest, fresh = data_contracts.freshness(con, contract, as_of_instant())
        yield dg.MaterializeResult(
            metadata={
                "files_loaded": report.files_loaded,
                "files_skipped": report.files_skipped,
                "rows_read": report.rows_read,
                "rows_accepted": report.rows_accepted,
                "rows_quarantined": report.rows_quarantined,
                "rows_suppressed": report.rows_suppressed,
                "quarantine_reasons": dict(report.quarantine_reasons),
                "extra_columns": sorted(report.extra_columns),
                "files_failed": report.files_failed,
            },
            check_results=[*source_load_checks(contract, report), freshness_check(contract, newest, fresh)],
        )

    return load_source_table


def source_load_checks(
    contract: data_contracts.Contract, report: data_contracts.TableLoadReport
) -> list[dg.AssetCheckResult]:
    accounted = (
        report.rows_read == report.rows_accepted + report.rows_quarantined + report.rows_suppressed
        and not report.files_failed
    )
    within_rate = report.reject_rate <= contract.max_reject_rate
    return [
        dg.AssetCheckResult(
            check_name=ROWS_ACCOUNTED,
            passed=accounted,
            metadata={
                "rows_read": report.rows_read,
                "rows_accepted": report.rows_accepted,
                "rows_quarantined": report.rows_quarantined,
                "rows_suppressed": report.rows_suppressed,
            },
        ),
        dg.AssetCheckResult(
            check_name=REJECT_RATE,
            passed=within_rate,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{report.rows_quarantined} of {report.rows_read} rows quarantined "
                f"({report.reject_rate:.2%}); contract {contract.name} allows at most "
                f"{contract.max_reject_rate:.2%}"
            ),
            metadata={"reject_rate": report.reject_rate, "max_reject_rate": contract.max_reject_rate},
        ),
        dg.AssetCheckResult(
            check_name=EXPECTATIONS,
            passed=not report.expectation_failures,
            description="; ".join(report.expectation_failures)
            or f"suite met on {report.expectations_checked} file(s) (results in audit.expectation_results)",
            metadata={"files_checked": report.expectations_checked},
        ),
    ]


def freshness_check(contract: data_contracts.Contract, newest, fresh: bool) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=FRESHNESS,
        passed=fresh,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"newest {contract.event_time}: {newest}; contract allows {contract.max_age_hours} hours"
        if contract.max_age_hours
        else "no freshness rule in the contract",
    )


SOURCE_LOAD_ASSETS = [build_source_load_asset(c) for c in data_contracts.load_contracts().values()]
