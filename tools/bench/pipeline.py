"""`cdp bench`: the pipeline on N generated people beside the single-pass floor measured in the same run.

By default the real `cdp run` (every Dagster step, timed from the run's events), a run after the next
delivery of about 1% more records (cdp/demo/generator.py generate_delivery) and a rerun with nothing new; with --stages, each layer as its own process, so its peak resident memory (from wait4)
is its own: the generator, the loader, each dbt layer and the syncs.
"""

from __future__ import annotations

import datetime as dt
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


def profiled_run(env: dict[str, str], work_dir: Path, label: str, *run_args: str) -> tuple[dict, float]:
    """`cdp run [run_args]` as its own process under tools/bench/run_profile.py: its figures and its peak RSS
    (MiB, dbt's subprocesses included: wait4 reports the largest of the process tree)."""
    out = work_dir / f"{label}.json"
    command = [sys.executable, "-m", "tools.bench.run_profile", "--json", str(out), "--", "run", *run_args]
    _, peak, _ = run_measured(command, env)
    return json.loads(out.read_text()), peak


DELIVERY_SHARE = 0.01
AFTER_FULL_RUN = "serving-after-full-run"


def run_pipeline_benchmark(people: int, keep: bool = False, echo: Callable[[str], None] = print) -> dict:
    """`cdp bench`: the real `cdp run` (every Dagster step) on N generated people, then the next delivery
    (`cdp generate --delivery 0.01`: about 1% more records) and a run as of its last day, then a rerun with
    nothing new; every step beside the single-pass floor, measured in the same run over all the data (after
    the delivery)."""
    from cdp.demo.generator import generate_delivery

    data_dir = Path(tempfile.mkdtemp(prefix=f"cdp-bench-{people}-"))
    env = _bench_env(data_dir)
    try:
        echo(f"cdp bench: {people:,} people, as of {BENCH_AS_OF}, data in {data_dir}; load average {_load()}")
        generate_s, _, _ = run_measured(_stages(people)[0][1], env)
        runs: dict[str, tuple[dict, float]] = {"full": profiled_run(env, data_dir, "full")}
        if keep:  # the full run's publication, for publication_pairs (a publication after the delivery)
            shutil.copytree(data_dir / "serving", data_dir / AFTER_FULL_RUN)
        started = time.perf_counter()
        delivery = generate_delivery(
            data_dir, people=people, as_of=dt.date.fromisoformat(BENCH_AS_OF), share=DELIVERY_SHARE
        )
        delivery_s = time.perf_counter() - started
        floor_s, rows = single_pass_floor(data_dir / "landing", data_dir)
        delivered = sum(delivery.row_counts.values())
        echo(
            f"generate {generate_s:.1f} s; delivery {delivery_s:.1f} s: {delivered:,} rows ({delivered / (rows - delivered):.2%} "
            f"more; {delivery.new_people:,} new people, {delivery.updated_contacts:,} CRM contacts moved, "
            f"{delivery.days} days of behaviour, as of {delivery.as_of}); single-pass floor {floor_s:.2f} s over "
            f"{rows:,} landing rows"
        )
        next_env = {**env, "CDP_AS_OF": delivery.as_of.isoformat()}
        runs["1% more"] = profiled_run(next_env, data_dir, "one_percent_more")
        runs["nothing new"] = profiled_run(next_env, data_dir, "nothing_new")  # `cdp run`: skipped
        runs["every step"] = profiled_run(next_env, data_dir, "nothing_new_every_step", "--no-skip-unchanged")
        for line in step_table(runs, floor_s):
            echo(line)
        full_s = runs["full"][0]["total_s"]
        for name, (figures, peak) in runs.items():
            echo(
                f"{name}: {figures['total_s']:.1f} s = {figures['total_s'] / floor_s:.0f}x the floor"
                + (f" = {figures['total_s'] / full_s:.0%} of the full run" if name != "full" else "")
                + f", peak RSS {peak:,.0f} MiB; dbt invocations {figures['dbt_invocations']}, manifest preparations "
                f"{figures.get('prepare_manifest_calls', 0)}, label refreshes {figures.get('refresh_column_labels_calls', 0)} "
                f"({figures.get('refresh_column_labels_s', 0):.1f} s)"
            )
        if runs["nothing new"][0].get("skipped"):
            echo(
                "nothing new: `cdp run` found nothing new since the last complete run and skipped every step; "
                "every step: the same rerun with --no-skip-unchanged"
            )
        echo(f"load average at the end {_load()}")
        return {
            "floor_s": floor_s,
            "rows": rows,
            "delivery_rows": delivered,
            **{name: figures for name, (figures, _) in runs.items()},
        }
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def step_table(runs: dict[str, tuple[dict, float]], floor_s: float) -> list[str]:
    """One row per Dagster step (in the order the runs met them), a column of seconds per run; then the
    totals and their ratios to the floor."""
    seconds = {name: dict(figures["steps"]) for name, (figures, _) in runs.items()}
    steps = list(dict.fromkeys(step for figures, _ in runs.values() for step, _ in figures["steps"]))
    lines = [f"{'step (wall s)':<52}" + "".join(f"{name:>13}" for name in runs)]
    for step in steps:
        cells = [seconds[name].get(step) for name in runs]
        lines.append(f"{step[:51]:<52}" + "".join(f"{c:>13.2f}" if c is not None else f"{'-':>13}" for c in cells))
    lines.append(f"{'whole run':<52}" + "".join(f"{figures['total_s']:>13.1f}" for figures, _ in runs.values()))
    lines.append(
        f"{'x the floor':<52}" + "".join(f"{figures['total_s'] / floor_s:>13.1f}" for figures, _ in runs.values())
    )
    return lines


