"""Operating the platform: the Dagster UI on the CLI's run history, and alerts."""

from __future__ import annotations

import os
import sys

import click

from cdp.cli.app import main
from cdp.settings import PROJECT_ROOT, current_paths, export_dagster_home


@main.command()
@click.option("--port", default=3000, show_default=True, type=int)
def dagster(port: int) -> None:
    """Open the Dagster UI (`dagster dev`, with the daemon that runs schedules and alert sensors) on
    DAGSTER_HOME (default: dagster/ in the data dir), where `cdp run` records its runs too."""
    home = export_dagster_home(current_paths())
    executable = os.path.join(os.path.dirname(sys.executable), "dagster")
    click.echo(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME={home})", err=True)
    os.chdir(PROJECT_ROOT)
    os.execv(executable, [executable, "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-p", str(port)])


@main.group()
def alerts() -> None:
    """Alerts (alerts.yml or CDP_ALERTS_FILE): webhook (Slack-compatible) and email channels."""


@alerts.command("test")
def alerts_test() -> None:
    """Send a test alert to every configured channel."""
    from cdp.alerts import Alert, alerts_file, load_alert_config, send

    config = load_alert_config()
    if config is None:
        raise click.ClickException(f"no alert configuration at {alerts_file()} (or set CDP_ALERTS_FILE)")
    reached = send(Alert("test", "cdp test alert", ("if you read this, alerts reach you",)), config)
    click.echo(f"test alert sent to {', '.join(reached)}")
