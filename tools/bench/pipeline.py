"""`cdp bench`: per-stage wall time and peak memory of the pipeline on N generated people.

Each stage runs as its own process, so its peak resident memory (from wait4) is its own: the
generator, the loader, each dbt layer and the syncs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cdp import progress
from cdp.settings import DBT_PROJECT_DIR

BENCH_AS_OF = "2026-06-30"
# The pipeline's last step, as the serving/publication asset runs it (without the run's check record).
PUBLISH = (
    "from cdp.serving.publish import publish; from cdp.settings import current_paths; "
    "paths = current_paths(); publish(paths.warehouse, paths.serving_store, run_id='bench')"
)


@dataclass(frozen=True)
class StageFigures:
    stage: str
    seconds: float
    peak_rss_mib: float


def _dbt(*args: str) -> list[str]:
    dbt = Path(sys.executable).with_name("dbt")
    return [str(dbt), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--quiet"]


def _stages(people: int) -> list[tuple[str, list[str]]]:
    python = sys.executable
    return [
        ("generate", [python, "-m", "cdp.cli", "generate", "--people", str(people), "--as-of", BENCH_AS_OF]),
        ("load (contracts + raw)", [python, "-m", "cdp.cli", "load"]),
        ("dbt seeds", _dbt("build", "--select", "resource_type:seed")),
        ("dbt staging + xdm", _dbt("build", "--select", "path:models/staging", "path:models/xdm")),
        ("dbt identity", _dbt("build", "--select", "path:models/identity")),
        (
            "dbt profiles",
            _dbt(
                "build",
                "--select",
                "path:models/profiles",
                "--exclude",
                "profile_predictions",
                "--exclude-resource-type",
                "unit_test",
            ),
        ),
        ("dbt snapshots", _dbt("build", "--select", "resource_type:snapshot")),
        (
            "dbt segments",
            _dbt(
                "build",
                "--select",
                "path:models/segments",
                "--exclude",
                "seg_lookalike_high_value",
                "seg_likely_buyers",
                # with its children (segment_membership_history, segment_sizes): they read it
                "segment_memberships+",
            ),
        ),
        ("predictions (train+score)", [python, "-m", "cdp.cli", "predict", "--retrain"]),
        (
            "dbt predictive layer",
            _dbt(
                "build",
                "--select",
                "profile_predictions",
                "seg_lookalike_high_value",
                "seg_likely_buyers",
                "segment_memberships+",
            ),
        ),
        ("activation (syncs)", [python, "-m", "cdp.cli", "sync"]),
        ("publish (serving store)", [python, "-c", PUBLISH]),
    ]


def run_measured(command: list[str], env: dict[str, str] | None) -> tuple[float, float, str]:
    """Run a command as its own process: wall seconds, its peak resident MiB (from wait4) and its
    stdout. Output goes through files, not pipes: a chatty process cannot block on a full pipe."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"benchmark stage failed: {' '.join(command)}\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout  # ru_maxrss is in KiB on Linux


def run_benchmark(people: int, keep: bool = False, echo: Callable[[str], None] = print) -> list[StageFigures]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"cdp-bench-{people}-"))
    env = {
        **os.environ,
        "CDP_DATA_DIR": str(data_dir),
        "CDP_WAREHOUSE": str(data_dir / "warehouse.duckdb"),
        "CDP_AS_OF": BENCH_AS_OF,
        "CDP_PROGRESS": "0",  # the stages' own displays would fight the benchmark's
    }
    figures = []
    try:
        echo(f"cdp bench: {people:,} people, data in {data_dir}")
        echo(f"{'stage':<26}{'wall s':>10}{'peak RSS MiB':>14}")
        for stage, command in _stages(people):
            progress.step_started(stage)
            seconds, peak, _ = run_measured(command, env)
            figures.append(StageFigures(stage, seconds, peak))
            echo(f"{stage:<26}{seconds:>10.2f}{peak:>14.0f}")
        total = sum(f.seconds for f in figures)
        echo(f"{'total':<26}{total:>10.2f}{max(f.peak_rss_mib for f in figures):>14.0f}")
        build = sum(f.seconds for f in figures[1:-1])  # loading to syncs: what a scheduled run does
        echo(f"publish / build (load..sync): {figures[-1].seconds / build:.3f}")
        warehouse_mib = (data_dir / "warehouse.duckdb").stat().st_size / 2**20
        echo(f"warehouse file: {warehouse_mib:.0f} MiB")
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    return figures
