"""Training, storing and scoring against the warehouse (schema `predictions`).

Training is separate from scoring: models are stored with their reports in predictions.models
(the pickled scikit-learn pipelines and the CLV fits), and daily scoring reads the latest.

A model that cannot be trained (too few customers, positives, seed members; no purchases at all; a fit
that does not converge) is skipped: its report row says why (status `skipped`), the run warns, and
every other stage goes on. A score that cannot be computed is null, and `null_reasons` says why.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path

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
CLV_MODEL = "clv"
LOOKALIKE_MODEL = "lookalike_high_value"
# Candidates for scoring: the models that see one-time buyers; BG/NBD is fitted for comparison only.
CLV_CANDIDATES = ("mbg_nbd", "pareto_nbd")
CLV_COMPARED = ("bg_nbd", *CLV_CANDIDATES)
# Churn risk from the calibrated probability of buying again within CLV_HORIZON_DAYS.
CHURN_GRADES = ((0.5, "low"), (0.2, "medium"))  # at least 0.5: low; at least 0.2: medium; else high
DECIMAL_LIMIT = 1e15  # predicted_clv_90d is decimal(18, 2)

DDL = {
    "models": "model_name VARCHAR, run_id VARCHAR, trained_at TIMESTAMP, as_of TIMESTAMP, artifact BLOB",
    "model_reports": """run_id VARCHAR, model_name VARCHAR, trained_at TIMESTAMP, as_of TIMESTAMP, status VARCHAR,
        message VARCHAR, auc DOUBLE, lift_top_decile DOUBLE, base_rate DOUBLE, train_rows BIGINT, holdout_rows BIGINT,
        positives BIGINT, negatives BIGINT, training_s DOUBLE, parameters VARCHAR""",
}
SCORE_COLUMNS = {
    "p_alive": pl.Float64,
    "expected_purchases_90d": pl.Float64,
    "repurchase_probability_90d": pl.Float64,
    "predicted_clv_90d": pl.Float64,
    "churn_risk_grade": pl.String,
    "clv_model": pl.String,
    "purchase_probability": pl.Float64,
    "purchase_percentile": pl.Int64,
    "purchase_top_factors": pl.String,
    "churn_probability": pl.Float64,
    "churn_percentile": pl.Int64,
    "churn_top_factors": pl.String,
    "null_reasons": pl.String,
}
LOOKALIKE_SCHEMA = {"profile_id": pl.String, "similarity": pl.Float64, "similarity_rank": pl.UInt32}
REACH_SCHEMA = {"threshold": pl.Float64, "reach": pl.Int64}


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists predictions")
    for name, columns in DDL.items():
        con.execute(f"create table if not exists predictions.{name} ({columns})")


def completed_purchases(con: duckdb.DuckDBPyConnection, before: dt.datetime) -> pl.DataFrame:
    """Completed purchases before `before`, valued in the reporting currency."""
    return con.execute(
        """select profile_id, occurred_at, cast(commerce_order_price_total_reporting as double) as value
           from profiles.profile_events
           where event_type = 'commerce.purchases' and commerce_order_status = 'completed' and occurred_at < ?""",
        [before],
    ).pl()


def _summary(purchases: pl.DataFrame, end: dt.datetime) -> pl.DataFrame:
    """RFM summary in days up to `end` (exclusive)."""
    return clv.rfm_summary(
        purchases.filter(pl.col("occurred_at") < end),
        "profile_id",
        "occurred_at",
        "value",
        calibration_end=end - dt.timedelta(microseconds=1),
        time_unit_days=1.0,
    )


def _labelled(con, cutoff: dt.datetime, window_days: int) -> pl.DataFrame:
    features = features_as_of(con, cutoff)
    later = purchases_between(con, cutoff, cutoff + dt.timedelta(days=window_days))
    return features.join(later, on="profile_id", how="left").with_columns(
        (pl.col("purchases").fill_null(0) > 0).alias("purchased")
    )


def _skipped(name: str, error: Exception) -> dict:
    message = str(error)
    for prefix in (f"model {name}: ", f"{name}: "):
        message = message.removeprefix(prefix)
    return {"model_name": name, "status": "skipped", "message": message}


# --- CLV: holdout, choice, calibration ----------------------------------------------------------------


def isotonic_calibrator(predicted: np.ndarray, observed: np.ndarray) -> dict:
    """A monotone map from the model's probability to the observed share (isotonic regression), as
    knots for np.interp; kept with the model."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(predicted, observed)
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def calibrate(calibrator: dict | None, probability: np.ndarray) -> np.ndarray:
    if not calibrator or not calibrator["x"]:
        return probability
    return np.interp(probability, calibrator["x"], calibrator["y"])


