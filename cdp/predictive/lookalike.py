"""Look-alike audiences: score non-members of a seed audience by how much they resemble its
members (a classifier trained on members vs. non-members over the point-in-time features)."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cdp.predictive import PredictionError
from cdp.predictive.features import FEATURES

MIN_SEED_SIZE = 20
REACH_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))


def score_lookalikes(features: pl.DataFrame, seed_profile_ids: set[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Returns (scores of non-members: profile_id, similarity, rank) and the reach curve
    (threshold, profiles at or above it)."""
    is_member = features["profile_id"].is_in(list(seed_profile_ids)).to_numpy()
    if is_member.sum() < MIN_SEED_SIZE or (~is_member).sum() < MIN_SEED_SIZE:
        raise PredictionError(
            f"look-alike needs at least {MIN_SEED_SIZE} seed members and {MIN_SEED_SIZE} other profiles; found "
            f"{int(is_member.sum())} members and {int((~is_member).sum())} others."
        )
    x = features.select(FEATURES).to_numpy().astype(float)
    model = Pipeline(
        [("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2000, class_weight="balanced"))]
    )
    model.fit(x, is_member.astype(int))
    similarity = model.predict_proba(x[~is_member])[:, 1]
    scores = pl.DataFrame(
        {"profile_id": features["profile_id"].filter(~pl.Series(is_member)), "similarity": similarity}
    ).sort(["similarity", "profile_id"], descending=[True, False])
    scores = scores.with_row_index("similarity_rank", offset=1)
    reach = pl.DataFrame(
        {
            "threshold": list(REACH_THRESHOLDS),
            "reach": [int((similarity >= t).sum()) for t in REACH_THRESHOLDS],
        }
    )
    return scores, reach
