"""Run the pipeline: generate demo data, load, run, summary."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import time
from pathlib import Path

import click

from cdp import progress
from cdp.cli.app import main, writes_warehouse
from cdp.settings import as_of_instant, current_paths
from cdp.warehouse import open_warehouse


@main.command()
@click.option("--people", default=5000, show_default=True, help="Number of simulated people.")
@click.option("--seed", default=42, show_default=True, help="Random seed (same seed, same files).")
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Last day of the simulated history (default: today, UTC).",
)
@click.option(
    "--dirty-duplicates",
    is_flag=True,
    help="Scenario: CRM contacts entered twice or more with typos and no shared identifier; loyalty members "
    "with birth date and address, many without email or phone.",
)
@click.option(
    "--hard-negatives",
    is_flag=True,
    help="Scenario: different people who look alike (households sharing address, landline, surname and "
    "some an email; twins; namesakes).",
)
def generate(
    people: int, seed: int, as_of: dt.datetime | None, dirty_duplicates: bool = False, hard_negatives: bool = False
) -> None:
    """Write the demo landing files and their ground truth into the data dir."""
    from cdp.demo.generator import generate_demo

    paths = current_paths()
    started = time.perf_counter()
    summary = generate_demo(
        paths.data_dir,
        people=people,
        seed=seed,
        as_of=as_of.date() if as_of else None,
        dirty_duplicates=dirty_duplicates,
        hard_negatives=hard_negatives,
    )
    click.echo(
        f"Generated demo data for {people:,} people in {time.perf_counter() - started:.1f} s "
        f"under {paths.landing_dir} ({sum(summary.row_counts.values()):,} rows)."
    )


@main.command()
@click.option(
    "--skip-unchanged/--no-skip-unchanged",
    default=True,
    show_default=True,
    help="Do nothing when nothing a run depends on changed since the last complete run (no new or changed "
    "landing file, the same project and as-of day, the warehouse and serving store as that run left them); "
    "--no-skip-unchanged runs every step all the same.",
)
@click.option(
    "--full-refresh",
    is_flag=True,
    help="Rebuild every incremental dbt model from raw (dbt's --full-refresh; never skipped); identity's stable "
    "profile ids and the append-only segment histories are kept.",
)
@writes_warehouse("cdp run", needs_landing=True)
def run(skip_unchanged: bool = True, full_refresh: bool = False) -> None:
    """Run the whole pipeline (the job the daily schedule runs) and print a summary; a run with nothing new
    since the last complete one does nothing."""
    _run_pipeline_and_report(skip_unchanged=skip_unchanged and not full_refresh, full_refresh=full_refresh)


@main.command()
@click.option("--people", default=5000, show_default=True, help="Number of simulated people.")
@click.option("--seed", default=42, show_default=True)
@click.pass_context
@writes_warehouse("cdp demo")
def demo(ctx: click.Context, people: int, seed: int) -> None:
    """Generate the demo data (unless it exists already) and run the whole pipeline on it. A new demo
    also plays its campaigns: the pipeline runs as of four weeks earlier, when the demo campaigns are
    sent, the simulated people who received them respond, then it runs as of the demo's day."""
    paths = current_paths()
    if not any(paths.landing_dir.glob("*/*/*")):
        as_of = as_of_instant().date() - dt.timedelta(days=1)  # CDP_AS_OF, else today
        ctx.invoke(generate, people=people, seed=seed, as_of=dt.datetime.combine(as_of, dt.time()))
        _play_demo_campaigns(as_of, seed)
    _run_pipeline_and_report()
    _campaign_lines()


def _play_demo_campaigns(as_of: dt.date, seed: int) -> None:
    """The pipeline as of the launch day (the demo campaigns are sent), the people's responses to what
    reached them, then the caller runs it as of the demo's day: the steps `cdp run` and
    `cdp generate-responses` under CDP_AS_OF, as the README lists them."""
    from cdp.demo.campaigns import launch_day

    launch = launch_day(as_of)
    click.echo(f"\nCampaign launch: the pipeline as of {launch}, when the demo campaigns are sent.")
    with _as_of(launch):
        _run_pipeline_and_report()
        _write_campaign_responses(seed)
    click.echo(f"\nFour weeks later: the pipeline as of {as_of}.")


