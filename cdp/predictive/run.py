"""Training, storing and scoring against the warehouse (schema `predictions`).

Training is separate from scoring: models are stored with their reports in predictions.models
(the pickled scikit-learn pipelines and the CLV parameters), and daily scoring reads the latest.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle

import duckdb
import numpy as np
import polars as pl

from cdp.predictive import PredictionError, clv, lookalike, propensity
from cdp.predictive.features import FEATURES, features_as_of, purchases_between

CLV_HORIZON_DAYS = 90
PURCHASE_WINDOW_DAYS = 30
CHURN_WINDOW_DAYS = 90
PURCHASE_MODEL = "purchase_30d"
CHURN_MODEL = "churn_90d"
CLV_MODEL = "clv_bgnbd_gamma_gamma"

DDL = {
    "models": "model_name VARCHAR, run_id VARCHAR, trained_at TIMESTAMP, as_of TIMESTAMP, artifact BLOB",
    "model_reports": """run_id VARCHAR, model_name VARCHAR, trained_at TIMESTAMP, as_of TIMESTAMP, status VARCHAR,
        message VARCHAR, auc DOUBLE, lift_top_decile DOUBLE, base_rate DOUBLE, train_rows BIGINT, holdout_rows BIGINT,
        positives BIGINT, negatives BIGINT, training_s DOUBLE, parameters VARCHAR""",
}


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists predictions")
    for name, columns in DDL.items():
        con.execute(f"create table if not exists predictions.{name} ({columns})")


def _completed_purchases(con: duckdb.DuckDBPyConnection, before: dt.datetime) -> pl.DataFrame:
    return con.execute(
        """select profile_id, occurred_at, cast(commerce_order_price_total as double) as value
           from profiles.profile_events
           where event_type = 'commerce.purchases' and commerce_order_status = 'completed' and occurred_at < ?""",
        [before],
    ).pl()


def _labelled(con, cutoff: dt.datetime, window_days: int) -> pl.DataFrame:
    features = features_as_of(con, cutoff)
    later = purchases_between(con, cutoff, cutoff + dt.timedelta(days=window_days))
    return features.join(later, on="profile_id", how="left").with_columns(
        (pl.col("purchases").fill_null(0) > 0).alias("purchased")
    )


def train_models(con: duckdb.DuckDBPyConnection, as_of: dt.datetime) -> tuple[dict[str, object], list[dict]]:
    """Fit every model as of `as_of`. Returns (artifacts by model name, one report per model);
    a model refused for thin data has a report with status 'refused' and no artifact."""
    artifacts: dict[str, object] = {}
    reports: list[dict] = []

    summary = clv.rfm_summary(
        _completed_purchases(con, as_of),
        "profile_id",
        "occurred_at",
        "value",
        calibration_end=as_of - dt.timedelta(microseconds=1),
        time_unit_days=1.0,
    )
    try:
        bgnbd = clv.fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
        gamma_gamma = clv.fit_gamma_gamma(summary["frequency"], summary["monetary_value"])
        repeat_spend = summary.filter(pl.col("frequency") > 0)["monetary_value"].mean()
        artifacts[CLV_MODEL] = {
            "bgnbd": bgnbd,
            "gamma_gamma": gamma_gamma,
            "population_mean_spend": float(repeat_spend),
        }
        reports.append(
            {
                "model_name": CLV_MODEL,
                "status": "trained",
                "train_rows": summary.height,
                "parameters": json.dumps(
                    {**bgnbd.as_dict(), **{f"gg_{k}": v for k, v in gamma_gamma.as_dict().items()}}
                ),
            }
        )
    except PredictionError as error:
        reports.append({"model_name": CLV_MODEL, "status": "refused", "message": str(error)})

    purchase_frame = _labelled(con, as_of - dt.timedelta(days=PURCHASE_WINDOW_DAYS), PURCHASE_WINDOW_DAYS)
    churn_frame = (
        _labelled(con, as_of - dt.timedelta(days=CHURN_WINDOW_DAYS), CHURN_WINDOW_DAYS)
        .filter(pl.col("purchases_total") > 0)
        .with_columns((~pl.col("purchased")).alias("churned"))
    )
    for name, frame, label in ((PURCHASE_MODEL, purchase_frame, "purchased"), (CHURN_MODEL, churn_frame, "churned")):
        try:
            model = propensity.train_classifier(name, frame, FEATURES, label)
            artifacts[name] = model
            reports.append({"model_name": name, "status": "trained", **model.report})
        except PredictionError as error:
            reports.append({"model_name": name, "status": "refused", "message": str(error)})
    return artifacts, reports


def store_models(
    con: duckdb.DuckDBPyConnection, artifacts: dict[str, object], reports: list[dict], run_id: str, as_of: dt.datetime
) -> None:
    ensure_tables(con)
    trained_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    con.execute("begin transaction")
    try:
        for name, artifact in artifacts.items():
            con.execute(
                "insert into predictions.models values (?, ?, ?, ?, ?)",
                [name, run_id, trained_at, as_of, pickle.dumps(artifact)],
            )
        columns = [c.split()[0] for c in DDL["model_reports"].split(",")]
        for report in reports:
            row = {**report, "run_id": run_id, "trained_at": trained_at, "as_of": as_of}
            con.execute(
                f"insert into predictions.model_reports ({', '.join(columns)}) values "
                f"({', '.join('?' * len(columns))})",
                [row.get(c) for c in columns],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def latest_models(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[object, dt.datetime]]:
    ensure_tables(con)
    rows = con.execute(
        """select model_name, artifact, trained_at from predictions.models
           qualify row_number() over (partition by model_name order by trained_at desc) = 1"""
    ).fetchall()
    return {name: (pickle.loads(artifact), trained_at) for name, artifact, trained_at in rows}


def score_profiles(con: duckdb.DuckDBPyConnection, models: dict[str, object], as_of: dt.datetime) -> pl.DataFrame:
    """Every known profile with events: CLV, P(alive), churn grade and the propensities."""
    features = features_as_of(con, as_of)
    scores = features.select("profile_id").with_columns(pl.lit(as_of).alias("scored_as_of"))
    if CLV_MODEL in models:
        fitted = models[CLV_MODEL]
        summary = clv.rfm_summary(
            _completed_purchases(con, as_of),
            "profile_id",
            "occurred_at",
            "value",
            calibration_end=as_of - dt.timedelta(microseconds=1),
            time_unit_days=1.0,
        )
        x, t_x, age = summary["frequency"], summary["recency"], summary["T"]
        p_alive = clv.probability_alive(fitted["bgnbd"], x, t_x, age)
        expected = clv.expected_purchases(fitted["bgnbd"], CLV_HORIZON_DAYS, x, t_x, age)
        spend = clv.expected_average_value(
            fitted["gamma_gamma"], x, summary["monetary_value"], fitted["population_mean_spend"]
        )
        scores = scores.join(
            pl.DataFrame(
                {
                    "profile_id": summary["profile_id"],
                    "p_alive": p_alive,
                    "expected_purchases_90d": expected,
                    "predicted_clv_90d": np.round(expected * spend, 2),
                    "churn_risk_grade": clv.churn_risk_grade(p_alive),
                }
            ),
            on="profile_id",
            how="left",
        )
    buyers = features.filter(pl.col("purchases_total") > 0)  # churn is defined for buyers only
    for name, prefix, population in ((PURCHASE_MODEL, "purchase", features), (CHURN_MODEL, "churn", buyers)):
        if name in models:
            scored = propensity.score(models[name], population).select(
                "profile_id",
                pl.col("probability").alias(f"{prefix}_probability"),
                pl.col("percentile").alias(f"{prefix}_percentile"),
                pl.col("top_factors").alias(f"{prefix}_top_factors"),
            )
            scores = scores.join(scored, on="profile_id", how="left")
    for column, dtype in (
        ("p_alive", pl.Float64),
        ("expected_purchases_90d", pl.Float64),
        ("predicted_clv_90d", pl.Float64),
        ("churn_risk_grade", pl.String),
        ("purchase_probability", pl.Float64),
        ("purchase_percentile", pl.Int64),
        ("purchase_top_factors", pl.String),
        ("churn_probability", pl.Float64),
        ("churn_percentile", pl.Int64),
        ("churn_top_factors", pl.String),
    ):
        if column not in scores.columns:
            scores = scores.with_columns(pl.lit(None, dtype).alias(column))
    return scores.sort("profile_id")


def replace_table(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    ensure_tables(con)
    con.register("incoming_frame", frame.to_arrow())
    try:
        con.execute(f"create or replace table {table} as select * from incoming_frame")
    finally:
        con.unregister("incoming_frame")


def lookalike_audience(
    con: duckdb.DuckDBPyConnection, seed_table: str, as_of: dt.datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    seed = {pid for (pid,) in con.execute(f"select profile_id from {seed_table}").fetchall()}
    return lookalike.score_lookalikes(features_as_of(con, as_of), seed)


def train_and_store(con: duckdb.DuckDBPyConnection, as_of: dt.datetime, run_id: str) -> list[dict]:
    artifacts, reports = train_models(con, as_of)
    store_models(con, artifacts, reports, run_id=run_id, as_of=as_of)
    return reports


def score_and_store(con: duckdb.DuckDBPyConnection, as_of: dt.datetime) -> pl.DataFrame:
    """Score with the latest stored models into predictions.profile_scores."""
    scores = score_profiles(con, {name: model for name, (model, _) in latest_models(con).items()}, as_of)
    replace_table(con, "predictions.profile_scores", scores)
    return scores


LOOKALIKE_SEED = "segments.seg_high_value"


def lookalikes_and_store(con: duckdb.DuckDBPyConnection, as_of: dt.datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Look-alikes of LOOKALIKE_SEED into predictions.lookalike_high_value (+ _reach)."""
    scores, reach = lookalike_audience(con, LOOKALIKE_SEED, as_of)
    replace_table(con, "predictions.lookalike_high_value", scores)
    replace_table(con, "predictions.lookalike_high_value_reach", reach)
    return scores, reach
