"""Propensity models: the probability of an outcome in the next N days, trained on a time split
(features as of a past cutoff, label from what happened after it) and checked twice: on a random
holdout of the training cutoff (in time) and on the next cutoff (out of time: trained at T - 2w, tested
at T - w for a w-day label window), each with a bootstrap 95% confidence interval. The model that
scores is then refitted on the latest labelled cutoff.

Logistic regression on standardized features: a well-kept scikit-learn model whose coefficients
give each profile's top influential factors directly (coefficient x standardized value)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cdp.predictive import PredictionError

MIN_CLASS_SIZE = 100
SEED = 20240601


BOOTSTRAP_RESAMPLES = 400


def _lift_top_decile(y: np.ndarray, scores: np.ndarray) -> float | None:
    base_rate = float(y.mean())
    top = np.argsort(-scores, kind="stable")[: max(1, len(scores) // 10)]
    return float(y[top].mean() / base_rate) if base_rate else None


def evaluate(y: np.ndarray, scores: np.ndarray, seed: int = SEED) -> dict:
    """AUC and top-decile lift with percentile bootstrap 95% confidence intervals."""
    rng = np.random.default_rng(seed)
    aucs, lifts = [], []
    for _ in range(BOOTSTRAP_RESAMPLES):
        rows = rng.integers(0, len(y), len(y))
        if 0 < y[rows].sum() < len(rows):
            aucs.append(roc_auc_score(y[rows], scores[rows]))
            lift = _lift_top_decile(y[rows], scores[rows])
            if lift is not None:
                lifts.append(lift)
    return {
        "auc": float(roc_auc_score(y, scores)),
        "auc_ci": [float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))],
        "lift_top_decile": _lift_top_decile(y, scores),
        "lift_ci": [float(np.percentile(lifts, 2.5)), float(np.percentile(lifts, 97.5))] if lifts else None,
        "base_rate": float(y.mean()),
        "rows": int(len(y)),
        "positives": int(y.sum()),
    }


def _check_classes(name: str, y: np.ndarray, where: str) -> None:
    positives, negatives = int(y.sum()), int((1 - y).sum())
    if positives < MIN_CLASS_SIZE or negatives < MIN_CLASS_SIZE:
        raise PredictionError(
            f"model {name}: too little data to train: {positives} positives and {negatives} negatives {where}; "
            f"at least {MIN_CLASS_SIZE} of each are needed. Load more history or widen the label window."
        )


def _pipeline() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2000))])


def train_out_of_time(
    name: str,
    train_frame: pl.DataFrame,
    test_frame: pl.DataFrame,
    features: tuple[str, ...],
    label: str,
    holdout_share: float = 0.25,
) -> TrainedModel:
    """Fit on `train_frame` (an earlier cutoff) and report in time (its random holdout) and out of time
    (`test_frame`, the next cutoff), then refit on `test_frame` for scoring."""
    y_train_all = train_frame[label].to_numpy().astype(int)
    y_test = test_frame[label].to_numpy().astype(int)
    _check_classes(name, y_train_all, "at the training cutoff")
    _check_classes(name, y_test, "at the test cutoff")
    x_all = train_frame.select(features).to_numpy().astype(float)
    x_train, x_holdout, y_train, y_holdout = train_test_split(
        x_all, y_train_all, test_size=holdout_share, random_state=SEED, stratify=y_train_all
    )
    started = time.perf_counter()
    earlier = _pipeline().fit(x_train, y_train)
    in_time = evaluate(y_holdout, earlier.predict_proba(x_holdout)[:, 1])
    x_test = test_frame.select(features).to_numpy().astype(float)
    out_of_time = evaluate(y_test, earlier.predict_proba(x_test)[:, 1])
    pipeline = _pipeline().fit(x_test, y_test)
    training_s = time.perf_counter() - started
    report = {
        "model": name,
        "auc": out_of_time["auc"],
        "lift_top_decile": out_of_time["lift_top_decile"],
        "base_rate": out_of_time["base_rate"],
        "train_rows": int(len(y_train)),
        "holdout_rows": int(len(y_test)),
        "positives": int(y_test.sum()),
        "negatives": int((1 - y_test).sum()),
        "training_s": training_s,
        "parameters": {"in_time": in_time, "out_of_time": out_of_time},
    }
    return TrainedModel(name=name, features=features, pipeline=pipeline, report=report)


@dataclass
class TrainedModel:
    name: str
    features: tuple[str, ...]
    pipeline: Pipeline
    report: dict


def train_classifier(
    name: str, frame: pl.DataFrame, features: tuple[str, ...], label: str, holdout_share: float = 0.25
) -> TrainedModel:
    """Fit on a stratified training split, report AUC and top-decile lift on the holdout."""
    y = frame[label].to_numpy().astype(int)
    positives, negatives = int(y.sum()), int((1 - y).sum())
    if positives < MIN_CLASS_SIZE or negatives < MIN_CLASS_SIZE:
        raise PredictionError(
            f"model {name}: too little data to train: {positives} positives and {negatives} negatives; "
            f"at least {MIN_CLASS_SIZE} of each are needed. Load more history or widen the label window."
        )
    x = frame.select(features).to_numpy().astype(float)
    x_train, x_holdout, y_train, y_holdout = train_test_split(
        x, y, test_size=holdout_share, random_state=SEED, stratify=y
    )
    started = time.perf_counter()
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2000))])
    pipeline.fit(x_train, y_train)
    training_s = time.perf_counter() - started
    scores = pipeline.predict_proba(x_holdout)[:, 1]
    top = np.argsort(-scores, kind="stable")[: max(1, len(scores) // 10)]
    base_rate = float(y_holdout.mean())
    report = {
        "model": name,
        "auc": float(roc_auc_score(y_holdout, scores)),
        "lift_top_decile": float(y_holdout[top].mean() / base_rate) if base_rate else None,
        "base_rate": base_rate,
        "train_rows": int(len(y_train)),
        "holdout_rows": int(len(y_holdout)),
        "positives": positives,
        "negatives": negatives,
        "training_s": training_s,
    }
    return TrainedModel(name=name, features=features, pipeline=pipeline, report=report)


def score(model: TrainedModel, frame: pl.DataFrame, top_factors: int = 3) -> pl.DataFrame:
    """Probability, percentile (0-100) and the top influential factors (JSON) of each row."""
    x = frame.select(model.features).to_numpy().astype(float)
    probability = model.pipeline.predict_proba(x)[:, 1]
    scaled = model.pipeline.named_steps["scale"].transform(x)
    contributions = scaled * model.pipeline.named_steps["model"].coef_[0]
    order = np.argsort(-np.abs(contributions), axis=1)[:, :top_factors]
    factors = [
        json.dumps(
            [
                {
                    "feature": model.features[j],
                    "value": float(x[i, j]),
                    "direction": "up" if contributions[i, j] > 0 else "down",
                }
                for j in order[i]
            ]
        )
        for i in range(len(x))
    ]
    ranks = probability.argsort(kind="stable").argsort(kind="stable")
    return pl.DataFrame(
        {
            "profile_id": frame["profile_id"],
            "probability": probability,
            "percentile": np.floor(100 * ranks / max(len(ranks) - 1, 1)).astype(int),
            "top_factors": factors,
        }
    )