@main.command("generate-responses")
@click.option("--seed", default=42, show_default=True, help="Random seed (same seed, same files).")
def generate_responses(seed: int) -> None:
    """Let the demo's simulated people respond to the demo campaigns that reached them (read from the
    campaign syncs' destination files): extra web-shop orders as new landing files, from the end of the
    CDP_AS_OF day on (else from now), and their ground truth in truth/. `cdp demo` runs it after sending."""
    _write_campaign_responses(seed)


def _write_campaign_responses(seed: int) -> None:
    from cdp.demo.campaigns import read_deliveries, write_campaign_responses

    paths = current_paths()
    exposed_at = (
        as_of_instant() if os.environ.get("CDP_AS_OF") else dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    )
    responses = write_campaign_responses(paths.data_dir, exposed_at, read_deliveries(paths.destinations_dir), seed=seed)
    for campaign, reached in responses.receivers.items():
        click.echo(
            f"campaign {campaign:<22} reached {reached:,} people; {responses.responders[campaign]:,} bought once "
            "more because of it (ground truth: truth/campaign_responses.csv)"
        )


@contextlib.contextmanager
def _as_of(day: dt.date):
    """Run as of `day` (CDP_AS_OF), then restore what was set."""
    previous = os.environ.get("CDP_AS_OF")
    os.environ["CDP_AS_OF"] = day.isoformat()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CDP_AS_OF", None)
        else:
            os.environ["CDP_AS_OF"] = previous


def _campaign_lines() -> None:
    from cdp.campaigns.report import campaign_summary_lines

    for line in campaign_summary_lines(current_paths().warehouse):
        click.echo(line)


def _run_pipeline_and_report(skip_unchanged: bool = False, full_refresh: bool = False) -> None:
    from cdp.run_fingerprint import unchanged_since_last_run

    paths = current_paths()
    for problem in _prepare_definitions():
        click.echo(f"warning: {problem}", err=True)
    if skip_unchanged:
        last = unchanged_since_last_run(paths)  # the prepared manifest stands for every model and audience
        if last is not None:
            click.echo(
                f"Nothing new since run {last.run_id} (same landing files, project, as-of day and warehouse): "
                "nothing loaded, built, scored, synced or published; the serving store still holds that run. "
                "`cdp run --no-skip-unchanged` runs every step all the same."
            )
            return
    from cdp.summary import pipeline_summary
    from orchestration.pipeline import run_pipeline

    started = time.perf_counter()
    outcome = run_pipeline(full_refresh=full_refresh)
    elapsed = time.perf_counter() - started
    if not outcome.success:
        # The reasons first: the failing model, test, check or step and its message; then where the log is.
        click.echo(f"error: pipeline run {outcome.run_id} failed:", err=True)
        for line in outcome.failures:
            click.echo(f"  {line}", err=True)
        if outcome.skipped_steps:
            shown = ", ".join(outcome.skipped_steps[:8]) + (" ..." if len(outcome.skipped_steps) > 8 else "")
            click.echo(f"  {len(outcome.skipped_steps)} step(s) skipped because of it: {shown}", err=True)
        click.echo(
            f"full log: {outcome.log_path}; the run in the Dagster UI (`cdp dagster`): {outcome.run_id}", err=True
        )
    click.echo(pipeline_summary(paths.warehouse, outcome.run_id))
    _model_warnings(paths.warehouse, outcome.run_id)
    click.echo(_publication_line(paths.serving_store, outcome.run_id))
    click.echo(f"Pipeline run {outcome.run_id} {'finished' if outcome.success else 'failed'} in {elapsed:.1f} s.")
    _remember_run(paths, outcome.run_id, outcome.success)
    if not outcome.success:
        sys.exit(1)


