"""`cdp sync`: send audiences to their destinations."""

from __future__ import annotations

import click

from cdp import progress
from cdp.cli.app import main, writes_warehouse
from cdp.settings import current_paths
from cdp.warehouse import open_warehouse


@main.command()
@click.argument("names", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Show what would be added, changed and removed; send nothing.")
@click.option("--force", is_flag=True, help="Run even if it would remove more than the spec's guard allows.")
@writes_warehouse("cdp sync")
def sync(names: tuple[str, ...], dry_run: bool, force: bool) -> None:
    """Sync audiences to their destinations (all sync specs unless NAMES are given)."""
    import uuid

    import activation
    from cdp.definitions import load_sync_specs

    paths = current_paths()
    specs, broken = load_sync_specs()  # an invalid spec breaks only itself, never `cdp sync <another>`
    broken_by_name = {b.name: b for b in broken}
    unknown = sorted(set(names) - set(specs) - set(broken_by_name))
    if unknown:
        raise click.BadParameter(
            f"unknown sync {', '.join(unknown)}; known: {', '.join(sorted(specs))}", param_hint="NAMES"
        )
    skipped = [broken_by_name[name] for name in names if name in broken_by_name] if names else broken
    run_id = f"cli-{uuid.uuid4().hex[:12]}"
    from cdp.governance.labels import refresh_column_labels

    aborted, failed = [], []
    selected = [name for name in names if name in specs] if names else sorted(specs)
    with progress.live("cdp sync", steps=len(selected)), open_warehouse(paths.warehouse) as con:
        refresh_column_labels(con)  # what the data-usage policy gate checks the exported fields against
        for name in selected:
            spec = specs[name]
            progress.step_started(f"sync {name}")
            if dry_run:
                result = activation.run_sync(con, spec, run_id=run_id, base_dir=paths.destinations_dir, dry_run=True)
            else:
                plan = activation.plan_sync(con, spec)
                advance = _sent_rows_reporter(name, plan.to_send)

                try:
                    result = activation.run_sync(
                        con, spec, run_id=run_id, base_dir=paths.destinations_dir, force=force, progress=advance
                    )
                except activation.SyncAborted as stop:
                    aborted.append(name)
                    click.echo(f"{stop}", err=True)
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
    for item in skipped:
        click.echo(f"error: sync {item.name} not run, its spec is invalid: {item.message}", err=True)
    stopped = [f"aborted: {', '.join(aborted)} (nothing sent for them)"] * bool(aborted) + [
        f"invalid spec: {', '.join(item.name for item in skipped)}"
    ] * bool(skipped)
    if failed:
        # Every row it tried failed or was refused: the run failed (exit code 2), the rows wait for the next run.
        raise activation.SyncFailed("; ".join([f"sync failed: {'; '.join(failed)}", *stopped]))
    if stopped:
        raise SystemExit("; ".join(stopped))


def _sent_rows_reporter(name: str, total: int):
    sent = 0

    def advance(rows: int) -> None:
        nonlocal sent
        sent += rows
        progress.report(f"sync {name}", "rows sent", done=sent, total=total)

    return advance


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