def _reliability(predicted: np.ndarray, observed: np.ndarray, bins: int = 10) -> list[dict]:
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (predicted >= low) & ((predicted < high) | (high == 1.0))
        if inside.any():
            rows.append(
                {
                    "bin": f"{low:.1f}-{high:.1f}",
                    "customers": int(inside.sum()),
                    "predicted": float(predicted[inside].mean()),
                    "observed": float(observed[inside].mean()),
                }
            )
    return rows


def validate_clv(purchases: pl.DataFrame, as_of: dt.datetime, horizon_days: int = CLV_HORIZON_DAYS) -> dict:
    """Fit every compared model on the history before as_of - horizon and check it on the horizon that
    followed: per model the holdout total, expected vs actual repeat purchases by calibration
    frequency, the cumulative curve, the Brier score of P(purchase in the holdout), and the
    reliability of that probability before and after calibration. Chooses the candidate with the
    lowest Brier score."""
    calibration_end = as_of - dt.timedelta(days=horizon_days)
    calibration = _summary(purchases, calibration_end)
    if calibration.height == 0:
        raise PredictionError(
            f"clv: no completed purchase before {calibration_end:%Y-%m-%d} (the as-of instant minus the "
            f"{horizon_days}-day holdout); nothing to fit. Load purchase history."
        )
    holdout_days = (
        purchases.filter((pl.col("occurred_at") >= calibration_end) & (pl.col("occurred_at") < as_of))
        .with_columns(pl.col("occurred_at").dt.date().alias("day"))
        .unique(["profile_id", "day"])
        .group_by("profile_id")
        .agg(pl.len().alias("holdout_purchases"))
    )
    frame = calibration.join(holdout_days, on="profile_id", how="left").with_columns(
        pl.col("holdout_purchases").fill_null(0)
    )
    x, t_x, age = (frame[c].to_numpy().astype(float) for c in ("frequency", "recency", "T"))
    actual = frame["holdout_purchases"].to_numpy().astype(float)
    bought = (actual > 0).astype(float)
    origin = purchases["occurred_at"].min()
    first_day = np.array([(d - origin.date()).days for d in frame["first_purchase"].to_list()], dtype=float)
    end_day = (calibration_end - origin).total_seconds() / 86400
    days_total = (as_of - origin).total_seconds() / 86400
    actual_daily = (
        purchases.filter(pl.col("occurred_at") < as_of)
        .with_columns(pl.col("occurred_at").dt.date().alias("day"))
        .unique(["profile_id", "day"])
        .sort("day")
    )
    # Repeat purchases only (the first purchase day of each calibration customer is a trial, not a repeat);
    # customers first seen in the holdout are not in the calibration cohort.
    cohort = frame.select("profile_id", "first_purchase")
    repeats = actual_daily.join(cohort, on="profile_id").filter(pl.col("day") > pl.col("first_purchase"))
    week_ends = np.arange(7.0, days_total + 7.0, 7.0)
    repeat_day = np.array([(d - origin.date()).days for d in repeats["day"].to_list()], dtype=float)
    actual_cumulative = [int((repeat_day < w).sum()) for w in week_ends]

    candidates: dict[str, dict] = {}
    for name in CLV_COMPARED:
        try:
            fit = clv.fit_repeat_model(name, x, t_x, age)
        except PredictionError as error:
            candidates[name] = {"status": "skipped", "message": str(error)}
            continue
        expected = clv.expected_purchases(fit, horizon_days, x, t_x, age)
        probability = clv.probability_of_purchase(fit, horizon_days, x, t_x, age)
        by_frequency = []
        for low, high, label in [(k, k, str(k)) for k in range(7)] + [(7, 10**9, "7+")]:
            inside = (x >= low) & (x <= high)
            if inside.any():
                by_frequency.append(
                    {
                        "frequency": label,
                        "customers": int(inside.sum()),
                        "actual": float(actual[inside].mean()),
                        "expected": float(expected[inside].mean()),
                    }
                )
        cumulative = [clv.expected_repeat_purchases_between(fit, 0.0, float(w), first_day) for w in week_ends]
        candidates[name] = {
            "status": "trained",
            "fit": fit.as_dict(),
            "holdout_actual": int(actual.sum()),
            "holdout_expected_conditional": float(np.sum(expected)),
            "holdout_expected_unconditional": clv.expected_repeat_purchases_between(
                fit, end_day, days_total, first_day
            ),
            "mse": float(np.mean((expected - actual) ** 2)),
            "brier": float(np.mean((probability - bought) ** 2)),
            "by_frequency": by_frequency,
            "cumulative_expected": cumulative,
            "_probability": probability,
        }
    usable = [n for n in CLV_CANDIDATES if candidates[n]["status"] == "trained"]
    if not usable:
        raise PredictionError(
            "clv: no candidate model could be fitted on the calibration period: "
            + "; ".join(candidates[n]["message"] for n in CLV_CANDIDATES)
        )
    chosen = min(usable, key=lambda n: candidates[n]["brier"])
    probability = candidates[chosen]["_probability"]
    calibrator = isotonic_calibrator(probability, bought)
    # The reliability after calibration is cross-fitted (each half calibrated on the other), so it
    # is not flattered by fitting and checking on the same customers.
    halves = np.arange(probability.size) % 2 == 0
    cross_fitted = np.empty_like(probability)
    for fold in (halves, ~halves):
        if fold.all() or not fold.any():
            cross_fitted = calibrate(calibrator, probability)
            break
        cross_fitted[fold] = calibrate(isotonic_calibrator(probability[~fold], bought[~fold]), probability[fold])
    for candidate in candidates.values():
        candidate.pop("_probability", None)
    return {
        "horizon_days": horizon_days,
        "calibration_end": calibration_end.isoformat(),
        "as_of": as_of.isoformat(),
        "customers": int(frame.height),
        "chosen": chosen,
        "candidates": candidates,
        "calibrator": calibrator,
        "week_ends": week_ends.tolist(),
        "cumulative_actual": actual_cumulative,
        "calibration_end_day": end_day,
        "reliability_model": _reliability(probability, bought),
        "reliability_calibrated": _reliability(cross_fitted, bought),
        "brier_calibrated": float(np.mean((cross_fitted - bought) ** 2)),
    }


