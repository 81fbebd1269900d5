"""Predictive traits: weekly (or on demand) training, daily scoring, and a look-alike audience."""

import datetime as dt

import dagster as dg

from cdp.predictive import run
from cdp.settings import as_of_instant
from orchestration.resources import WarehouseResource

PROFILE_INPUTS = [dg.AssetKey(["profiles", "profile_events"]), dg.AssetKey(["profiles", "profiles"])]
TRAINED_MODELS = dg.AssetKey(["predictions", "trained_models"])


class TrainingConfig(dg.Config):
    force_retrain: bool = False
    max_model_age_days: int = 7


@dg.asset(
    key=TRAINED_MODELS,
    group_name="predictions",
    deps=PROFILE_INPUTS,
    kinds={"scikitlearn", "scipy"},
    description="BG/NBD + Gamma-Gamma CLV model and purchase/churn propensity models, with holdout reports "
    "in predictions.model_reports. Retrains when forced or when the models are older than "
    "max_model_age_days; otherwise keeps the stored ones.",
)
def trained_models(context: dg.AssetExecutionContext, config: TrainingConfig, warehouse: WarehouseResource):
    as_of = as_of_instant()
    with warehouse.connect() as con:
        stored = run.latest_models(con)
        oldest = min((trained_at for _, trained_at in stored.values()), default=None)
        age_limit = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=config.max_model_age_days)
        if stored and not config.force_retrain and oldest and oldest >= age_limit:
            return dg.MaterializeResult(
                metadata={"retrained": False, "models": sorted(stored), "oldest_trained_at": str(oldest)}
            )
        reports = run.train_and_store(con, as_of, run_id=context.run_id)
    metadata: dict = {"retrained": True}
    for report in reports:
        name = report["model_name"]
        metadata[f"{name}_status"] = report["status"]
        if report.get("auc") is not None:
            metadata[f"{name}_auc"] = round(report["auc"], 4)
            metadata[f"{name}_lift_top_decile"] = round(report["lift_top_decile"], 2)
            metadata[f"{name}_holdout_rows"] = report["holdout_rows"]
        if report["status"] == "skipped":
            context.log.warning(f"model {name} skipped: {report['message']}")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    key=dg.AssetKey(["predictions", "profile_scores"]),
    group_name="predictions",
    deps=[TRAINED_MODELS, *PROFILE_INPUTS],
    kinds={"scikitlearn"},
    description="Daily scores of every known profile with the latest trained models.",
)
def profile_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.connect() as con:
        scores = run.score_and_store(con, as_of_instant())
    return dg.MaterializeResult(metadata={"profiles_scored": scores.height})


@dg.asset(
    key=dg.AssetKey(["predictions", "lookalike_high_value"]),
    group_name="predictions",
    # After the training too: both write predictions.model_reports and the model report (models.html), which
    # the look-alike renders last, with this run's training in it. (It also lets dbt build the look-alike
    # audience in the same invocation as profile_predictions: one dbt start-up and parse less per run.)
    deps=[dg.AssetKey(["segments", "seg_high_value"]), TRAINED_MODELS, *PROFILE_INPUTS],
    kinds={"scikitlearn"},
    description="Non-members of seg_high_value scored by similarity to its members (seed-defining features "
    "left out; similarity = share of held-out members scored at most as high); reach curve in "
    "predictions.lookalike_high_value_reach. A seed too small to learn from leaves it empty, with a warning.",
)
def lookalike_high_value(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    with warehouse.connect() as con:
        scores, reach, report = run.lookalikes_and_store(con, as_of_instant(), run_id=context.run_id)
    if report["status"] == "skipped":
        context.log.warning(f"model {report['model_name']} skipped: {report['message']}")
    return dg.MaterializeResult(
        metadata={
            "status": report["status"],
            "scored": scores.height,
            "reach_curve": dg.MetadataValue.md(
                "| threshold | profiles |\n|---|---|\n" + "\n".join(f"| {t} | {n} |" for t, n in reach.rows())
            ),
        }
    )


PREDICTION_ASSETS = [trained_models, profile_scores, lookalike_high_value]
