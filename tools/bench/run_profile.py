"""Where a `cdp run` spends its time: run it in this process and count the fixed costs.

    python -m tools.bench.run_profile [--json out.json] [-- cdp run args]

Counts (by wrapping the functions before the definitions import them): dbt invocations (every `dbt`
subprocess, with its command), manifest preparations, column-label refreshes, and each one's time;
then reads the run's step start/end events from the Dagster instance: wall seconds per step.
Run it with CDP_DATA_DIR / CDP_AS_OF set as for `cdp run` (tools/bench/pipeline.py does).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

CALLS: dict[str, list[float]] = defaultdict(list)
DBT_COMMANDS: list[str] = []


def _timed(name: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            CALLS[name].append(time.perf_counter() - started)

    return wrapper


def _instrument() -> None:
    import cdp.dbt
    import cdp.governance.labels

    cdp.dbt.prepare_manifest = _timed("prepare_manifest", cdp.dbt.prepare_manifest)
    cdp.governance.labels.refresh_column_labels = _timed(
        "refresh_column_labels", cdp.governance.labels.refresh_column_labels
    )
    popen_init = subprocess.Popen.__init__

    def counting_init(self, args, *rest, **kwargs):
        command = [str(a) for a in (args if isinstance(args, list | tuple) else [args])]
        if command and Path(command[0]).name == "dbt":
            DBT_COMMANDS.append(" ".join(a for a in command[1:] if not a.startswith("/"))[:200])
        popen_init(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = counting_init


def step_seconds(run_id: str) -> list[tuple[str, float]]:
    """(step key, wall seconds) of every step of the run, in start order, from the Dagster instance."""
    import dagster as dg

    instance = dg.DagsterInstance.get()
    started: dict[str, float] = {}
    ended: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            ended[event.step_key] = entry.timestamp
    return [(step, ended.get(step, started[step]) - started[step]) for step in sorted(started, key=started.get)]


def _latest_run_id() -> str | None:
    from cdp.settings import current_paths, export_dagster_home

    export_dagster_home(current_paths())
    import dagster as dg

    runs = dg.DagsterInstance.get().get_runs(limit=1)
    return runs[0].run_id if runs else None


def profile_run(cli_args: list[str]) -> dict:
    """Run `cdp <cli_args>` (default `run`) here and return what it cost."""
    _instrument()
    before = _latest_run_id()
    started = time.perf_counter()
    from cdp.cli import main

    try:
        main.main(args=cli_args or ["run"], standalone_mode=False)
        exit_code = 0
    except SystemExit as stop:
        exit_code = stop.code or 0
    total = time.perf_counter() - started
    run_id = _latest_run_id()
    ran = run_id is not None and run_id != before  # else skipped: nothing new since the last complete run
    steps = step_seconds(run_id) if ran else []
    return {
        "exit_code": exit_code,
        "total_s": round(total, 2),
        "skipped": not ran,
        "steps": [(step, round(seconds, 2)) for step, seconds in steps],
        "dbt_invocations": len(DBT_COMMANDS),
        "dbt_commands": DBT_COMMANDS,
        **{f"{name}_calls": len(times) for name, times in CALLS.items()},
        **{f"{name}_s": round(sum(times), 2) for name, times in CALLS.items()},
        **{f"{name}_each_s": [round(t, 2) for t in times] for name, times in CALLS.items()},
    }


def main(argv: list[str]) -> None:
    out = None
    if argv[:1] == ["--json"]:
        out, argv = Path(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    figures = profile_run(argv)
    text = json.dumps(figures, indent=1)
    if out:
        out.write_text(text)
    print(text, file=sys.stderr)
    if figures["exit_code"]:
        sys.exit(figures["exit_code"])


if __name__ == "__main__":
    main(sys.argv[1:])
