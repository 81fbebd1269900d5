"""Source declarations: the contract and staging folder of every source (docs/sources.md)."""

from __future__ import annotations

import click

from cdp.cli.app import main
from cdp.settings import current_paths


@main.group()
def sources() -> None:
    """Sources: their contracts and staging models, and what each declares for XDM."""


@sources.command("check")
def sources_check() -> None:
    """Check every staging model's declaration (contract, column lineage, identifiers, profile
    attributes, events) and refresh the generated macros (the XDM models' dependencies, the trait
    catalogue); with a built warehouse,
    also check that every staging column resolves to a contract column. Exits 2 naming the first problem."""
    from cdp.sources import SourceLineage, load_staging_models, write_source_refs
    from cdp.traits import write_trait_catalogue
    from cdp.warehouse import open_warehouse

    models = load_staging_models()
    if write_source_refs(models=models):
        click.echo("wrote dbt_project/macros/xdm_source_models.sql")
    if write_trait_catalogue():
        click.echo("wrote dbt_project/macros/trait_catalogue.sql")
    staging_columns: dict[str, list[str]] = {}
    warehouse = current_paths().warehouse
    if warehouse.exists():
        with open_warehouse(warehouse, read_only=True) as con:
            for table, column in con.execute(
                "select table_name, column_name from information_schema.columns "
                "where table_schema = 'staging' order by table_name, ordinal_position"
            ).fetchall():
                staging_columns.setdefault(table, []).append(column)
    lineage = SourceLineage(models=models, staging_columns={m: c for m, c in staging_columns.items() if m in models})
    lineage.check_columns()
    for name, model in models.items():
        event = model.event
        click.echo(
            f"{name:<28} {model.contract:<24} identifiers {len(model.identifiers)}  attributes {len(model.profile):>2}  "
            f"event {'-' if event is None else event.event_type.literal or 'by ' + str(event.event_type.column)}"
            f"{'  measures ' + ', '.join(event.measures) if event and event.measures else ''}"
        )
    checked = "declarations and warehouse columns" if staging_columns else "declarations (no warehouse yet)"
    click.echo(f"{len(models)} staging models: {checked} OK")
