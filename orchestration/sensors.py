"""Alert sensors: a failed run, a failed check or sync in a run that finished, a stale serving store.

They watch every run of the Dagster instance, `cdp run`'s in-process runs included (the CLI records
them in DAGSTER_HOME), and send through cdp/alerts.py to the channels of alerts.yml. With no
alerts.yml they skip. They run wherever the Dagster daemon runs (`cdp dagster`)."""

from __future__ import annotations

import dagster as dg

from cdp.alerts import Alert, load_alert_config, send
from orchestration.pipeline import summarize_failures

ALERT_EVENT_TYPES = (
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_SKIPPED,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
)


def run_events(instance: dg.DagsterInstance, run_id: str) -> list[dg.DagsterEvent]:
    return [
        entry.dagster_event
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None and entry.dagster_event.event_type in ALERT_EVENT_TYPES
    ]


def run_failure_alert(run: dg.DagsterRun, events: list[dg.DagsterEvent]) -> Alert:
    found = summarize_failures(events)
    lines = found["failures"] or ["the run failed before any step did (see the run's log in the Dagster UI)"]
    if found["skipped"]:
        lines.append(f"{len(found['skipped'])} step(s) skipped because of it: {', '.join(found['skipped'][:10])}")
    return Alert("run_failure", f"cdp run {run.run_id} (job {run.job_name}) failed", tuple(lines), run.run_id)


def finished_run_alerts(run: dg.DagsterRun, events: list[dg.DagsterEvent]) -> list[Alert]:
    """Of a run that succeeded: failed checks (warnings such as freshness included) and syncs that
    left rows failed or rejected."""
    checks, syncs = [], []
    for event in events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                description = getattr(evaluation, "description", None) or "failed"
                checks.append(
                    f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name} "
                    f"({evaluation.severity.value.lower()}): {description}"
                )
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            key = materialization.asset_key
            if key.path[0] != "activation":
                continue
            metadata = {name: getattr(value, "value", value) for name, value in materialization.metadata.items()}
            failed, rejected = int(metadata.get("failed") or 0), int(metadata.get("rejected") or 0)
            if failed or rejected or metadata.get("status") not in (None, "succeeded", "dry_run"):
                syncs.append(
                    f"sync {key.path[-1]}: status {metadata.get('status')}, {failed:,} row(s) failed, "
                    f"{rejected:,} rejected of {int(metadata.get('sent') or 0) + failed + rejected:,} tried"
                )
    alerts = []
    if checks:
        alerts.append(
            Alert("check_failure", f"cdp run {run.run_id}: {len(checks)} check(s) failed", tuple(checks), run.run_id)
        )
    if syncs:
        alerts.append(
            Alert("sync_failure", f"cdp run {run.run_id}: {len(syncs)} sync(s) incomplete", tuple(syncs), run.run_id)
        )
    return alerts


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    monitor_all_code_locations=True,  # `cdp run`'s in-process runs have no code location
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends the reasons of every failed run (failing model, test, check or step and its message) "
    "to the channels of alerts.yml.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> dg.SkipReason | None:
    config = load_alert_config()
    if config is None:
        return dg.SkipReason("no alerts.yml (CDP_ALERTS_FILE): no alert sent")
    run = context.dagster_run
    reached = send(run_failure_alert(run, run_events(context.instance, run.run_id)), config)
    context.log.info(f"run failure of {run.run_id} sent to {', '.join(reached) or 'no channel'}")
    return None


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="alert_on_failed_checks_and_syncs",
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After every successful run: failed asset checks (warnings such as freshness too) and syncs "
    "with failed or rejected rows, to the channels of alerts.yml.",
)
def alert_on_failed_checks_and_syncs(context: dg.RunStatusSensorContext) -> dg.SkipReason | None:
    config = load_alert_config()
    if config is None:
        return dg.SkipReason("no alerts.yml (CDP_ALERTS_FILE): no alert sent")
    run = context.dagster_run
    for alert in finished_run_alerts(run, run_events(context.instance, run.run_id)):
        send(alert, config)
    return None


ALERT_SENSORS = [alert_on_run_failure, alert_on_failed_checks_and_syncs]
