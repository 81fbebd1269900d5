"""Run the whole pipeline in this process, the same job the daily schedule runs, and say why it
failed in a few lines (the failing model, test, check or step and its message) before the log."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from cdp import progress
from cdp.settings import current_paths, export_dagster_home


@dataclass(frozen=True)
class PipelineRun:
    run_id: str
    success: bool
    failed_steps: list[str]
    failed_checks: list[str]
    log_path: str
    # The reasons, first thing to read: "<what failed>: <its message>", one per failure.
    failures: list[str] = field(default_factory=list)
    skipped_steps: list[str] = field(default_factory=list)


class _RunLogHandler(logging.Handler):
    """Dagster's event log of the run, as text, into the run's log file; step starts to the progress display."""

    def __init__(self, log_file) -> None:
        super().__init__(level=logging.DEBUG)
        self.log_file = log_file

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is not None and event.event_type == dg.DagsterEventType.STEP_START:
            progress.step_started(event.step_key)
        if record.levelno >= logging.INFO:
            self.log_file.write(f"{record.getMessage()}\n")
            self.log_file.flush()


def run_log_logger(log_file) -> dg.LoggerDefinition:
    @dg.logger(description="The run's Dagster log into the CLI's log file, and live progress.")
    def cdp_run_log(_init_context) -> logging.Logger:
        logger = logging.Logger("cdp_run_log", level=logging.DEBUG)
        logger.addHandler(_RunLogHandler(log_file))
        return logger

    return cdp_run_log


def _innermost_message(error) -> str:
    """The message of the exception user code raised (the last cause in Dagster's wrapping)."""
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    if error is None:
        return "unknown error"
    message = (error.message or "").strip()
    # "activation.errors.ActivationError: sync x: ..." -> "ActivationError: sync x: ..."
    head, sep, rest = message.partition(": ")
    if sep and "." in head and " " not in head:
        message = f"{head.rsplit('.', 1)[1]}: {rest}"
    return message


def _innermost_class(error) -> str | None:
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    return getattr(error, "cls_name", None)


def step_failure_reason(event: dg.DagsterEvent) -> str:
    data = event.event_specific_data
    user_failure = getattr(data, "user_failure_data", None)
    if user_failure is not None and user_failure.description:
        return user_failure.description.strip()
    return _innermost_message(getattr(data, "error", None))


def summarize_failures(events: list[dg.DagsterEvent], step_labels: dict[str, str] | None = None) -> dict:
    """From a run's events: each failed step and ERROR check with its message, and the skipped steps."""
    labels = dict(step_labels or {})
    planned: dict[str, list[str]] = {}  # step key -> the assets it was to materialize
    for event in events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED and event.step_key:
            planned.setdefault(event.step_key, []).append(event.event_specific_data.asset_key.to_user_string())
    labels.update({step: keys[0] for step, keys in planned.items() if len(keys) == 1 and step not in labels})
    failures, failed_steps, failed_checks, skipped = [], [], [], []
    for event in events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            label = labels.get(event.step_key, event.step_key)
            failed_steps.append(event.step_key)
            if _innermost_class(getattr(event.event_specific_data, "error", None)) == "DagsterAssetCheckFailedError":
                continue  # a blocking check failed the step: the check's own line below says why
            reason = step_failure_reason(event)
            lines = reason.splitlines() or ["(no message)"]
            if len(lines) > 1 and all(line.startswith("dbt ") for line in lines):
                failures += lines  # the dbt step names each failed model and test itself
            else:
                failures.append(f"{label}: {reason}")
        elif event.event_type == dg.DagsterEventType.STEP_SKIPPED:
            skipped.append(labels.get(event.step_key, event.step_key))
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
                continue  # warnings are reported, not failures
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            failed_checks.append(name)
            description = getattr(evaluation, "description", None)
            if not description:
                failed_rows = evaluation.metadata.get("dagster_dbt/failed_row_count")
                description = f"{failed_rows.value} failing row(s)" if failed_rows is not None else "failed"
            failures.append(f"check {name}: {description}")
    return {"failures": failures, "failed_steps": failed_steps, "failed_checks": failed_checks, "skipped": skipped}


def run_pipeline(full_refresh: bool = False) -> PipelineRun:
    """The pipeline job in this process; `full_refresh` rebuilds every incremental dbt model from raw."""
    # Imported here: building the definitions parses the dbt project and reads the contracts.
    from orchestration.assets.transformations import full_refresh_run_config
    from orchestration.definitions import PIPELINE_JOB_NAME, defs

    paths = current_paths()
    export_dagster_home(paths)  # the run is recorded where `cdp dagster` (the UI) shows it
    job = defs.resolve_job_def(PIPELINE_JOB_NAME)
    instance = dg.DagsterInstance.get()
    log_path = paths.data_dir / "logs" / "last_run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # dbt's own output (re-emitted by dagster-dbt on stdout) and Dagster's event log go to the log
    # file; the terminal gets live progress and, at the end, the summary or the reasons it failed.
    with log_path.open("w") as log, contextlib.redirect_stdout(log):
        job_with_log = job.with_logger_defs({**job.loggers, "cdp_run_log": run_log_logger(log)})
        with progress.live("cdp run"):
            result = job_with_log.execute_in_process(
                instance=instance,
                raise_on_error=False,
                tags={"cdp/launched_by": "cdp run", **({"cdp/full_refresh": "true"} if full_refresh else {})},
                run_config={
                    "loggers": {"console": {"config": {"log_level": "CRITICAL"}}, "cdp_run_log": {}},
                    **(full_refresh_run_config() if full_refresh else {}),
                },
            )
        # The planned materializations (step -> asset) are in the instance's log, not the result's events.
        planned = [
            entry.dagster_event
            for entry in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
            if entry.dagster_event is not None
        ]
        found = summarize_failures([*planned, *result.all_events])
        if found["failures"]:
            log.write("\nWhy the run failed:\n" + "\n".join(f"  {line}" for line in found["failures"]) + "\n")
    return PipelineRun(
        run_id=result.run_id,
        success=result.success and not found["failed_checks"] and not found["failed_steps"],
        failed_steps=found["failed_steps"],
        failed_checks=found["failed_checks"],
        log_path=str(Path(log_path)),
        failures=found["failures"],
        skipped_steps=found["skipped"],
    )
