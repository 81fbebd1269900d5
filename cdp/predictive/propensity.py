"""Propensity models: the probability of an outcome in the next N days, trained on a time split
(features as of a past cutoff, label from what happened after it) and checked on a holdout.

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