def publication_pairs(data_dir: Path, repeats: int = 3, echo: Callable[[str], None] = print) -> dict:
    """Publication with and without keeping unchanged tables, paired, on a data dir kept by
    `cdp bench --keep`: its warehouse (after the nothing-new run) published over a copy of the last
    publication (a publication with nothing new) and over a copy of the full run's (a publication after
    the 1% delivery). Alternating A B per repeat; medians."""
    import statistics

    from cdp.serving.publish import publish

    warehouse = data_dir / "warehouse.duckdb"
    cases = {"nothing new": data_dir / "serving", "1% more": data_dir / AFTER_FULL_RUN}
    figures: dict[str, dict[str, list]] = {}
    echo(f"publication pairs on {data_dir}; load average {_load()}")
    for case, previous in cases.items():
        runs: dict[str, list] = {"copy all": [], "keep unchanged": []}
        for repeat in range(repeats):
            for label, reuse in (("copy all", False), ("keep unchanged", True)):
                scratch = data_dir / "publication-pair"
                shutil.rmtree(scratch, ignore_errors=True)
                shutil.copytree(previous, scratch)  # the previous store, its read model and masking key
                publication = publish(warehouse, scratch / "published.duckdb", run_id=f"pair-{repeat}", reuse=reuse)
                runs[label].append(publication)
        shutil.rmtree(data_dir / "publication-pair", ignore_errors=True)
        figures[case] = runs
        medians = {label: statistics.median(p.seconds for p in pubs) for label, pubs in runs.items()}
        kept = runs["keep unchanged"][0]
        steps = {
            label: ", ".join(
                f"{step} {statistics.median(p.step_seconds[step] for p in pubs):.2f}" for step in pubs[0].step_seconds
            )
            for label, pubs in runs.items()
        }
        echo(
            f"{case}: copy all {medians['copy all']:.2f} s ({steps['copy all']}); keep unchanged "
            f"{medians['keep unchanged']:.2f} s ({steps['keep unchanged']}) = {medians['keep unchanged'] / medians['copy all']:.2f}x; "
            f"kept {len(kept.kept_tables)} of {len(kept.row_counts) - 2} tables, read model "
            f"{'reused' if kept.read_model_reused else 'rendered'}; store {runs['copy all'][0].store_bytes / 2**20:.1f} "
            f"vs {kept.store_bytes / 2**20:.1f} MiB; medians of {repeats}"
        )
    echo(f"load average at the end {_load()}")
    return figures


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


if __name__ == "__main__":
    # python -m tools.bench.pipeline --publication-pairs <data dir kept by cdp bench --keep> [repeats]
    if sys.argv[1:2] != ["--publication-pairs"] or len(sys.argv) < 3:
        raise SystemExit("usage: python -m tools.bench.pipeline --publication-pairs DATA_DIR [REPEATS]")
    publication_pairs(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 3)
