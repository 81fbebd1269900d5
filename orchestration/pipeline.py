"""Run the whole pipeline in this process, the same job the daily schedule runs."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import dagster as dg

from cdp.settings import current_paths


@dataclass(frozen=True)
class PipelineRun:
    run_id: str
    success: bool
    failed_steps: list[str]
    failed_checks: list[str]
    log_path: str


def run_pipeline(log_level: str = "WARNING") -> PipelineRun:
    # Imported here: building the definitions parses the dbt project and reads the contracts.
    from orchestration.definitions import PIPELINE_JOB_NAME, defs

    job = defs.resolve_job_def(PIPELINE_JOB_NAME)
    # With DAGSTER_HOME set, runs are recorded where `dagster dev` shows them.
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    log_path = current_paths().data_dir / "logs" / "last_run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # dbt's own output (re-emitted by dagster-dbt on stdout) goes to the log file, not the terminal.
    with log_path.open("w") as log, contextlib.redirect_stdout(log):
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            # The CLI prints its own summary; Dagster's step-by-step log stays in `dagster dev`.
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
    failed_steps = [
        event.step_key for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    # A skipped step means an upstream asset did not materialize: its outputs (and the publication to
    # the serving store, which waits for every asset) did not happen either.
    failed_steps += [
        f"{event.step_key} (skipped: an upstream asset did not materialize)"
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_SKIPPED
    ]
    failed_checks = [
        f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and not (evaluation := event.event_specific_data).passed
        and evaluation.severity == dg.AssetCheckSeverity.ERROR  # warnings are reported, not failures
    ]
    return PipelineRun(
        run_id=result.run_id,
        success=result.success and not failed_checks and not failed_steps,
        failed_steps=failed_steps,
        failed_checks=failed_checks,
        log_path=str(log_path),
    )
