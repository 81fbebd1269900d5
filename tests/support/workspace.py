"""A data dir of its own for a test, and the real `cdp` command run in it, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_AS_OF = "2026-06-30"


@dataclass(frozen=True)
class Workspace:
    data_dir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    # The project `cdp` runs from (its cdp/, dbt_project/, data_contracts/): a copy for a test that adds
    # a source or a trait as a user would, by editing their clone.
    project_root: Path = PROJECT_ROOT

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
            # `python -m cdp.cli` imports the packages of the project it runs in (a copy's, when given).
            **({"PYTHONPATH": str(self.project_root)} if self.project_root != PROJECT_ROOT else {}),
            **self.env_overrides,
        }

    def cdp(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `cdp ARGS` as a user would; fail the test with its output when it fails."""
        result = subprocess.run(
            [sys.executable, "-m", "cdp.cli", *args],
            cwd=self.project_root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1800,  # a safety net for a hung command; a run on a loaded machine can take 15 min
        )
        if result.returncode != 0:
            pytest.fail(
                f"`cdp {' '.join(args)}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-5000:]}\nstderr:\n{result.stderr[-5000:]}"
            )
        return result


def start_cdp(workspace: Workspace, *args: str, **popen) -> subprocess.Popen:
    """`cdp ARGS` in the background, in its own process group (so a kill reaches dbt's subprocess too)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cdp.cli", *args],
        cwd=workspace.project_root,
        env=workspace.env,
        start_new_session=True,
        **popen,
    )


def wait_for_text(path: Path, text: str, process: subprocess.Popen | None = None, timeout_s: float = 600) -> None:
    """Until `path` contains `text` (a state the test needs), failing if the process ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process ended (exit {process.returncode}) before {path} said {text!r}")
        time.sleep(0.05)
    pytest.fail(f"{path} did not say {text!r} within {timeout_s} s")


def kill_group_and_wait_for_the_lock(process: subprocess.Popen, warehouse: Path, timeout_s: float = 120) -> None:
    """SIGKILL the process group, then wait until the warehouse can be opened again: every process
    of the group, dbt's included, has let go of it."""
    import duckdb

    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            duckdb.connect(str(warehouse), read_only=True).close()
            return
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
