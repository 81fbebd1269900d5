"""The `cdp` command line."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import click

from orchestration.database import connect as connect_warehouse
from orchestration.settings import current_paths, export_paths


@click.group()
def main() -> None:
    """Customer Data Platform: load, unify, segment and activate customer data on your warehouse."""
    export_paths(current_paths())


@main.command()
@click.option("--people", default=5000, show_default=True, help="Number of simulated people.")
@click.option("--seed", default=42, show_default=True, help="Random seed (same seed, same files).")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day of the simulated history (default: today, UTC).")
def generate(people: int, seed: int, as_of: dt.datetime | None) -> None:
    """Write the demo landing files and their ground truth into the data dir."""
    from orchestration.demo.generator import generate_demo

    paths = current_paths()
    started = time.perf_counter()
    summary = generate_demo(paths.data_dir, people=people, seed=seed, as_of=as_of.date() if as_of else None)
    click.echo(f"Generated demo data for {people:,} people in {time.perf_counter() - started:.1f} s "
               f"under {paths.landing_dir} ({sum(summary.row_counts.values()):,} rows).")


@main.command()
def run() -> None:
    """Run the whole pipeline (the job the daily schedule runs) and print a summary."""
    _run_pipeline_and_report()


@main.command()
@click.option("--people", default=5000, show_default=True, help="Number of simulated people.")
@click.option("--seed", default=42, show_default=True)
@click.pass_context
def demo(ctx: click.Context, people: int, seed: int) -> None:
    """Generate the demo data (unless it exists already) and run the whole pipeline on it."""
    paths = current_paths()
    if not any(paths.landing_dir.glob("*/*/*")):
        ctx.invoke(generate, people=people, seed=seed, as_of=None)
    _run_pipeline_and_report()


def _run_pipeline_and_report() -> None:
    from orchestration.pipeline import run_pipeline
    from orchestration.summary import pipeline_summary

    paths = current_paths()
    _compile_or_fail()  # YAML audiences -> dbt models, with a readable error for an invalid definition
    started = time.perf_counter()
    outcome = run_pipeline()
    elapsed = time.perf_counter() - started
    click.echo(pipeline_summary(paths.warehouse, outcome.run_id))
    click.echo(_publication_line(paths.serving_store, outcome.run_id))
    click.echo(f"Pipeline run {outcome.run_id} finished in {elapsed:.1f} s.")
    if not outcome.success:
        click.echo(f"The run failed (full log: {outcome.log_path}):", err=True)
        for step in outcome.failed_steps:
            click.echo(f"  step failed: {step}", err=True)
        for check in outcome.failed_checks:
            click.echo(f"  check failed: {check}", err=True)
        sys.exit(1)


def _publication_line(store: Path, run_id: str) -> str:
    from orchestration.serving.publish import latest_publication

    latest = latest_publication(store)
    if latest is None:
        return f"serving store: nothing published yet at {store}"
    if latest["run_id"] != run_id:
        return (f"serving store: {store} still holds run {latest['run_id']} "
                f"(published {latest['published_at']:%Y-%m-%d %H:%M} UTC); this run published nothing")
    return f"serving store: {store} (published in {latest['publish_seconds']:.1f} s; BI tools and `cdp serve` read it)"


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, help="Server processes (each with its own read pool).")
@click.option("--pool-size", default=8, show_default=True, help="Read-only connections per process.")
def serve(host: str, port: int, workers: int, pool_size: int) -> None:
    """Serve the read-only profile API over the serving store (OpenAPI document at /docs)."""
    import os

    import uvicorn

    from orchestration.serving.api import FULL_KEYS_ENV, MASKED_KEYS_ENV, ApiKeys

    keys = ApiKeys.from_env()
    if not keys.full and not keys.masked:
        raise click.UsageError(f"no API keys: set {FULL_KEYS_ENV} (sees direct identifiers) and/or "
                               f"{MASKED_KEYS_ENV} (sees BI-safe masked fields), comma-separated")
    os.environ["CDP_API_POOL_SIZE"] = str(pool_size)
    store = current_paths().serving_store
    click.echo(f"Serving {store} on http://{host}:{port} (OpenAPI: /openapi.json, docs: /docs)")
    uvicorn.run("orchestration.serving.api:app_from_environment", factory=True, host=host, port=port,
                workers=workers, log_level="warning")


@main.command()
@click.option("--expectations/--no-expectations", default=True, show_default=True,
              help="Also validate each file with the contract's Great Expectations suite.")
def load(expectations: bool) -> None:
    """Load new landing files of every source into raw tables (rejects go to quarantine)."""
    import uuid

    import data_contracts

    paths = current_paths()
    load_id = f"cli-{uuid.uuid4().hex[:12]}"
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with connect_warehouse(paths.warehouse) as con:
        for contract in data_contracts.load_contracts().values():
            data_contracts.ensure_tables(con, contract)
            report = data_contracts.load_table(con, contract, paths.landing_dir, load_id=load_id,
                                               run_expectations=expectations)
            click.echo(f"{contract.name:<28} read {report.rows_read:>10,}  accepted {report.rows_accepted:>10,}  "
                       f"quarantined {report.rows_quarantined:>7,}"
                       + (f"  suppressed {report.rows_suppressed:>5,}" if report.rows_suppressed else ""))
            for problem in report.errors + report.expectation_failures:
                click.echo(f"  {problem}", err=True)


@main.command()
@click.argument("names", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Show what would be added, changed and removed; send nothing.")
@click.option("--force", is_flag=True, help="Run even if it would remove more than the spec's guard allows.")
def sync(names: tuple[str, ...], dry_run: bool, force: bool) -> None:
    """Sync audiences to their destinations (all sync specs unless NAMES are given)."""
    import uuid

    import activation

    paths = current_paths()
    specs = activation.load_sync_specs()
    unknown = sorted(set(names) - set(specs))
    if unknown:
        raise click.BadParameter(f"unknown sync {', '.join(unknown)}; known: {', '.join(sorted(specs))}",
                                 param_hint="NAMES")
    run_id = f"cli-{uuid.uuid4().hex[:12]}"
    from orchestration.governance.labels import refresh_column_labels

    aborted = []
    with connect_warehouse(paths.warehouse) as con:
        refresh_column_labels(con)  # what the data-usage policy gate checks the exported fields against
        for name in names or sorted(specs):
            spec = specs[name]
            if dry_run:
                result = activation.run_sync(con, spec, run_id=run_id, base_dir=paths.destinations_dir, dry_run=True)
            else:
                plan = activation.plan_sync(con, spec)
                with click.progressbar(length=plan.to_send, label=f"{name:<28}", show_pos=True,
                                       file=sys.stderr) as bar:
                    try:
                        result = activation.run_sync(con, spec, run_id=run_id, base_dir=paths.destinations_dir,
                                                     force=force, progress=bar.update)
                    except activation.SyncAborted as stop:
                        aborted.append(name)
                        click.echo(f"\n{stop}", err=True)
                        continue
            click.echo(_sync_line(result))
            if dry_run:
                for kind, keys in result.preview.items():
                    if keys:
                        more = getattr(result, kind) - len(keys)
                        click.echo(f"  would be {kind}: {', '.join(keys)}{f' and {more:,} more' if more > 0 else ''}")
                if result.message:
                    click.echo(f"  note: {result.message}")
    if aborted:
        raise SystemExit(f"aborted: {', '.join(aborted)} (nothing sent for them)")


def _sync_line(result) -> str:
    return (f"{result.sync_name:<28} added {result.added:>7,}  changed {result.changed:>7,}  removed {result.removed:>7,}"
            f"  excluded (consent) {result.excluded_consent:>6,}  invalid {result.invalid:>5,}  rejected {result.rejected:>5,}"
            f"  suppressed {result.suppressed:>5,}  sent {result.sent:>7,}  failed {result.failed:>5,}"
            f"  retried {result.retried:>5,}  {result.duration_s:.2f} s"
            f"{'  (dry run: nothing sent)' if result.dry_run else ''}")


@main.group()
def policy() -> None:
    """Data-usage policies (activation/policies/*.yml) over syncs and audiences."""


@policy.command("check")
def policy_check() -> None:
    """List every policy violation of every sync spec and every audience; exit 1 if any."""

    from orchestration.governance.policy_check import check_all

    with connect_warehouse(current_paths().warehouse) as con:
        report = check_all(con)
    for line in report.lines():
        click.echo(line)
    if report.violations:
        sys.exit(1)


@main.group()
def privacy() -> None:
    """Privacy requests (GDPR/CCPA): access and erasure, recorded in audit.privacy_requests."""


def _privacy_identifier(identifier: str) -> str:
    if ":" not in identifier or not identifier.partition(":")[2].strip():
        raise click.BadParameter(f"{identifier!r}: expected <namespace>:<value>, e.g. email:ana@example.com",
                                 param_hint="IDENTIFIER")
    return identifier


@privacy.command("access")
@click.argument("identifier")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the JSON export goes (default: privacy/ in the data dir).")
def privacy_access(identifier: str, output_dir: Path | None) -> None:
    """Export everything held about the person holding IDENTIFIER (<namespace>:<value>) as JSON."""

    from orchestration.governance.privacy import access

    paths = current_paths()
    with connect_warehouse(paths.warehouse) as con:
        outcome = access(con, _privacy_identifier(identifier), output_dir or paths.data_dir / "privacy")
    if not outcome.profile_ids and not outcome.rows:
        click.echo(f"{identifier}: no profile and no row holds this identifier (request {outcome.request_id})")
    click.echo(f"request {outcome.request_id}: {len(outcome.profile_ids)} profile(s), "
               f"{sum(outcome.rows.values()):,} row(s) in {len(outcome.rows)} table(s); export: {outcome.output_file}")


@privacy.command("erase")
@click.argument("identifier")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def privacy_erase(identifier: str, yes: bool) -> None:
    """Erase the person holding IDENTIFIER everywhere: warehouse, destinations, serving store; keep
    their identifiers (hashed) on the suppression list so re-loading the sources does not bring them back."""

    from orchestration.governance.privacy import erase, republish_serving_store

    identifier = _privacy_identifier(identifier)
    if not yes:
        click.confirm(f"Erase every record of {identifier} from the warehouse and every destination?", abort=True)
    paths = current_paths()
    with connect_warehouse(paths.warehouse) as con:
        outcome = erase(con, identifier, base_dir=paths.destinations_dir)
    republished = republish_serving_store(paths.warehouse, paths.serving_store, outcome.request_id)
    if not outcome.profile_ids and not outcome.rows:
        click.echo(f"{identifier}: no profile and no row holds this identifier; it is on the suppression list "
                   "anyway, so a later load cannot bring it in")
    click.echo(f"request {outcome.request_id}: {len(outcome.profile_ids)} profile(s); "
               f"{sum(outcome.rows.values()):,} row(s) deleted from {len(outcome.rows)} table(s) in "
               f"{outcome.seconds:.1f} s; {outcome.suppressed_added} identifier hash(es) added to the suppression list")
    for table, count in sorted(outcome.rows.items()):
        click.echo(f"  {table:<48} {count:>7,}")
    for sync_name, note in sorted(outcome.destinations.items()):
        click.echo(f"  destination of sync {sync_name}: {note['records']} record(s), {note['status']}")
    click.echo(f"  serving store: {'republished without the person' if republished else 'nothing published yet'}")


@main.command()
@click.option("--retrain", is_flag=True, help="Retrain the models first (otherwise the stored ones are used).")
def predict(retrain: bool) -> None:
    """Score every known profile (and the look-alike audience) with the predictive models."""
    import uuid

    from orchestration.predictive import run as predictions
    from orchestration.settings import as_of_instant

    as_of = as_of_instant()
    with connect_warehouse(current_paths().warehouse) as con:
        if retrain or not predictions.latest_models(con):
            for report in predictions.train_and_store(con, as_of, run_id=f"cli-{uuid.uuid4().hex[:12]}"):
                figures = (f"AUC {report['auc']:.3f}, top-decile lift {report['lift_top_decile']:.2f}, "
                           f"base rate {report['base_rate']:.3f}" if report.get("auc") is not None else
                           report.get("message") or f"{report.get('train_rows', 0):,} customers")
                click.echo(f"{report['model_name']:<24} {report['status']:<8} {figures}")
        scores = predictions.score_and_store(con, as_of)
        lookalikes, _ = predictions.lookalikes_and_store(con, as_of)
    click.echo(f"scored {scores.height:,} profiles; {lookalikes.height:,} look-alike candidates")


@main.command()
def summary() -> None:
    """Print what the warehouse holds now."""
    from orchestration.summary import pipeline_summary

    click.echo(pipeline_summary(current_paths().warehouse, run_id=None))


@main.group()
def contracts() -> None:
    """Data contracts: Great Expectations data docs."""


@contracts.command("docs")
def contracts_docs() -> None:
    """Build the Great Expectations data docs of every contract's suite (static HTML)."""
    import data_contracts
    from data_contracts.expectations import build_data_docs

    index = build_data_docs(data_contracts.load_contracts(), current_paths().data_dir / "gx")
    click.echo(f"data docs: {index}")


@contracts.command("dbt-meta")
@click.option("--check", is_flag=True, help="Only report columns whose meta differs from the contracts.")
def contracts_dbt_meta(check: bool) -> None:
    """Write each staging and XDM column's PII class and data-usage labels (dbt meta) from the contracts."""
    from orchestration.dbt_meta import sync_dbt_meta

    differences = sync_dbt_meta(check=check)
    for difference in differences:
        click.echo(difference)
    if check and differences:
        sys.exit(1)
    click.echo(f"{len(differences)} column(s) {'differ' if check else 'updated'}")


@main.group()
def quarantine() -> None:
    """Quarantined rows."""


@quarantine.command("replay")
@click.argument("tables", nargs=-1)
def quarantine_replay(tables: tuple[str, ...]) -> None:
    """Validate quarantined rows again with the current contracts (after a fix); rows that pass move
    to raw. All tables unless TABLES (<source>__<table>) are given."""
    import uuid

    import data_contracts

    all_contracts = data_contracts.load_contracts()
    unknown = sorted(set(tables) - set(all_contracts))
    if unknown:
        raise click.BadParameter(f"no contract for {', '.join(unknown)}; known: {', '.join(all_contracts)}",
                                 param_hint="TABLES")
    from activation.audit import record_event

    replay_id = f"replay-{uuid.uuid4().hex[:12]}"
    with connect_warehouse(current_paths().warehouse) as con:
        for name in tables or sorted(all_contracts):
            report = data_contracts.replay_quarantine(con, all_contracts[name], load_id=replay_id)
            record_event(con, "contract_override", f"quarantine.{name}", "replayed", {
                "replay_id": replay_id, "contract": str(all_contracts[name].path), "rows_replayed": report.rows_read,
                "rows_now_accepted": report.rows_accepted, "rows_still_quarantined": report.rows_quarantined})
            click.echo(f"{name:<28} replayed {report.rows_read:>7,}  now accepted {report.rows_accepted:>7,}  "
                       f"still quarantined {report.rows_quarantined:>7,}")


@main.group()
def profile() -> None:
    """Profiles."""


@profile.command("explain")
@click.argument("first")
@click.argument("second")
def profile_explain(first: str, second: str) -> None:
    """Why FIRST and SECOND (each <namespace>:<normalized value>, e.g. email:ana@x.com) are in one
    profile (the chain of source records), or why not."""

    from orchestration.explain import explain

    for identifier in (first, second):
        if ":" not in identifier:
            raise click.BadParameter(f"{identifier!r}: expected <namespace>:<value>, e.g. email:ana@example.com")
    with connect_warehouse(current_paths().warehouse, read_only=True) as con:
        for line in explain(con, first, second):
            click.echo(line)


@profile.command("show")
@click.argument("identifier")
@click.option("--json", "as_json", is_flag=True, help="Print the profile document as JSON.")
@click.option("--events", default=10, show_default=True, type=click.IntRange(0, 500), help="Recent events to show.")
def profile_show(identifier: str, as_json: bool, events: int) -> None:
    """The profile holding IDENTIFIER (<namespace>:<value>, any identifier: email:ana@x.com,
    phone:+14155550123, cookie_id:...): identities, attributes, consents, traits, predictions,
    segments and recent events, from the last published run."""
    import json

    from orchestration.profile_card import ProfileNotFound, load_profile, render_profile
    from orchestration.serving.documents import InvalidIdentifier

    namespace, _, value = identifier.partition(":")
    if not value:
        raise click.BadParameter(f"{identifier!r}: expected <namespace>:<value>, e.g. email:ana@example.com")
    try:
        found = load_profile(current_paths().serving_store, namespace, value, events)
    except (InvalidIdentifier, ProfileNotFound) as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(found, indent=2, ensure_ascii=False) if as_json else render_profile(found))


@main.group()
def segments() -> None:
    """Audiences: compile the YAML definitions, sizes, previews, overlaps and the audience report."""


def _compile_or_fail() -> list[Path]:
    from orchestration.audiences import AudienceError, write_audiences

    try:
        return write_audiences()
    except AudienceError as error:
        raise click.ClickException(str(error)) from None


@segments.command("compile")
@click.option("--check", is_flag=True, help="Only report generated files that are stale (exit 1 if any).")
def segments_compile(check: bool) -> None:
    """Compile dbt_project/audiences/*.yml into dbt models (models/segments/audiences/). `cdp run`
    does this by itself; run it to check a definition, and against the built warehouse's columns."""
    from orchestration.audiences import AudienceError, column_problems, list_audiences, stale_files

    if check:
        try:
            stale = stale_files()
        except AudienceError as error:
            raise click.ClickException(str(error)) from None
        for path in stale:
            click.echo(f"stale: {path}")
        if stale:
            sys.exit(1)
        click.echo("generated audience files are up to date")
        return
    changed = _compile_or_fail()
    for path in changed:
        click.echo(f"wrote {path}")
    audiences = list_audiences()
    click.echo(f"{len(audiences)} audiences ({sum(a.kind == 'yaml' for a in audiences)} from YAML), "
               f"{len(changed)} file(s) changed")
    for problem in column_problems(warehouse=current_paths().warehouse):
        click.echo(f"warning (columns of the warehouse built now): {problem}", err=True)


def _read_warehouse():
    import duckdb

    warehouse = current_paths().warehouse
    if not warehouse.exists():
        raise click.ClickException(f"no warehouse at {warehouse} yet: run `cdp run` first")
    return duckdb.connect(str(warehouse), read_only=True)


@segments.command("list")
def segments_list() -> None:
    """Every audience with its size after the last run and the change since the run before."""
    from orchestration.audiences import list_audiences
    from orchestration.audiences.insight import audience_sizes

    with _read_warehouse() as con:
        sizes = {size.name: size for size in audience_sizes(con)}
    click.echo(f"{'audience':<28}{'kind':<6}{'members':>10}{'change':>9}{'entered':>9}{'exited':>8}")
    for audience in list_audiences():
        size = sizes.get(audience.name)
        if size is None:
            click.echo(f"{audience.name:<28}{audience.kind:<6}{'(not built yet)':>36}")
            continue
        change = "new" if size.change is None else f"{size.change:+,}"
        click.echo(f"{audience.name:<28}{audience.kind:<6}{size.members:>10,}{change:>9}{size.realized:>9,}"
                   f"{size.exited:>8,}")


@segments.command("preview")
@click.argument("name")
@click.option("--sample", default=10, show_default=True, type=click.IntRange(0, 1000), help="Members to show.")
@click.option("--sql/--no-sql", "show_sql", default=True, show_default=True,
              help="Show the compiled SQL (runs `dbt compile` on the model).")
def segments_preview(name: str, sample: int, show_sql: bool) -> None:
    """An audience's size, a sample of its members and its compiled SQL."""
    import tempfile

    import polars as pl

    from orchestration.audiences import list_audiences
    from orchestration.audiences.insight import sample_members

    audiences = {audience.name: audience for audience in list_audiences()}
    if name.removeprefix("seg_") not in audiences:
        raise click.BadParameter(f"no audience {name!r}; known: {', '.join(audiences)}", param_hint="NAME")
    audience = audiences[name.removeprefix("seg_")]
    with _read_warehouse() as con:
        size = con.execute(f"select count(*) from segments.{audience.model}").fetchone()[0]
        members = sample_members(con, audience.model, sample)
    click.echo(f"audience {audience.name} ({audience.kind}, {audience.source.relative_to(audience.source.parents[2])}):"
               f" {size:,} members")
    with pl.Config(tbl_rows=sample, tbl_cols=12, fmt_str_lengths=40, tbl_hide_dataframe_shape=True):
        click.echo(str(members))
    if not show_sql:
        return
    _compile_or_fail()
    import subprocess

    from orchestration.dbt_project import DBT_EXECUTABLE
    from orchestration.settings import DBT_PROJECT_DIR

    import shutil

    with tempfile.TemporaryDirectory() as target:
        # dbt's partial parse state, so the compile does not parse the whole project again.
        partial_parse = DBT_PROJECT_DIR / "target" / "partial_parse.msgpack"
        if partial_parse.exists():
            shutil.copy(partial_parse, target)
        result = subprocess.run(
            [DBT_EXECUTABLE, "compile", "--quiet", "--select", audience.model, "--project-dir", str(DBT_PROJECT_DIR),
             "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", target],
            capture_output=True, text=True)
        compiled = list(Path(target).rglob(f"{audience.model}.sql"))
        if result.returncode != 0 or not compiled:
            raise click.ClickException(f"dbt compile failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
        click.echo(f"compiled SQL:\n{compiled[0].read_text()}")


@segments.command("overlap")
@click.argument("names", nargs=-1, required=True)
def segments_overlap(names: tuple[str, ...]) -> None:
    """Members shared by every pair of audiences NAMES (the diagonal is each one's size)."""
    from orchestration.audiences.insight import known_audiences, overlap_matrix

    wanted = [name.removeprefix("seg_") for name in names]
    with _read_warehouse() as con:
        known = known_audiences(con)
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise click.BadParameter(f"no audience {', '.join(unknown)}; known: {', '.join(known)}", param_hint="NAMES")
        matrix = overlap_matrix(con, wanted)
    width = max(12, *(len(name) + 2 for name in wanted))
    click.echo(" " * width + "".join(f"{name:>{width}}" for name in wanted))
    for row in matrix.iter_rows(named=True):
        size = row[row["segment_name"]]
        cells = "".join(
            f"{f'{row[name]:,} ({row[name] / size:.0%})' if size and name != row['segment_name'] else f'{row[name]:,}':>{width}}"
            for name in wanted)
        click.echo(f"{row['segment_name']:<{width}}{cells}")
    click.echo("(cell: members in both; in brackets, the share of the row audience)")


@segments.command("report")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default: reports/audiences.html in the data dir).")
def segments_report(out: Path | None) -> None:
    """Write the audience report: one static HTML file with sizes over time, the overlap heatmap and the RFM grid."""
    from orchestration.audiences.report import build_report

    paths = current_paths()
    if not paths.warehouse.exists():
        raise click.ClickException(f"no warehouse at {paths.warehouse} yet: run `cdp run` first")
    written = build_report(paths.warehouse, out or paths.data_dir / "reports" / "audiences.html")
    click.echo(f"audience report: {written}")


@main.group()
def identity() -> None:
    """Identity resolution tools."""


@identity.command("evaluate")
@click.option("--truth", "truth_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV of source, table, record_id, person_id (default: truth/record_truth.csv in the data dir).")
def identity_evaluate(truth_path: Path | None) -> None:
    """Pairwise precision, recall and F1 of the profiles against a ground truth."""

    from orchestration.identity_evaluation import evaluate_clustering

    paths = current_paths()
    truth_path = truth_path or paths.truth_dir / "record_truth.csv"
    with connect_warehouse(paths.warehouse, read_only=True) as con:
        quality = evaluate_clustering(con, truth_path)
    click.echo(quality.describe())
    click.echo("records per profile: " + ", ".join(f"{band}: {n:,}" for band, n in quality.size_histogram))
    for profile_id, persons in quality.worst_overmerges:
        click.echo(f"  over-merge: profile {profile_id} holds records of {persons} persons")
    for person_id, profiles in quality.worst_undermerges:
        click.echo(f"  under-merge: person {person_id} is split over {profiles} profiles")


@main.command()
@click.option("--people", default=10000, show_default=True, help="Number of simulated people.")
@click.option("--keep", is_flag=True, help="Keep the benchmark's data dir.")
def bench(people: int, keep: bool) -> None:
    """Generate N people in a temporary dir and print wall time and peak memory per stage."""
    from orchestration.bench import run_benchmark

    run_benchmark(people=people, keep=keep, echo=click.echo)


@main.command("bench-load")
@click.option("--rows", default=20_000_000, show_default=True, help="Event rows to load.")
def bench_load(rows: int) -> None:
    """Loader throughput and peak memory on N event rows, next to a no-checks floor."""
    from orchestration.bench_load import run_load_benchmark

    run_load_benchmark(rows, echo=click.echo)



@main.command("bench-sync")
@click.option("--rows", default=1_000_000, show_default=True, help="Audience rows.")
@click.option("--change-share", default=0.01, show_default=True, help="Share of rows changed for the second sync.")
@click.option("--repeats", default=3, show_default=True, help="Timed repeats of each measure (the median is printed).")
@click.option("--http/--no-http", default=True, show_default=True, help="Also benchmark the HTTP (webhook) sync.")
@click.option("--http-repeats", type=int, default=None, help="Repeats for the HTTP part (default: --repeats).")
@click.option("--drt/--no-drt", default=True, show_default=True,
              help="Also sync the audience with drt-core to the same PostgreSQL (when installed: the bench extra).")
def bench_sync(rows: int, change_share: float, repeats: int, http: bool, http_repeats: int | None, drt: bool) -> None:
    """Diff and sync throughput to PostgreSQL and to an HTTP server, next to floors measured in the
    same run (PostgreSQL COPY of the same rows; the HTTP server's raw request rate), and drt side by side."""
    from orchestration.bench_sync import run_sync_benchmark

    run_sync_benchmark(rows, change_share=change_share, repeats=repeats, echo=click.echo, http=http, drt=drt,
                       http_repeats=http_repeats)


@main.command("bench-serve")
@click.option("--data-dir", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Data dir whose build warehouse to publish (default: CDP_DATA_DIR).")
@click.option("--repeats", default=3, show_default=True,
              help="Publications to time (0: only the API, on the store as it is).")
@click.option("--rate", default=200.0, show_default=True, help="API lookups per second (0: skip the API).")
@click.option("--duration", default=60.0, show_default=True, help="Seconds of API load.")
@click.option("--during-run", is_flag=True, help="Run the pipeline on the data dir during the API load "
                                                  "(killed with SIGKILL afterwards).")
@click.option("--workers", default=1, show_default=True, help="`cdp serve` processes.")
def bench_serve(data_dir: Path | None, repeats: int, rate: float, duration: float, during_run: bool,
                workers: int) -> None:
    """Benchmark publishing (and its alternatives) and the profile API under load."""
    from orchestration.bench_serving import run_serving_benchmark

    run_serving_benchmark((data_dir or current_paths().data_dir).resolve(), repeats, rate, duration, during_run,
                          echo=click.echo, workers=workers)


@main.command("bench-identity")
@click.option("--links", default=10_000_000, show_default=True, help="Identity links in the synthetic graph.")
@click.option("--keep", is_flag=True, help="Keep the benchmark's data dir.")
@click.option("--sql-fallback/--no-sql-fallback", default=True, show_default=True,
              help="Also time the pure-SQL connected components (about 100x the floor at 10M links).")
def bench_identity(links: int, keep: bool, sql_fallback: bool) -> None:
    """Benchmark the identity stage (linking rules + components + stable ids) and the SQL fallback against raw scipy."""
    from orchestration.bench_identity import run_identity_benchmark

    run_identity_benchmark(links, keep=keep, echo=click.echo, sql_fallback=sql_fallback)


if __name__ == "__main__":
    main()
