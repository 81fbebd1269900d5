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
