"""Data-usage policies and privacy requests."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cdp import progress
from cdp.cli.app import main, writes_warehouse
from cdp.settings import current_paths
from cdp.warehouse import open_warehouse


@main.group()
def policy() -> None:
    """Data-usage policies (activation/policies/*.yml) over syncs and audiences."""


@policy.command("check")
@writes_warehouse("cdp policy check")
def policy_check() -> None:
    """List every policy violation of every sync spec and every audience; exit 1 if any."""

    from cdp.governance.policy_check import check_all

    with open_warehouse(current_paths().warehouse) as con:
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
        raise click.BadParameter(
            f"{identifier!r}: expected <namespace>:<value>, e.g. email:ana@example.com", param_hint="IDENTIFIER"
        )
    return identifier


@privacy.command("access")
@click.argument("identifier")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the JSON export goes (default: privacy/ in the data dir).",
)
@writes_warehouse("cdp privacy access")
def privacy_access(identifier: str, output_dir: Path | None) -> None:
    """Export everything held about the person holding IDENTIFIER (<namespace>:<value>) as JSON."""

    from cdp.governance.privacy import access

    paths = current_paths()
    with progress.live("cdp privacy access"), open_warehouse(paths.warehouse) as con:
        progress.report("export", "every table that holds the person")
        outcome = access(con, _privacy_identifier(identifier), output_dir or paths.data_dir / "privacy")
    if not outcome.profile_ids and not outcome.rows:
        click.echo(f"{identifier}: no profile and no row holds this identifier (request {outcome.request_id})")
    click.echo(
        f"request {outcome.request_id}: {len(outcome.profile_ids)} profile(s), "
        f"{sum(outcome.rows.values()):,} row(s) in {len(outcome.rows)} table(s); export: {outcome.output_file}"
    )


@privacy.command("erase")
@click.argument("identifier")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@writes_warehouse("cdp privacy erase")
def privacy_erase(identifier: str, yes: bool) -> None:
    """Erase the person holding IDENTIFIER everywhere: warehouse, destinations, serving store; keep
    their identifiers (hashed) on the suppression list so re-loading the sources does not bring them back."""

    from cdp.governance.privacy import compact_warehouse, erase, republish_serving_store

    identifier = _privacy_identifier(identifier)
    if not yes:
        click.confirm(f"Erase every record of {identifier} from the warehouse and every destination?", abort=True)
    paths = current_paths()
    with progress.live("cdp privacy erase"):
        with open_warehouse(paths.warehouse) as con:
            progress.report("erase", "the warehouse's tables and every destination")
            outcome = erase(con, identifier, base_dir=paths.destinations_dir)
        progress.report("republish", str(paths.serving_store))
        republished = republish_serving_store(paths.warehouse, paths.serving_store, outcome.request_id)
        # Last: rewrite the warehouse file, so no byte of the deleted rows stays in its free blocks.
        progress.report("compact", str(paths.warehouse))
        compacted_bytes = compact_warehouse(paths.warehouse, outcome.request_id)
    if not outcome.profile_ids and not outcome.rows:
        click.echo(
            f"{identifier}: no profile and no row holds this identifier; it is on the suppression list "
            "anyway, so a later load cannot bring it in"
        )
    click.echo(
        f"request {outcome.request_id}: {len(outcome.profile_ids)} profile(s); "
        f"{sum(outcome.rows.values()):,} row(s) deleted from {len(outcome.rows)} table(s) in "
        f"{outcome.seconds:.1f} s; {outcome.suppressed_added} identifier hash(es) added to the suppression list"
    )
    for table, count in sorted(outcome.rows.items()):
        click.echo(f"  {table:<48} {count:>7,}")
    for sync_name, note in sorted(outcome.destinations.items()):
        detail = note.get("detail") or note.get("error") or ""
        click.echo(f"  {sync_name}: {note['records']} record(s), {note['status']}{f' ({detail})' if detail else ''}")
    if outcome.status == "pending":
        click.echo(
            "  request pending: a destination did not confirm its delete; the next run of its sync sends it "
            "again (activation.pending_erasures), and the request completes once every destination confirmed"
        )
    click.echo(f"  serving store: {'republished without the person' if republished else 'nothing published yet'}")
    click.echo(f"  warehouse file: rewritten without the deleted rows' bytes ({compacted_bytes:,} bytes)")