def _remember_run(paths, run_id: str, success: bool) -> None:
    """The fingerprint a `cdp run` compares with (the fast path): only of a run that succeeded and delivered
    every row it tried (a pending retry must run)."""
    from cdp.run_fingerprint import remember_run, syncs_delivered_everything

    complete = success and paths.warehouse.exists()
    if complete:
        with open_warehouse(paths.warehouse, read_only=True) as con:
            complete = syncs_delivered_everything(con, run_id)
    remember_run(paths, run_id, complete)


def _model_warnings(warehouse: Path, run_id: str) -> None:
    """Models this run could not train (too little data) were skipped, not failed: say so."""
    from cdp.predictive.run import run_warnings

    if not warehouse.exists():
        return
    with open_warehouse(warehouse, read_only=True) as con:
        for line in run_warnings(con, run_id):
            click.echo(line, err=True)


def _prepare_definitions() -> list[str]:
    """The YAML audiences compiled into dbt models and the project parsed when stale (once per process), and
    the campaigns checked: what is invalid is skipped alone and named here."""
    from cdp.campaigns import load_campaigns
    from cdp.dbt import prepare_manifest

    broken: dict = {}
    prepare_manifest(broken_audiences=broken)
    campaigns: dict = {}
    load_campaigns(broken=campaigns)  # a wrong campaign is left out of the analytics; the others are measured
    return [f"audience {name} is skipped: {error}" for name, error in sorted(broken.items())] + [
        f"campaign {name} is skipped: {error}" for name, error in sorted(campaigns.items())
    ]


def _publication_line(store: Path, run_id: str) -> str:
    from cdp.serving.publish import latest_publication

    latest = latest_publication(store)
    if latest is None:
        return f"serving store: nothing published yet at {store}"
    if latest["run_id"] != run_id:
        return (
            f"serving store: {store} still holds run {latest['run_id']} "
            f"(published {latest['published_at']:%Y-%m-%d %H:%M} UTC); this run published nothing"
        )
    skipped = (latest.get("checks") or {}).get("skipped_definitions") or []
    line = f"serving store: {store} (published in {latest['publish_seconds']:.1f} s; BI tools and `cdp serve` read it)"
    return "\n".join([line, *(f"  published without {item}" for item in skipped)])


@main.command()
@click.option(
    "--expectations/--no-expectations",
    default=True,
    show_default=True,
    help="Also validate each file with the contract's Great Expectations suite.",
)
@writes_warehouse("cdp load", needs_landing=True)
def load(expectations: bool) -> None:
    """Load new landing files of every source into raw tables (rejects go to quarantine)."""
    import uuid

    import data_contracts

    paths = current_paths()
    load_id = f"cli-{uuid.uuid4().hex[:12]}"
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    contracts = list(data_contracts.load_contracts().values())
    with progress.live("cdp load", steps=len(contracts)), open_warehouse(paths.warehouse) as con:
        for contract in contracts:
            progress.step_started(f"load {contract.name}")
            data_contracts.ensure_tables(con, contract)
            report = data_contracts.load_table(
                con, contract, paths.landing_dir, load_id=load_id, run_expectations=expectations
            )
            click.echo(
                f"{contract.name:<28} read {report.rows_read:>10,}  accepted {report.rows_accepted:>10,}  "
                f"quarantined {report.rows_quarantined:>7,}"
                + (f"  suppressed {report.rows_suppressed:>5,}" if report.rows_suppressed else "")
            )
            for problem in report.errors + report.expectation_failures:
                click.echo(f"  {problem}", err=True)
            for failing in report.blocking_files:
                click.echo(f"  blocks until fixed or accepted (cdp quarantine status): {failing.describe()}", err=True)


@main.command()
def summary() -> None:
    """Print what the warehouse holds now."""
    from cdp.summary import pipeline_summary

    click.echo(pipeline_summary(current_paths().warehouse, run_id=None))
