"""Shared fixtures: a pipeline run in its own data dir, through the real `cdp` command."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_AS_OF = "2026-06-30"


@dataclass(frozen=True)
class Workspace:
    data_dir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def serving_store(self) -> Path:
        return self.data_dir / "serving" / "published.duckdb"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CDP_DATA_DIR": str(self.data_dir),
            "CDP_WAREHOUSE": str(self.warehouse),
            # Set here, not inherited: importing the Dagster definitions exports the default paths.
            "CDP_SERVING_STORE": str(self.serving_store),
            "CDP_AS_OF": DEMO_AS_OF,
            **self.env_overrides,
        }

    def cdp(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `cdp ARGS` as a user would; fail the test with its output when it fails."""
        result = subprocess.run(
            [sys.executable, "-m", "orchestration.cli", *args],
            cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True, timeout=900,
        )
        if result.returncode != 0:
            pytest.fail(f"`cdp {' '.join(args)}` exited {result.returncode}\n"
                        f"stdout:\n{result.stdout[-5000:]}\nstderr:\n{result.stderr[-5000:]}")
        return result


@pytest.fixture(scope="session")
def make_workspace(tmp_path_factory):
    def make(name: str) -> Workspace:
        return Workspace(tmp_path_factory.mktemp(name))
    return make


@pytest.fixture(scope="session")
def runs(make_workspace):
    """Three pipeline runs on a generated dataset, shared by every module (tests/pipeline_runs.py)."""
    from pipeline_runs import build_pipeline_runs

    return build_pipeline_runs(make_workspace("e2e"))


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the session (orchestration/local_postgres.py): installed
    from the OS packages if missing; skipped loudly only if it truly cannot start."""
    from orchestration.local_postgres import LocalPostgres, PostgresUnavailable, wait_until_ready

    server = LocalPostgres()
    try:
        server.start()
        wait_until_ready(server.dsn)
    except PostgresUnavailable as error:
        pytest.skip(f"!!! PostgreSQL could not start, PostgreSQL destination tests NOT RUN: {error}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def destination_server():
    """One HTTP server implementing the webhook, ad audience and email tool APIs, with faults."""
    from destination_servers import DestinationServer

    server = DestinationServer().start()
    yield server
    server.stop()