def train_clv(con: duckdb.DuckDBPyConnection, as_of: dt.datetime) -> tuple[dict, dict]:
    """(artifact, report): the chosen repeat model refitted on the whole history, Gamma-Gamma on it,
    the calibrator from the holdout, and the validation behind the choice."""
    purchases = completed_purchases(con, as_of)
    validation = validate_clv(purchases, as_of)
    summary = _summary(purchases, as_of)
    repeat_fit = clv.fit_repeat_model(validation["chosen"], summary["frequency"], summary["recency"], summary["T"])
    gamma_gamma = clv.fit_gamma_gamma(summary["frequency"], summary["monetary_value"])
    artifact = {
        "repeat_model": repeat_fit,
        "gamma_gamma": gamma_gamma,
        "calibrator": validation["calibrator"],
        "horizon_days": CLV_HORIZON_DAYS,
    }
    validation["final_fit"] = repeat_fit.as_dict()
    validation["gamma_gamma"] = gamma_gamma.as_dict()
    chosen = validation["candidates"][validation["chosen"]]
    report = {
        "model_name": CLV_MODEL,
        "status": "trained",
        "message": (
            f"{validation['chosen']} chosen by holdout Brier score; holdout repeat purchases "
            f"{chosen['holdout_actual']:,} actual vs {chosen['holdout_expected_conditional']:,.0f} expected"
        ),
        "train_rows": summary.height,
        "holdout_rows": validation["customers"],
        "parameters": json.dumps(validation, default=str),
    }
    return artifact, report


