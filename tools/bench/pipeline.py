"""`cdp bench`: the pipeline on N generated people beside the single-pass floor measured in the same run.

By default the real `cdp run` (every Dagster step, timed from the run's events) and a rerun with
nothing new; with --stages, each layer as its own process, so its peak resident memory (from wait4)
is its own: the generator, the loader, each dbt layer and the syncs.
"""

from __future__ import annotations

import json
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
from cdp.settings import DBT_PROJECT_DIR, PROJECT_ROOT

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


def floor_sources(landing_dir: Path, contracts: dict) -> list[tuple[str, str, str]]:
    """(table, person key column, DuckDB reader over every landing file of the table) per contract. The
    person key: the table's first identity column (labels I1/I2), else its first primary-key column."""
    readers = {
        # The delivery's dialect stated, not sniffed: a few malformed rows (the demo plants them) made the
        # sniffer fall back to one column. Rows that do not parse are skipped: the floor only reads.
        ".csv": "read_csv({files}, delim = ',', quote = '\"', header = true, all_varchar = true, "
        "union_by_name = true, strict_mode = false, null_padding = true, ignore_errors = true)",
        ".jsonl": "read_json({files}, format = 'newline_delimited', union_by_name = true)",
        ".parquet": "read_parquet({files}, union_by_name = true)",
    }
    sources = []
    for name, contract in sorted(contracts.items()):
        folder = landing_dir / contract.source / contract.table
        by_suffix: dict[str, list[str]] = {}
        for path in sorted(folder.glob("*")):
            if path.suffix in readers:
                by_suffix.setdefault(path.suffix, []).append(str(path))
        if not by_suffix:
            continue
        key = next(
            (column.name for column in contract.columns.values() if {"I1", "I2"} & set(column.labels)),
            contract.primary_key[0],
        )
        selects = [
            f"select cast({key} as varchar) as person_key from {reader.format(files=files)}"
            for suffix, files in sorted(by_suffix.items())
            for reader in [readers[suffix]]
        ]
        sources.append((name, key, " union all ".join(selects)))
    return sources


def single_pass_floor(landing_dir: Path, work_dir: Path) -> tuple[float, int]:
    """The floor a run is measured against (issue 20): one DuckDB pass that reads every landing file and
    writes one aggregate row per person key, into a DuckDB file. Returns (seconds, rows read)."""
    import duckdb

    import data_contracts

    sources = floor_sources(landing_dir, data_contracts.load_contracts())
    database = work_dir / "floor.duckdb"
    database.unlink(missing_ok=True)
    started = time.perf_counter()
    with duckdb.connect(str(database)) as con:
        for name, _, reader in sources:
            con.execute(
                f"create table {name} as select person_key, count(*) as row_count from ({reader}) group by person_key"
            )
        rows = sum(con.execute(f"select sum(row_count) from {name}").fetchone()[0] or 0 for name, _, _ in sources)
    seconds = time.perf_counter() - started
    database.unlink(missing_ok=True)
    return seconds, int(rows)


def profiled_run(env: dict[str, str], work_dir: Path, label: str) -> tuple[dict, float]:
    """`cdp run` as its own process under tools/bench/run_profile.py: its figures and its peak RSS (MiB, dbt's
    subprocesses included: wait4 reports the largest of the process tree)."""
    out = work_dir / f"{label}.json"
    _, peak, _ = run_measured([sys.executable, "-m", "tools.bench.run_profile", "--json", str(out)], env)
    return json.loads(out.read_text()), peak


def run_pipeline_benchmark(people: int, keep: bool = False, echo: Callable[[str], None] = print) -> dict:
    """`cdp bench`: the floor, then the real `cdp run` (every Dagster step) and a rerun with nothing new,
    each step beside the floor measured in the same run."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"cdp-bench-{people}-"))
    env = _bench_env(data_dir)
    try:
        echo(f"cdp bench: {people:,} people, as of {BENCH_AS_OF}, data in {data_dir}; load average {_load()}")
        generate_s, _, _ = run_measured(_stages(people)[0][1], env)
        floor_s, rows = single_pass_floor(data_dir / "landing", data_dir)
        echo(f"generate {generate_s:.1f} s; single-pass floor {floor_s:.2f} s over {rows:,} landing rows")
        full, full_peak = profiled_run(env, data_dir, "full")
        rerun, rerun_peak = profiled_run(env, data_dir, "nothing_new")
        rerun_steps = dict(rerun["steps"])
        echo(f"{'step':<52}{'full s':>9}{'x floor':>9}{'rerun s':>9}{'x floor':>9}")
        for step, seconds in full["steps"]:
            again = rerun_steps.get(step)
            echo(
                f"{step[:51]:<52}{seconds:>9.2f}{seconds / floor_s:>9.1f}"
                + (f"{again:>9.2f}{again / floor_s:>9.1f}" if again is not None else f"{'-':>9}{'-':>9}")
            )
        for name, figures, peak in (("full run", full, full_peak), ("nothing new", rerun, rerun_peak)):
            echo(
                f"{name}: {figures['total_s']:.1f} s = {figures['total_s'] / floor_s:.0f}x the floor, peak RSS "
                f"{peak:,.0f} MiB; dbt invocations {figures['dbt_invocations']}, manifest preparations "
                f"{figures.get('prepare_manifest_calls', 0)}, label refreshes {figures.get('refresh_column_labels_calls', 0)} "
                f"({figures.get('refresh_column_labels_s', 0):.1f} s)"
            )
        echo(f"load average at the end {_load()}")
        return {"floor_s": floor_s, "rows": rows, "full": full, "nothing_new": rerun}
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _bench_env(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CDP_DATA_DIR": str(data_dir),
        "CDP_WAREHOUSE": str(data_dir / "warehouse.duckdb"),
        "CDP_SERVING_STORE": str(data_dir / "serving" / "published.duckdb"),
        "CDP_AS_OF": BENCH_AS_OF,
        "CDP_PROGRESS": "0",  # the stages' own displays would fight the benchmark's
        "CDP_RUN_PRIORITY": "normal",  # measured as a run at its own priority, not yielding to an API
        # tools.bench.run_profile is imported from the source checkout.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }


def run_benchmark(people: int, keep: bool = False, echo: Callable[[str], None] = print) -> list[StageFigures]:
    """`cdp bench --stages`: each layer as its own process, so each one's peak RSS is its own."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"cdp-bench-{people}-"))
    env = _bench_env(data_dir)
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
