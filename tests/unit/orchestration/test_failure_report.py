"""A failed run says why first: the failing dbt model or test with dbt's message (from the invocation's
run_results.json), a failed step with the message its code raised, a failed blocking check with its
description, each named by asset (issue 21.2). Checked on a real dbt build of a tiny project with a
broken model and a failing test, and on a real Dagster run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg

from orchestration.assets.transformations import dbt_failures
from orchestration.pipeline import summarize_failures

PROFILE = """
tiny:
  target: dev
  outputs:
    dev: {{type: duckdb, path: "{path}"}}
"""


def test_dbt_failures_name_the_model_and_the_test_with_dbts_message(tmp_path):
    project = tmp_path / "tiny"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: tiny\nversion: '1.0.0'\nprofile: tiny\nconfig-version: 2\n")
    (project / "profiles.yml").write_text(PROFILE.format(path=tmp_path / "tiny.duckdb"))
    (project / "models" / "customers.sql").write_text("select 1 as customer_id union all select 1")
    (project / "models" / "orders.sql").write_text("select no_such_column from {{ ref('customers') }}")
    (project / "models" / "schema.yml").write_text(
        "version: 2\nmodels:\n  - name: customers\n    columns:\n      - name: customer_id\n"
        "        data_tests: [unique]\n"
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")),
            "build",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    lines = dbt_failures(json.loads((project / "target" / "run_results.json").read_text()))
    test_line = next(line for line in lines if line.startswith("dbt test "))
    assert "unique_customers_customer_id" in test_line and "1 failing row(s)" in test_line, lines
    # dbt skips orders after the failed test; the broken model fails when built on its own:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")),
            "run",
            "--select",
            "orders",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = dbt_failures(json.loads((project / "target" / "run_results.json").read_text()))
    assert len(lines) == 1 and lines[0].startswith("dbt model orders: "), lines
    assert "no_such_column" in lines[0] and "Binder Error" in lines[0], lines


def test_a_failed_run_is_summarized_by_asset_with_the_raised_message_and_the_failed_check():
    @dg.asset(
        key=["raw", "crm__contacts"],
        check_specs=[
            dg.AssetCheckSpec("reject_rate_within_contract", asset=dg.AssetKey(["raw", "crm__contacts"]), blocking=True)
        ],
    )
    def loads():
        yield dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    passed=False,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description="200 of 200 rows quarantined (100.00%); contract crm__contacts allows at most 5.00%",
                )
            ]
        )

    @dg.asset(key=["activation", "high_value_to_csv"])
    def sync():
        raise dg.Failure(description="sync high_value_to_csv: environment variable X is not set")

    @dg.asset(key=["predictions", "trained_models"])
    def training():
        raise KeyError("purchase model")

    with dg.instance_for_test() as instance:
        job = dg.Definitions(assets=[loads, sync, training]).resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        planned = [
            e.dagster_event
            for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        ]
    found = summarize_failures([*planned, *result.all_events])
    assert (
        "check raw/crm__contacts:reject_rate_within_contract: 200 of 200 rows quarantined (100.00%); "
        "contract crm__contacts allows at most 5.00%" in found["failures"]
    ), found
    assert (
        "activation/high_value_to_csv: sync high_value_to_csv: environment variable X is not set" in found["failures"]
    )
    assert "predictions/trained_models: KeyError: 'purchase model'" in found["failures"], found
    # The step the blocking check failed is reported once, by the check's line.
    assert len(found["failures"]) == 3 and "raw__crm__contacts" in found["failed_steps"], found
