"""Campaigns: the definitions, their results and the campaign report."""

from __future__ import annotations

import sys

import click

from cdp.cli.app import main
from cdp.settings import current_paths


@main.group()
def campaigns() -> None:
    """Campaigns (dbt_project/campaigns/*.yml): definitions, lift against the holdout, the report."""


@campaigns.command("list")
def campaigns_list() -> None:
    """Every campaign: audience, syncs, dates and goal (checked), then its results as the last run built
    them (analytics.campaign_lift)."""
    from cdp.campaigns import load_campaigns
    from cdp.campaigns.report import campaign_summary_lines

    broken: dict = {}
    definitions = load_campaigns(broken=broken)
    if not definitions and not broken:
        click.echo("no campaigns: declare one in dbt_project/campaigns/<name>.yml (README, Campaigns)")
        return
    for campaign in definitions:
        dates = f"{campaign.starts_at or 'first exposure'} to {campaign.ends_at or 'still running'}"
        splits = ", ".join(f"{s.name} {s.percent}%{' (holdout)' if s.is_holdout else ''}" for s in campaign.splits)
        click.echo(
            f"{campaign.name}: audience {campaign.audience} ({splits}), syncs {', '.join(campaign.syncs)}, {dates}; "
            f"goal: {campaign.goal.description or campaign.goal.aggregate} ({campaign.goal.window_days} days)"
        )
    lines = campaign_summary_lines(current_paths().warehouse)
    for line in lines:
        click.echo(line)
    if not lines and definitions:
        click.echo("no results yet: run the pipeline (`cdp run`) to build analytics.campaign_lift")
    if broken:  # each wrong one in one line; the pipeline leaves them out and measures the others
        for _name, error in sorted(broken.items()):
            click.echo(f"error: {error}", err=True)
        sys.exit(2)


@campaigns.command("report")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Where to write the HTML report (default: <data dir>/reports/campaigns.html).",
)
def campaigns_report(out: str | None) -> None:
    """Write the campaign report: a self-contained HTML file with each campaign's lift and its 95%
    interval, cumulative conversions per group, and the sample-ratio check."""
    from pathlib import Path

    from cdp.campaigns.report import build_report

    paths = current_paths()
    target = Path(out) if out else paths.data_dir / "reports" / "campaigns.html"
    click.echo(f"wrote {build_report(paths.warehouse, target)}")
