"""`cdp predict`: score profiles with the predictive models."""

from __future__ import annotations

import click

from cdp.cli.app import main, writes_warehouse
from cdp.settings import current_paths
from cdp.warehouse import open_warehouse


@main.command()
@click.option("--retrain", is_flag=True, help="Retrain the models first (otherwise the stored ones are used).")
@writes_warehouse("cdp predict")
def predict(retrain: bool) -> None:
    """Score every known profile (and the look-alike audience) with the predictive models."""
    import uuid

    from cdp.predictive import run as predictions
    from cdp.settings import as_of_instant

    as_of = as_of_instant()
    with open_warehouse(current_paths().warehouse) as con:
        if retrain or not predictions.latest_models(con):
            for report in predictions.train_and_store(con, as_of, run_id=f"cli-{uuid.uuid4().hex[:12]}"):
                figures = (
                    f"AUC {report['auc']:.3f}, top-decile lift {report['lift_top_decile']:.2f}, "
                    f"base rate {report['base_rate']:.3f}"
                    if report.get("auc") is not None
                    else report.get("message") or f"{report.get('train_rows', 0):,} customers"
                )
                click.echo(f"{report['model_name']:<24} {report['status']:<8} {figures}")
        scores = predictions.score_and_store(con, as_of)
        lookalikes, _ = predictions.lookalikes_and_store(con, as_of)
    click.echo(f"scored {scores.height:,} profiles; {lookalikes.height:,} look-alike candidates")
