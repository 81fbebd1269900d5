"""The DuckDB warehouse as a Dagster resource: the run lock for the whole run, and connections that
wait for a reader to let go instead of failing the run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import PrivateAttr

from cdp import runlock
from cdp.serving.batch_priority import PRIORITY_ENV, lower_run_priority
from cdp.warehouse import WarehouseError, connect

# How long a step waits for another process (a BI tool or a notebook opened on the build warehouse
# by mistake) to let go of the file before the run fails.
DEFAULT_LOCK_WAIT_S = 600.0


def _is_file_lock_error(error: duckdb.Error) -> bool:
    return "lock" in str(error).lower()


class WarehouseResource(dg.ConfigurableResource):
    """One DuckDB file. Connections are short-lived: DuckDB locks the file for the process that
    holds it open, and dbt runs in a subprocess between the Python steps.

    Every run holds the warehouse's run lock (cdp/runlock.py) from its first step to its end, so a
    second `cdp run`, `cdp load` or `cdp sync` is refused at once naming this run; Dagster queues a
    second Dagster run (run tag cdp/warehouse, limit 1 in dagster.yaml)."""

    path: str
    lock_wait_s: float = DEFAULT_LOCK_WAIT_S
    _locked: bool = PrivateAttr(default=False)
    _waits: int = PrivateAttr(default=0)  # times a connection waited for another process (tests read it)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.run
        command = f"Dagster run {run.run_id} (job {run.job_name})" if run else "a Dagster run"
        runlock.acquire(self.path, command)
        self._locked = True
        # The run yields CPU and disk to the profile API on the same machine (CDP_RUN_PRIORITY).
        priority = lower_run_priority()
        context.log.info(f"run priority: {priority.describe()} ({PRIORITY_ENV})")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._locked:
            runlock.release(self.path)
            self._locked = False

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = self._connect_waiting(read_only)
        try:
            yield con
        finally:
            con.close()

    def wait_until_writable(self) -> None:
        """Before dbt's subprocess opens the file: wait until no other process holds it."""
        self._connect_waiting(read_only=False).close()

    def _connect_waiting(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_wait_s
        delay = 0.05
        while True:
            try:
                return connect(self.path, read_only=read_only)  # encrypted when CDP_WAREHOUSE_ENCRYPTION_KEY is set
            except duckdb.IOException as error:
                if not _is_file_lock_error(error):
                    raise
                if time.monotonic() >= deadline:
                    raise WarehouseError(
                        f"the warehouse {self.path} stayed locked by another process for {self.lock_wait_s:.0f} s "
                        f"({str(error).strip()}); close the program that opened it (BI tools read the "
                        "serving store, not the build warehouse), then run again",
                        self.path,
                    ) from None
                self._waits += 1
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
