"""Pipeline runs yield the CPU and the disk to the profile API (issue 25): every run lowers its own
nice value and I/O priority (CDP_RUN_PRIORITY, default low), threads started before included.

Each case runs in a subprocess: lowering a priority cannot be undone without privileges, and this test
process must keep its own. The values are read back from the kernel (/proc and ioprio_get)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from support.workspace import PROJECT_ROOT

PROBE = textwrap.dedent(
    """
    import json, os, threading
    from cdp.serving.batch_priority import io_priority, lower_run_priority

    started, lowered, seen = threading.Event(), threading.Event(), {}

    def earlier_thread():  # started before the run lowers its priority (as DuckDB's pool would be)
        started.set()
        lowered.wait()
        tid = threading.get_native_id()
        seen["thread"] = [os.getpriority(os.PRIO_PROCESS, tid), list(io_priority(tid))]

    thread = threading.Thread(target=earlier_thread, daemon=True)
    thread.start()
    started.wait()
    applied = lower_run_priority()
    lowered.set()
    thread.join()
    child = int(os.popen("nice").read())  # a child process (dbt, for one) inherits it
    seen["main"] = [os.getpriority(os.PRIO_PROCESS, 0), list(io_priority())]
    print(json.dumps({"applied": applied.name, "child_nice": child, **seen}))
    """
)


def run_probe(priority: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CDP_RUN_PRIORITY"}
    if priority is not None:
        env["CDP_RUN_PRIORITY"] = priority
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


OURS = os.getpriority(os.PRIO_PROCESS, 0)  # only ever lowered: a test run already niced stays as low


@pytest.mark.parametrize(
    ("priority", "nice", "io"),
    [(None, max(OURS, 10), [2, 7]), ("low", max(OURS, 10), [2, 7]), ("idle", 19, [3, 0]), ("normal", OURS, None)],
)
def test_runs_lower_every_thread_and_their_children(priority, nice, io):
    result = run_probe(priority)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["applied"] == (priority or "low")
    assert seen["main"][0] == seen["thread"][0] == seen["child_nice"] == nice
    if io is not None:
        assert seen["main"][1] == seen["thread"][1] == io


def test_an_unknown_priority_is_refused_with_the_choices():
    result = run_probe("lowest")
    assert result.returncode != 0
    assert "CDP_RUN_PRIORITY is 'lowest'; expected one of low, idle, normal" in result.stderr


def test_a_dagster_run_lowers_its_priority_as_it_takes_the_run_lock(tmp_path):
    """The warehouse resource every run uses applies it: `cdp run` and Dagster-launched runs alike."""
    code = textwrap.dedent(
        f"""
        import json, os, sys
        import dagster as dg
        from orchestration.resources import WarehouseResource

        @dg.asset
        def probe(warehouse: WarehouseResource) -> None:
            print("NICE", os.getpriority(os.PRIO_PROCESS, 0))

        before = os.getpriority(os.PRIO_PROCESS, 0)
        result = dg.materialize([probe], resources={{"warehouse": WarehouseResource(path={str(tmp_path / "w.duckdb")!r})}})
        print("BEFORE", before, "SUCCESS", result.success)
        """
    )
    env = {**os.environ, "CDP_RUN_PRIORITY": "low", "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"NICE {max(OURS, 10)}" in result.stdout and "SUCCESS True" in result.stdout, result.stdout
    assert f"BEFORE {OURS}" in result.stdout
