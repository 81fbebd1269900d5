"""Data contracts and quarantined rows."""

from __future__ import annotations

from pathlib import Path

import click

from cdp.cli.app import main, writes_warehouse
from cdp.settings import current_paths
from cdp.warehouse import open_warehouse


@main.group()
def contracts() -> None:
    """Data contracts: Great Expectations data docs."""


@contracts.command("docs")
def contracts_docs() -> None:
    """Build the Great Expectations data docs of every contract's suite (static HTML)."""
    import data_contracts
    from cdp.data_docs import make_offline
    from data_contracts.expectations import build_data_docs

    index = build_data_docs(data_contracts.load_contracts(), current_paths().data_dir / "gx")
    make_offline(Path(index).parent)  # GX links its styles and scripts from CDNs: vendored, so they work offline
    click.echo(f"data docs: {index}")


@main.group()
def quarantine() -> None:
    """Quarantined rows."""


@quarantine.command("replay")
@click.argument("tables", nargs=-1)
@writes_warehouse("cdp quarantine replay")
def quarantine_replay(tables: tuple[str, ...]) -> None:
    """Validate quarantined rows again with the current contracts (after a fix); rows that pass move
    to raw. All tables unless TABLES (<source>__<table>) are given."""
    import uuid

    import data_contracts

    all_contracts = data_contracts.load_contracts()
    unknown = sorted(set(tables) - set(all_contracts))
    if unknown:
        raise click.BadParameter(
            f"no contract for {', '.join(unknown)}; known: {', '.join(all_contracts)}", param_hint="TABLES"
        )
    from activation.audit import record_event

    replay_id = f"replay-{uuid.uuid4().hex[:12]}"
    with open_warehouse(current_paths().warehouse) as con:
        for name in tables or sorted(all_contracts):
            report = data_contracts.replay_quarantine(con, all_contracts[name], load_id=replay_id)
            record_event(
                con,
                "contract_override",
                f"quarantine.{name}",
                "replayed",
                {
                    "replay_id": replay_id,
                    "contract": str(all_contracts[name].path),
                    "rows_replayed": report.rows_read,
                    "rows_now_accepted": report.rows_accepted,
                    "rows_still_quarantined": report.rows_quarantined,
                },
            )
            click.echo(
                f"{name:<28} replayed {report.rows_read:>7,}  now accepted {report.rows_accepted:>7,}  "
                f"still quarantined {report.rows_quarantined:>7,}"
            )
