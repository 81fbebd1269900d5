"""Per-model `dbt build` timings for a full run, a run after 1% more data and a run with nothing new.

    python -m tools.bench.dbt_models --people 10000 [--keep DIR]

On N generated people (as of 2026-06-30), 1% of the rows of every landing file (a seeded random
sample) is held back as the next delivery. The rest is loaded and built once untimed, then three builds
are timed, each one `dbt build` of the project (unit tests excluded, as the scheduled run does; the
models reading the predictions and sync ledgers excluded, EXCLUDED):

- full:         `dbt build --full-refresh`, every derived table recomputed from raw;
- 1% more:      the held-back rows delivered and loaded (`cdp load`, not timed), then `dbt build`;
- nothing new:  `dbt build` again.

It prints each build's wall time and dbt's own per-model execution times (run_results.json) side by
side, the slowest models of the full build first, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from cdp.settings import DBT_PROJECT_DIR

BENCH_AS_OF = "2026-06-30"
DELIVERY_SHARE = 0.01
# What reads the predictions and the sync ledgers (written by `cdp predict` and the syncs, not by dbt):
# left out, so the bench needs no whole `cdp run` first.
EXCLUDED = ("source:predictions+", "source:activation+")


def hold_back(landing: Path, delivery: Path, share: float, seed: int) -> int:
    """Move `share` of the rows of every landing file to a file of the same name under `delivery`
    (csv and jsonl line by line, keeping a csv header in both; parquet by row). Returns rows moved."""
    rng = random.Random(seed)
    moved = 0
    for path in sorted(landing.glob("*/*/*")):
        target = delivery / path.relative_to(landing)
        target.parent.mkdir(parents=True, exist_ok=True)
        target = target.with_name(f"delivery_{target.name}")
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            picked = [rng.random() < share for _ in range(frame.height)]
            mask = pl.Series(picked)
            frame.filter(~mask).write_parquet(path)
            frame.filter(mask).write_parquet(target)
            moved += sum(picked)
            continue
        lines = path.read_text().splitlines(keepends=True)
        header = lines[:1] if path.suffix == ".csv" else []
        body = lines[len(header) :]
        keep, held = [], []
        for line in body:
            (held if rng.random() < share else keep).append(line)
        path.write_text("".join(header + keep))
        target.write_text("".join(header + held))
        moved += len(held)
    return moved


def deliver(delivery: Path, landing: Path) -> None:
    for path in sorted(delivery.glob("*/*/*")):
        shutil.copy(path, landing / path.relative_to(delivery))


def run(command: list[str], env: dict[str, str], check: bool = True) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if check and result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return seconds


def dbt(target: Path, *args: str) -> list[str]:
    executable = Path(sys.executable).with_name("dbt")
    return [
        str(executable),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target),
        "--quiet",
    ]


def model_timings(target: Path) -> dict[str, float]:
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {
        r["unique_id"].split(".", 2)[-1]: r["execution_time"]
        for r in results
        if r["unique_id"].startswith(("model.", "snapshot.", "seed."))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--top", type=int, default=25, help="models listed (slowest of the full build)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix=f"cdp-dbt-models-{args.people}-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir, target = work / "data", work / "target"
    env = {
        **os.environ,
        "CDP_DATA_DIR": str(data_dir),
        "CDP_WAREHOUSE": str(data_dir / "warehouse.duckdb"),
        "CDP_AS_OF": BENCH_AS_OF,
        "CDP_PROGRESS": "0",
    }
    python = [sys.executable, "-m", "cdp.cli"]
    print(f"dbt models bench: {args.people:,} people in {work}", flush=True)
    run([*python, "generate", "--people", str(args.people), "--seed", str(args.seed), "--as-of", BENCH_AS_OF], env)
    moved = hold_back(data_dir / "landing", work / "delivery", DELIVERY_SHARE, args.seed)
    print(f"held back {moved:,} rows as the next delivery", flush=True)
    run([*python, "load"], env, check=False)
    build = ["build", "--exclude-resource-type", "unit_test", "--exclude", *EXCLUDED]
    run(dbt(target, *build), env)  # untimed: the first build creates every table

    builds: dict[str, tuple[float, dict[str, float]]] = {}
    seconds = run(dbt(target, *build, "--full-refresh"), env)
    builds["full"] = (seconds, model_timings(target))
    deliver(work / "delivery", data_dir / "landing")
    run([*python, "load"], env, check=False)
    seconds = run(dbt(target, *build), env)
    builds["1% more"] = (seconds, model_timings(target))
    seconds = run(dbt(target, *build), env)
    builds["nothing new"] = (seconds, model_timings(target))

    names = list(builds)
    full = builds["full"][1]
    print(f"\nload average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'dbt build (wall s)':<44}" + "".join(f"{n:>13}" for n in names))
    print(f"{'whole build':<44}" + "".join(f"{builds[n][0]:>13.2f}" for n in names))
    print(f"{'sum of model times':<44}" + "".join(f"{sum(builds[n][1].values()):>13.2f}" for n in names))
    print(f"{'ratio to full':<44}" + "".join(f"{builds[n][0] / builds['full'][0]:>13.3f}" for n in names))
    for model in sorted(full, key=full.get, reverse=True)[: args.top]:
        print(f"{model:<44}" + "".join(f"{builds[n][1].get(model, float('nan')):>13.2f}" for n in names))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