def train_models(con: duckdb.DuckDBPyConnection, as_of: dt.datetime) -> tuple[dict[str, object], list[dict]]:
    """Fit every model as of `as_of`. Returns (artifacts by model name, one report per model);
    a model that cannot be trained has a report with status 'skipped' and no artifact."""
    artifacts: dict[str, object] = {}
    reports: list[dict] = []
    try:
        artifacts[CLV_MODEL], report = train_clv(con, as_of)
        reports.append(report)
    except PredictionError as error:
        reports.append(_skipped(CLV_MODEL, error))

    def churn(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(pl.col("purchases_total") > 0).with_columns((~pl.col("purchased")).alias("churned"))

    # Out of time: trained at as_of - 2 windows, tested at as_of - 1 window (purchase: T-60d / T-30d).
    for name, window, label, prepare in (
        (PURCHASE_MODEL, PURCHASE_WINDOW_DAYS, "purchased", lambda frame: frame),
        (CHURN_MODEL, CHURN_WINDOW_DAYS, "churned", churn),
    ):
        try:
            train_cutoff = as_of - dt.timedelta(days=2 * window)
            test_cutoff = as_of - dt.timedelta(days=window)
            model = propensity.train_out_of_time(
                name,
                prepare(_labelled(con, train_cutoff, window)),
                prepare(_labelled(con, test_cutoff, window)),
                FEATURES,
                label,
            )
            model.report["parameters"].update(
                train_cutoff=train_cutoff.isoformat(), test_cutoff=test_cutoff.isoformat(), window_days=window
            )
            artifacts[name] = model
            reports.append({"model_name": name, "status": "trained", **model.report})
        except PredictionError as error:
            reports.append(_skipped(name, error))
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
        for report in reports:
            _insert_report(con, report, run_id, trained_at, as_of)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _insert_report(con, report: dict, run_id: str, trained_at: dt.datetime, as_of: dt.datetime) -> None:
    columns = [c.split()[0] for c in DDL["model_reports"].split(",")]
    row = {**report, "run_id": run_id, "trained_at": trained_at, "as_of": as_of}
    if isinstance(row.get("parameters"), dict):
        row["parameters"] = json.dumps(row["parameters"], default=str)
    con.execute(
        f"insert into predictions.model_reports ({', '.join(columns)}) values ({', '.join('?' * len(columns))})",
        [row.get(c) for c in columns],
    )


def latest_models(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[object, dt.datetime]]:
    ensure_tables(con)
    rows = con.execute(
        """select model_name, artifact, trained_at from predictions.models
           qualify row_number() over (partition by model_name order by trained_at desc) = 1"""
    ).fetchall()
    return {name: (pickle.loads(artifact), trained_at) for name, artifact, trained_at in rows}


# --- scoring -------------------------------------------------------------------------------------------


def churn_risk_grade(repurchase_probability: np.ndarray) -> np.ndarray:
    """low / medium / high from the calibrated probability of buying again within the horizon."""
    (low_from, low), (medium_from, medium) = CHURN_GRADES
    probability = np.asarray(repurchase_probability, dtype=float)
    grade = np.select([probability >= low_from, probability >= medium_from], [low, medium], "high").astype(object)
    grade[~np.isfinite(probability)] = None
    return grade


def score_clv(fitted: dict, summary: pl.DataFrame) -> pl.DataFrame:
    """CLV columns of every customer in `summary`, with null_reasons (JSON) where a score is not finite."""
    fit, spend_fit = fitted["repeat_model"], fitted["gamma_gamma"]
    horizon = fitted["horizon_days"]
    x, t_x, age = (summary[c].to_numpy().astype(float) for c in ("frequency", "recency", "T"))
    with np.errstate(all="ignore"):
        p_alive = clv.probability_alive(fit, x, t_x, age)
        expected = clv.expected_purchases(fit, horizon, x, t_x, age)
        repurchase = calibrate(fitted["calibrator"], clv.probability_of_purchase(fit, horizon, x, t_x, age))
        spend = clv.expected_average_value(spend_fit, x, summary["monetary_value"].to_numpy())
        value = np.round(expected * spend, 2)
    reasons: list[dict] = [{} for _ in range(summary.height)]

    def keep(values: np.ndarray, column: str, why: str, upper: float = np.inf) -> np.ndarray:
        bad = ~np.isfinite(values) | (np.abs(values) >= upper)
        for i in np.flatnonzero(bad):
            reasons[i].setdefault(column, why)
        return np.where(bad, np.nan, values)

    p_alive = keep(p_alive, "p_alive", f"{fit.model} gave no finite P(alive) for this history")
    expected = keep(expected, "expected_purchases_90d", f"{fit.model} gave no finite expectation for this history")
    repurchase = keep(repurchase, "repurchase_probability_90d", f"{fit.model} gave no finite probability")
    mean = clv.population_mean_spend(spend_fit)
    spend_reason = (
        f"gamma_gamma q = {spend_fit.q:.3g} <= 1: the spend model has no finite mean"
        if mean is None
        else "no finite expected spend per purchase for this history"
    )
    value = np.where(np.isfinite(spend), value, np.nan)
    for i in np.flatnonzero(~np.isfinite(spend) & np.isfinite(expected)):
        reasons[i]["predicted_clv_90d"] = spend_reason
    value = keep(value, "predicted_clv_90d", "expected purchases x spend is not a finite amount", DECIMAL_LIMIT)
    return pl.DataFrame(
        {
            "profile_id": summary["profile_id"],
            "p_alive": p_alive,
            "expected_purchases_90d": expected,
            "repurchase_probability_90d": repurchase,
            "predicted_clv_90d": value,
            "churn_risk_grade": pl.Series(churn_risk_grade(repurchase), dtype=pl.String),
            "clv_model": [fit.model] * summary.height,
            "_clv_reasons": [json.dumps(r) if r else None for r in reasons],
        },
        nan_to_null=True,
    )


def score_profiles(
    con: duckdb.DuckDBPyConnection, models: dict[str, object], as_of: dt.datetime, skipped: dict[str, str] | None = None
) -> pl.DataFrame:
    """Every known profile with events: CLV, P(alive), churn grade and the propensities; every null
    score has its reason in null_reasons (JSON object: column -> why)."""
    skipped = skipped or {}
    features = features_as_of(con, as_of)
    scores = features.select("profile_id", "purchases_total").with_columns(pl.lit(as_of).alias("scored_as_of"))
    if CLV_MODEL in models:
        summary = _summary(completed_purchases(con, as_of), as_of)
        scores = scores.join(score_clv(models[CLV_MODEL], summary), on="profile_id", how="left")
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
    for column, dtype in SCORE_COLUMNS.items():
        if column not in scores.columns:
            scores = scores.with_columns(pl.lit(None, dtype).alias(column))
    if "_clv_reasons" not in scores.columns:
        scores = scores.with_columns(pl.lit(None, pl.String).alias("_clv_reasons"))
    scores = scores.with_columns(
        null_reasons=pl.struct(scores.columns).map_elements(
            lambda row: _null_reasons(row, models, skipped), return_dtype=pl.String
        )
    )
    return scores.select("profile_id", "scored_as_of", *SCORE_COLUMNS).sort("profile_id")


CLV_COLUMNS = (
    "p_alive",
    "expected_purchases_90d",
    "repurchase_probability_90d",
    "predicted_clv_90d",
    "churn_risk_grade",
)


def _null_reasons(row: dict, models: dict, skipped: dict[str, str]) -> str | None:
    reasons: dict[str, str] = {}
    if CLV_MODEL not in models:
        why = f"model clv skipped: {skipped.get(CLV_MODEL, 'no trained model stored')}"
        reasons.update(dict.fromkeys(CLV_COLUMNS, why))
    elif row["clv_model"] is None:
        reasons.update(dict.fromkeys(CLV_COLUMNS, "no completed purchase before the as-of instant"))
    elif row["_clv_reasons"]:
        reasons.update(json.loads(row["_clv_reasons"]))
        if "repurchase_probability_90d" in reasons:
            reasons["churn_risk_grade"] = reasons["repurchase_probability_90d"]
    # Keys are the column names of profiles.profile_predictions.
    for name, prefix, window in ((PURCHASE_MODEL, "purchase", "30d"), (CHURN_MODEL, "churn", "90d")):
        if row[f"{prefix}_probability"] is not None:
            continue
        if name not in models:
            why = f"model {name} skipped: {skipped.get(name, 'no trained model stored')}"
        else:
            why = "churn is scored for buyers only" if prefix == "churn" else "not scored"
        columns = (f"{prefix}_probability_{window}", f"{prefix}_percentile_{window}", f"{prefix}_top_factors_{window}")
        reasons.update(dict.fromkeys(columns, why))
    return json.dumps(reasons, sort_keys=True) if reasons else None


def replace_table(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    ensure_tables(con)
    con.register("incoming_frame", frame.to_arrow())
    try:
        con.execute(f"create or replace table {table} as select * from incoming_frame")
    finally:
        con.unregister("incoming_frame")


def latest_skips(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """model name -> why its latest training was skipped (models whose latest report is a skip)."""
    ensure_tables(con)
    rows = con.execute(
        """select model_name, status, message from predictions.model_reports
           qualify row_number() over (partition by model_name order by trained_at desc) = 1"""
    ).fetchall()
    return {name: message for name, status, message in rows if status in ("skipped", "refused")}


def train_and_store(
    con: duckdb.DuckDBPyConnection, as_of: dt.datetime, run_id: str, reports_dir: Path | None = None
) -> list[dict]:
    artifacts, reports = train_models(con, as_of)
    store_models(con, artifacts, reports, run_id=run_id, as_of=as_of)
    from cdp.predictive.report import write_model_report

    write_model_report(con, reports_dir)
    return reports


def score_and_store(con: duckdb.DuckDBPyConnection, as_of: dt.datetime) -> pl.DataFrame:
    """Score with the latest stored models into predictions.profile_scores."""
    models = {name: model for name, (model, _) in latest_models(con).items()}
    scores = score_profiles(con, models, as_of, latest_skips(con))
    replace_table(con, "predictions.profile_scores", scores)
    return scores


LOOKALIKE_SEED = "segments.seg_high_value"


def lookalikes_and_store(
    con: duckdb.DuckDBPyConnection, as_of: dt.datetime, run_id: str = "adhoc"
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Look-alikes of LOOKALIKE_SEED into predictions.lookalike_high_value (+ _reach); a seed too small
    to learn from leaves both empty and a skip report (and the audience empty), never a failed run."""
    seed = {pid for (pid,) in con.execute(f"select profile_id from {LOOKALIKE_SEED}").fetchall()}
    trained_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    try:
        scores, reach, report = lookalike.score_lookalikes(features_as_of(con, as_of), seed, LOOKALIKE_SEED)
        report = {"model_name": LOOKALIKE_MODEL, "status": "trained", **report}
    except PredictionError as error:
        scores, reach = pl.DataFrame(schema=LOOKALIKE_SCHEMA), pl.DataFrame(schema=REACH_SCHEMA)
        report = _skipped(LOOKALIKE_MODEL, error)
    replace_table(con, "predictions.lookalike_high_value", scores)
    replace_table(con, "predictions.lookalike_high_value_reach", reach)
    _insert_report(con, report, run_id, trained_at, as_of)
    from cdp.predictive.report import write_model_report

    write_model_report(con)  # with the look-alike's figures when it ran with the training
    return scores, reach, report


def run_warnings(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """One line per model this run skipped, for the run's summary."""
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'predictions' "
        "and table_name = 'model_reports' and table_catalog = current_database()"
    ).fetchone()[0]
    if not exists:
        return []
    rows = con.execute(
        "select model_name, message from predictions.model_reports where run_id = ? and status in ('skipped', 'refused') "
        "order by model_name",
        [run_id],
    ).fetchall()
    return [f"WARNING: model {name} skipped: {message}" for name, message in rows]
