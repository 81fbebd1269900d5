"""Profiles and identity: show, explain, evaluate."""

from __future__ import annotations

from pathlib import Path

import click

from cdp.cli.app import main
from cdp.settings import current_paths
from cdp.warehouse import open_warehouse


@main.group()
def profile() -> None:
    """Profiles."""


@profile.command("explain")
@click.argument("first")
@click.argument("second")
def profile_explain(first: str, second: str) -> None:
    """Why FIRST and SECOND (each <namespace>:<normalized value>, e.g. email:ana@x.com) are in one
    profile (the chain of source records), or why not."""

    from cdp.identity.explain import explain

    for identifier in (first, second):
        if ":" not in identifier:
            raise click.BadParameter(f"{identifier!r}: expected <namespace>:<value>, e.g. email:ana@example.com")
    with open_warehouse(current_paths().warehouse, read_only=True) as con:
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

    from cdp.serving.documents import InvalidIdentifier
    from cdp.serving.profile_card import ProfileNotFound, load_profile, render_profile

    namespace, _, value = identifier.partition(":")
    if not value:
        raise click.BadParameter(f"{identifier!r}: expected <namespace>:<value>, e.g. email:ana@example.com")
    try:
        found = load_profile(current_paths().serving_store, namespace, value, events)
    except (InvalidIdentifier, ProfileNotFound) as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(found, indent=2, ensure_ascii=False) if as_json else render_profile(found))


@main.group()
def identity() -> None:
    """Identity resolution tools."""


@identity.command("evaluate")
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV of source, table, record_id, person_id (default: truth/record_truth.csv in the data dir).",
)
def identity_evaluate(truth_path: Path | None) -> None:
    """Pairwise precision, recall and F1 of the profiles against a ground truth."""

    from cdp.identity.evaluation import evaluate_clustering

    paths = current_paths()
    truth_path = truth_path or paths.truth_dir / "record_truth.csv"
    with open_warehouse(paths.warehouse, read_only=True) as con:
        quality = evaluate_clustering(con, truth_path)
    click.echo(quality.describe())
    click.echo("records per profile: " + ", ".join(f"{band}: {n:,}" for band, n in quality.size_histogram))
    for profile_id, persons in quality.worst_overmerges:
        click.echo(f"  over-merge: profile {profile_id} holds records of {persons} persons")
    for person_id, profiles in quality.worst_undermerges:
        click.echo(f"  under-merge: person {person_id} is split over {profiles} profiles")


@identity.command("duplicates")
@click.option("--source", "source_table", default=None, help="Only this source table, e.g. crm__contacts.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000), help="Pairs to list.")
def identity_duplicates(source_table: str | None, limit: int) -> None:
    """Duplicate source records: pairs of records of one source that are one person (for the source's
    owners to clean up), with the evidence and the profile they resolve to."""
    from cdp.identity.duplicates import duplicate_source_records

    with open_warehouse(current_paths().warehouse, read_only=True) as con:
        total, rows = duplicate_source_records(con, source_table, limit)
    click.echo(f"{total:,} duplicate record pair(s){f' in {source_table}' if source_table else ''}")
    for row in rows:
        click.echo(
            f"  {row['source_table']}: {row['left_record_id']} ~ {row['right_record_id']} "
            f"p={row['match_probability']:.4f} agreeing: {row['agreeing_fields'] or '-'} -> "
            f"{row['profile_id'] if row['is_merged'] else 'not merged (the linking rules kept them apart)'}"
        )


@identity.command("model")
def identity_model() -> None:
    """The probabilistic matching model of the last run (Splink JSON under <data dir>/identity/match_models/):
    prior and the match weight of every comparison level."""
    from cdp.identity.duplicates import describe_match_model

    for line in describe_match_model(current_paths().data_dir / "identity" / "match_models" / "latest.json"):
        click.echo(line)
