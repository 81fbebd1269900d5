"""`cdp sync`: send audiences to their destinations."""

from __future__ import annotations

import sys

import click

from cdp.cli.app import main
from cdp.settings import current_paths
from cdp.warehouse import open_warehouse


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
        raise click.BadParameter(
            f"unknown sync {', '.join(unknown)}; known: {', '.join(sorted(specs))}", param_hint="NAMES"
        )
    run_id = f"cli-{uuid.uuid4().hex[:12]}"
    from cdp.governance.labels import refresh_column_labels

    aborted, failed = [], []
    with open_warehouse(paths.warehouse) as con:
        refresh_column_labels(con)  # what the data-usage policy gate checks the exported fields against
        for name in names or sorted(specs):
            spec = specs[name]
            if dry_run:
                result = activation.run_sync(con, spec, run_id=run_id, base_dir=paths.destinations_dir, dry_run=True)
            else:
                plan = activation.plan_sync(con, spec)
                with click.progressbar(length=plan.to_send, label=f"{name:<28}", show_pos=True, file=sys.stderr) as bar:
                    try:
                        result = activation.run_sync(
                            con, spec, run_id=run_id, base_dir=paths.destinations_dir, force=force, progress=bar.update
                        )
                    except activation.SyncAborted as stop:
                        aborted.append(name)
                        click.echo(f"\n{stop}", err=True)
                        continue
            click.echo(_sync_line(result))
            if result.status in ("failed", "partial") and result.message:
                click.echo(f"  {result.status}: {result.message}", err=True)
            if result.status == "failed":
                failed.append(f"{name} ({result.message})")
            if dry_run:
                for kind, keys in result.preview.items():
                    if keys:
                        more = getattr(result, kind) - len(keys)
                        click.echo(f"  would be {kind}: {', '.join(keys)}{f' and {more:,} more' if more > 0 else ''}")
                if result.message:
                    click.echo(f"  note: {result.message}")
    if failed:
        # Every row it tried failed or was refused: the run failed (exit code 2), the rows wait for the next run.
        raise activation.SyncFailed(
            f"sync failed: {'; '.join(failed)}"
            + (f"; aborted: {', '.join(aborted)} (nothing sent for them)" if aborted else "")
        )
    if aborted:
        raise SystemExit(f"aborted: {', '.join(aborted)} (nothing sent for them)")


def _sync_line(result) -> str:
    return (
        f"{result.sync_name:<28} added {result.added:>7,}  changed {result.changed:>7,}  removed {result.removed:>7,}"
        f"  excluded (consent) {result.excluded_consent:>6,}  invalid {result.invalid:>5,}  rejected {result.rejected:>5,}"
        f"  suppressed {result.suppressed:>5,}{f'  held out {result.held_out:,}' if result.held_out else ''}"
        f"  sent {result.sent:>7,}  failed {result.failed:>5,}"
        f"  retried {result.retried:>5,}{f'  not sent {result.not_sent:,}' if result.not_sent else ''}"
        f"  {result.duration_s:.2f} s"
        f"{'  (dry run: nothing sent)' if result.dry_run else ''}"
    )
