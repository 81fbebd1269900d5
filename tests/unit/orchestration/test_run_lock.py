"""One writer of the build warehouse at a time (issue 19.16, 21.4).

While another process holds the run lock, `cdp run`, `cdp load`, `cdp sync` and a Dagster run are
refused in under a second with the holder's pid, command and start time; readers are refused too (a
read-only open between two steps of a run used to fail the run). A step whose connection meets a
stray reader's DuckDB lock waits for it instead of failing. Dagster queues a second run: DAGSTER_HOME's
dagster.yaml limits the runs tagged cdp/warehouse to one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.resources import WarehouseResource
from support.workspace import PROJECT_ROOT

HOLDER = """
import sys, time
from cdp import runlock
runlock.acquire(sys.argv[1], "cdp run")
print("held", flush=True)
sys.stdin.readline()
"""


@pytest.fixture()
def held_lock(tmp_path):
    """Another process holding the run lock of tmp_path/warehouse.duckdb, as a running `cdp run` does."""
    warehouse = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse)],
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    yield warehouse, holder
    if holder.poll() is None:
        holder.kill()
        holder.wait()


HEAVY_MODULES = ("dagster", "dbt", "polars", "great_expectations", "splink", "sklearn")


def cdp(warehouse: Path, *args: str, python_options: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, float]:
    env = {
        **os.environ,
        "CDP_DATA_DIR": str(warehouse.parent),
        "CDP_WAREHOUSE": str(warehouse),
        "CDP_SERVING_STORE": str(warehouse.parent / "serving" / "published.duckdb"),
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *python_options, "-m", "cdp.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.perf_counter() - started


WRITERS = [("run",), ("load",), ("sync",), ("predict",)]
READERS = [("summary",), ("segments", "list")]


@pytest.mark.parametrize("command", WRITERS + READERS)
def test_a_second_writer_or_reader_is_refused_at_once_naming_the_holder(held_lock, command):
    warehouse, holder = held_lock
    duckdb.connect(str(warehouse)).close()  # a warehouse exists, so readers would open it
    (warehouse.parent / "landing").mkdir()  # and a landing folder, so run and load would start
    # Writers are refused before anything heavy loads (about 0.7 s on an idle machine, Python's start
    # included): checked by what the process imported, which no load on the machine changes, and by a
    # time limit loose enough for a loaded machine (the best of three tries).
    if command in WRITERS:
        result, _ = cdp(warehouse, *command, python_options=("-X", "importtime"))
        assert result.returncode == 3, result.stderr
        imported = {
            line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
        }
        heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY_MODULES)
        assert not heavy, f"`cdp {' '.join(command)}` imported {heavy[:5]} before refusing"
    limit = 5.0 if command in WRITERS else 10.0
    timings = []
    for _ in range(3):
        result, seconds = cdp(warehouse, *command)
        assert result.returncode == 3, result.stderr
        timings.append(seconds)
        if seconds < limit:
            break
    assert min(timings) < limit, f"`cdp {' '.join(command)}` took {', '.join(f'{t:.2f}' for t in timings)} s to refuse"
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert f"pid {holder.pid}" in message and "cdp run" in message and "started 20" in message, message


def test_the_lock_goes_with_a_killed_holder(held_lock):
    warehouse, holder = held_lock
    from cdp import runlock

    assert runlock.current_holder(warehouse).pid == holder.pid
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert runlock.current_holder(warehouse) is None
    with runlock.run_lock(warehouse, "cdp load"):  # free again, no stale lock to remove by hand
        assert runlock.held_here(warehouse)


def _job(warehouse: Path) -> dg.JobDefinition:
    @dg.asset
    def touches_the_warehouse(warehouse: WarehouseResource) -> None:
        with warehouse.connect() as con:
            con.execute("create table if not exists t as select 1 as x")

    defs = dg.Definitions(
        assets=[touches_the_warehouse], resources={"warehouse": WarehouseResource(path=str(warehouse))}
    )
    return defs.resolve_implicit_global_asset_job_def()


def test_a_dagster_run_is_refused_while_the_cli_holds_the_warehouse(held_lock):
    warehouse, holder = held_lock
    result = _job(warehouse).execute_in_process(raise_on_error=False)
    assert not result.success
    # Refused when the run's resources start: no step ran, no DuckDB lock was waited for.
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    text = str(failure.event_specific_data.error)
    assert f"pid {holder.pid}" in text and "cdp run" in text, text


def test_a_dagster_run_holds_the_lock_for_its_whole_run(tmp_path):
    """While a run executes, another process sees the run as the holder."""
    warehouse = tmp_path / "warehouse.duckdb"
    seen = {}

    @dg.asset
    def first(warehouse: WarehouseResource) -> None:
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from cdp import runlock; h = runlock.current_holder(sys.argv[1]); print(h.command if h else 'free')",
                warehouse.path,
            ],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        )
        seen["holder"] = probe.stdout.strip()

    defs = dg.Definitions(assets=[first], resources={"warehouse": WarehouseResource(path=str(warehouse))})
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process()
    assert result.success
    assert seen["holder"].startswith("Dagster run "), seen
    from cdp import runlock

    assert runlock.current_holder(warehouse) is None and not runlock.held_here(warehouse)


READER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("reading", flush=True)
sys.stdin.readline()
con.close()
print("closed", flush=True)
"""


def test_a_step_waits_for_a_stray_reader_instead_of_failing(tmp_path):
    """A BI tool or notebook opened on the build warehouse: the step's writer waits until it lets go."""
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(warehouse)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "reading"
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(warehouse)).close()  # what a step met before: the run failed here
        resource = WarehouseResource(path=str(warehouse), lock_wait_s=120)
        outcome = {}

        def write():
            with resource.connect() as con:
                outcome["rows"] = con.execute("create table t as select 42 as x; select x from t").fetchall()

        writer = threading.Thread(target=write)
        writer.start()
        deadline = time.monotonic() + 60
        while resource._waits == 0 and time.monotonic() < deadline:  # the writer met the reader's lock
            time.sleep(0.01)
        assert resource._waits > 0 and writer.is_alive()
        reader.stdin.write("\n")
        reader.stdin.flush()
        writer.join(timeout=120)
        assert outcome.get("rows") == [(42,)]
    finally:
        reader.kill()
        reader.wait()


def test_dagster_queues_a_second_warehouse_run(tmp_path, monkeypatch):
    """`cdp run` writes DAGSTER_HOME/dagster.yaml with a limit of one run tagged cdp/warehouse, and every
    job that writes the warehouse carries that tag."""
    from cdp.settings import Paths, export_dagster_home

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = export_dagster_home(Paths(tmp_path, tmp_path / "warehouse.duckdb", tmp_path / "published.duckdb"))
    assert home == (tmp_path / "dagster").resolve() and os.environ["DAGSTER_HOME"] == str(home)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    finally:
        instance.dispose()
    assert {"key": "cdp/warehouse", "limit": 1} in [dict(limit) for limit in limits], limits

    from orchestration.definitions import WAREHOUSE_TAG, defs

    for job in defs.jobs:
        assert dict(job.tags or {}).items() >= WAREHOUSE_TAG.items(), job.name
