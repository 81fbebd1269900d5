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
    run_id = f"cli-{uuid.uuid4().hex[:12]}"
    with open_warehouse(current_paths().warehouse) as con:
        if retrain or not predictions.latest_models(con):
            for report in predictions.train_and_store(con, as_of, run_id=run_id):
                figures = report.get("message") or f"{report.get('train_rows', 0):,} customers"
                if report.get("auc") is not None:
                    checks = report["parameters"]
                    figures = (
                        ", ".join(
                            f"{label} AUC {checks[key]['auc']:.3f} [{checks[key]['auc_ci'][0]:.3f}, "
                            f"{checks[key]['auc_ci'][1]:.3f}]"
                            for key, label in (("out_of_time", "out of time"), ("in_time", "in time"))
                        )
                        + f", top-decile lift {report['lift_top_decile']:.2f}, base rate {report['base_rate']:.3f}"
                    )
                click.echo(f"{report['model_name']:<24} {report['status']:<8} {figures}")
        scores = predictions.score_and_store(con, as_of)
        lookalikes, _, report = predictions.lookalikes_and_store(con, as_of, run_id=run_id)
    if report["status"] == "skipped":
        click.echo(f"WARNING: model {report['model_name']} skipped: {report['message']}", err=True)
    click.echo(f"scored {scores.height:,} profiles; {lookalikes.height:,} look-alike candidates")
    click.echo(f"model report: {current_paths().data_dir / 'reports' / 'models.html'}")
