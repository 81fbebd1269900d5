"""Look-alike audiences: non-members of a seed audience scored by how much they behave like its members.

A look-alike that re-learns the seed's own rule is useless (the next-highest spenders of a "revenue >=
1000" seed are not new insight), so:
- the features that define the seed are left out: the traits its definition names (read from the
  audience's YAML or SQL) map to feature families (monetary, frequency, recency, tenure), and every
  feature of those families is excluded; what is left is behaviour, including engagement rates over the
  profile's active span (web and app events per active week, email open and click rates);
- part of the seed is held out: the model learns from the rest, and a profile's `similarity` is the share
  of held-out members it scores at least as high as (0.5 = as seed-like as the median held-out member),
  so a threshold means the same thing whatever the seed;
- the audience is every non-member above a similarity threshold (the reach curve shows the size at each),
  not "as many as the seed";
- the report says how well held-out members are told apart from non-members (AUC) and how much the
  similarity still follows each excluded feature (Spearman), i.e. whether it resembles the seed beyond
  the rule.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cdp.predictive import PredictionError
from cdp.predictive.features import FEATURE_FAMILIES, LOOKALIKE_FEATURES

MIN_SEED_SIZE = 20
HOLDOUT_SHARE = 0.25
SEED = 20240601
REACH_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 1.0, 0.05))

# Which feature families each trait (or prediction) of an audience definition stands for.
# Revenue is purchases x spend per purchase, and a lifetime total also grows with tenure: a seed of
# lifetime revenue leaves all three out (a look-alike must find people who buy like the members, not
# the ones who have simply been around long enough to add up to the threshold).
TRAIT_FAMILIES: dict[str, tuple[str, ...]] = {
    "lifetime_revenue": ("monetary", "frequency", "tenure"),
    "revenue_90d": ("monetary", "frequency"),
    "average_order_value": ("monetary",),
    "rfm_monetary_score": ("monetary",),
    "predicted_clv_90d": ("monetary", "frequency"),
    "lifetime_orders": ("frequency", "tenure"),
    "first_purchase_at": ("tenure",),
    "orders_90d": ("frequency",),
    "rfm_frequency_score": ("frequency",),
    "expected_purchases_90d": ("frequency",),
    "last_purchase_at": ("recency",),
    "days_since_last_purchase": ("recency",),
    "rfm_recency_score": ("recency",),
    "rfm_group": ("recency", "frequency"),
    "p_alive": ("recency", "frequency"),
}


def seed_definition_text(seed_table: str, project_dir: Path) -> str:
    """What decides membership of the seed audience: the conditions and rank of its YAML
    (dbt_project/audiences/<name>.yml; its extra output columns do not), or its SQL model."""
    import yaml

    name = seed_table.split(".")[-1].removeprefix("seg_")
    path = project_dir / "audiences" / f"{name}.yml"
    if path.exists():
        definition = yaml.safe_load(path.read_text()) or {}
        return yaml.safe_dump({k: definition.get(k) for k in ("conditions", "rank")})
    for path in project_dir.glob(f"models/**/seg_{name}.sql"):
        return path.read_text()
    return ""


def excluded_features(definition: str) -> dict[str, list[str]]:
    """feature -> the traits of the definition that make it part of the seed's rule."""
    named = set(re.findall(r"\b([a-z][a-z0-9_]*)\b", definition))
    excluded: dict[str, list[str]] = {}
    for trait in sorted(named & set(TRAIT_FAMILIES)):
        for family in TRAIT_FAMILIES[trait]:
            for feature in FEATURE_FAMILIES.get(family, ()):
                excluded.setdefault(feature, []).append(trait)
    return excluded


def _pipeline() -> Pipeline:
    return Pipeline(
        [("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2000, class_weight="balanced"))]
    )


def score_lookalikes(
    features: pl.DataFrame, seed_profile_ids: set[str], seed_table: str, definition: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Returns (non-members: profile_id, similarity, similarity_rank), the reach curve (threshold,
    reach) and a report (features used and excluded, held-out AUC, Spearman with excluded features)."""
    from cdp.settings import DBT_PROJECT_DIR

    if definition is None:
        definition = seed_definition_text(seed_table, DBT_PROJECT_DIR)
    excluded = excluded_features(definition)
    used = tuple(f for f in LOOKALIKE_FEATURES if f not in excluded)
    is_member = features["profile_id"].is_in(list(seed_profile_ids)).to_numpy()
    members, others = int(is_member.sum()), int((~is_member).sum())
    if members < MIN_SEED_SIZE or others < MIN_SEED_SIZE:
        raise PredictionError(
            f"look-alike of {seed_table}: at least {MIN_SEED_SIZE} seed members and {MIN_SEED_SIZE} other profiles "
            f"with events are needed to learn from; found {members} members and {others} others. "
            "The look-alike audience stays empty until the seed grows."
        )
    rng = np.random.default_rng(SEED)
    held_out = np.zeros(is_member.size, dtype=bool)
    member_rows, other_rows = np.flatnonzero(is_member), np.flatnonzero(~is_member)
    held_out[rng.choice(member_rows, max(5, int(round(HOLDOUT_SHARE * members))), replace=False)] = True
    held_out[rng.choice(other_rows, max(5, int(round(HOLDOUT_SHARE * others))), replace=False)] = True
    x = features.select(used).to_numpy().astype(float)
    model = _pipeline().fit(x[~held_out], is_member[~held_out].astype(int))
    raw = model.decision_function(x)
    held_members = np.sort(raw[held_out & is_member])
    # similarity: the share of held-out seed members scoring at most this much.
    similarity = np.searchsorted(held_members, raw, side="right") / held_members.size
    auc = float(roc_auc_score(is_member[held_out].astype(int), raw[held_out]))

    non_member_ids = features["profile_id"].filter(~pl.Series(is_member))
    scores = (
        pl.DataFrame({"profile_id": non_member_ids, "similarity": similarity[~is_member]})
        .sort(["similarity", "profile_id"], descending=[True, False])
        .with_row_index("similarity_rank", offset=1)
        .select("profile_id", "similarity", "similarity_rank")
    )
    reach = pl.DataFrame(
        {
            "threshold": list(REACH_THRESHOLDS),
            "reach": [int((similarity[~is_member] >= t).sum()) for t in REACH_THRESHOLDS],
        }
    )
    followed = {}
    for feature in excluded:
        values = features[feature].to_numpy().astype(float)[~is_member]
        if np.ptp(values) > 0:
            followed[feature] = float(spearmanr(similarity[~is_member], values).statistic)
    report = {
        "auc": auc,
        "train_rows": int((~held_out).sum()),
        "holdout_rows": int(held_out.sum()),
        "positives": members,
        "negatives": others,
        "parameters": {
            "seed": seed_table,
            "features": list(used),
            "excluded_features": excluded,
            "held_out_members": int((held_out & is_member).sum()),
            "holdout_auc": auc,
            "spearman_with_excluded": followed,
            "reach": dict(zip(reach["threshold"].to_list(), reach["reach"].to_list(), strict=True)),
        },
    }
    return scores, reach, report
