"""One asset per source table: load new landing files under the table's data contract."""

import dagster as dg

import data_contracts
from cdp.settings import as_of_instant, current_paths
from orchestration.resources import WarehouseResource

ROWS_ACCOUNTED = "rows_accounted"
REJECT_RATE = "reject_rate_within_contract"
EXPECTATIONS = "great_expectations_suite"
FRESHNESS = "fresh_within_contract"
FILES_READABLE = "files_readable"


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
                description="no file of the table has more quarantined rows than the contract's max_reject_rate "
                "(a failing file keeps failing until fixed or accepted: cdp quarantine accept)",
            ),
            dg.AssetCheckSpec(
                EXPECTATIONS,
                asset=key,
                blocking=True,
                description="the contract's Great Expectations suite counts the same failing rows as the "
                "row rules on every file loaded (both come from one definition)",
            ),
            dg.AssetCheckSpec(
                FILES_READABLE,
                asset=key,
                description="no landing file of the table is rejected whole (unreadable) and left undelivered",
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
                "values_nulled": report.values_nulled,
            },
            check_results=[*source_load_checks(contract, report), freshness_check(contract, newest, fresh)],
        )

    return load_source_table


def source_load_checks(
    contract: data_contracts.Contract, report: data_contracts.TableLoadReport
) -> list[dg.AssetCheckResult]:
    accounted = report.rows_read == report.rows_accepted + report.rows_quarantined + report.rows_suppressed
    blocking = report.blocking_files
    override = f'cdp quarantine accept {contract.name} <file> --reason "..."'
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
            passed=not blocking,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{len(blocking)} file(s) of {contract.name} beyond the contract's max_reject_rate "
                f"{contract.max_reject_rate:.2%}: {'; '.join(f.describe() for f in blocking)}. Fix the data and "
                "deliver the file again under the same name, or fix the contract and run "
                f"`cdp quarantine replay {contract.name}`, or accept the failure: `{override}`."
                if blocking
                else f"this run: {report.rows_quarantined} of {report.rows_read} rows quarantined "
                f"({report.reject_rate:.2%}); no file of {contract.name} beyond {contract.max_reject_rate:.2%}"
            ),
            metadata={
                "reject_rate": report.reject_rate,
                "max_reject_rate": contract.max_reject_rate,
                "failing_files": [f.file_path for f in blocking],
            },
        ),
        dg.AssetCheckResult(
            check_name=EXPECTATIONS,
            passed=not report.expectation_failures,
            description="; ".join(report.expectation_failures)
            or f"suite agrees with the row rules on {report.expectations_checked} file(s) "
            "(results in audit.expectation_results)",
            metadata={"files_checked": report.expectations_checked},
        ),
        dg.AssetCheckResult(
            check_name=FILES_READABLE,
            passed=not report.rejected_files,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"{len(report.rejected_files)} file(s) rejected whole, kept in landing/_rejected/: "
                f"{'; '.join(f.describe() for f in report.rejected_files)}. Deliver a readable file under the "
                f"same name, or accept: `{override}`."
                if report.rejected_files
                else "every landing file was readable"
            ),
            metadata={"rejected_files": [f.file_path for f in report.rejected_files]},
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
