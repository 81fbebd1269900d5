"""BG/NBD (Fader, Hardie and Lee 2005) for repeat purchasing and P(alive), and Gamma-Gamma
(Fader, Hardie and Lee 2005b) for spend per transaction, fitted by maximum likelihood with scipy.

Why scipy and not the `lifetimes` library: lifetimes is unmaintained (last release 2020) and
breaks on current pandas/numpy; the two likelihoods are a few lines each, and a plain scipy fit
reproduces the paper's estimates on CDNOW exactly (tests/test_predictive.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from cdp.predictive import PredictionError

DAYS_PER_WEEK = 7.0


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    v: float
    log_likelihood: float

    def as_dict(self) -> dict:
        return asdict(self)


def rfm_summary(
    transactions: pl.DataFrame,
    customer: str,
    purchased_at: str,
    monetary: str | None,
    calibration_end: dt.datetime | dt.date,
    time_unit_days: float = DAYS_PER_WEEK,
) -> pl.DataFrame:
    """Per customer, from purchases up to `calibration_end`: frequency (repeat purchases, counted
    per distinct day, as the paper does), recency t_x and age T (in `time_unit_days` units), and the
    mean value of the repeat purchases."""
    end = pl.lit(calibration_end).cast(pl.Date)
    daily = (
        transactions.with_columns(pl.col(purchased_at).cast(pl.Date).alias("_day"))
        .filter(pl.col("_day") <= end)
        .group_by(customer, "_day")
        .agg((pl.col(monetary).cast(pl.Float64).sum() if monetary else pl.lit(0.0)).alias("_value"))
        .sort(customer, "_day")
    )
    return (
        daily.group_by(customer, maintain_order=True)
        .agg(
            (pl.len() - 1).alias("frequency"),
            pl.col("_day").min().alias("first_purchase"),
            pl.col("_day").max().alias("last_purchase"),
            # Gamma-Gamma models the repeat purchases only (the first one is excluded, as in the paper).
            pl.col("_value").slice(1).mean().alias("monetary_value"),
        )
        .with_columns(
            ((pl.col("last_purchase") - pl.col("first_purchase")).dt.total_days() / time_unit_days).alias("recency"),
            ((end - pl.col("first_purchase")).dt.total_days() / time_unit_days).alias("T"),
        )
    )


def _bgnbd_log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    r, alpha, a, b = params
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    stays = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore"):
        drops = np.where(
            x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x), -np.inf
        )
    return common + np.logaddexp(stays, drops)


def fit_bgnbd(frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> BgNbdParams:
    x, t_x, T = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    if x.size < 50 or (x > 0).sum() < 10:
        raise PredictionError(
            f"BG/NBD needs at least 50 customers and 10 repeat buyers to fit; found {x.size} customers and "
            f"{int((x > 0).sum())} repeat buyers. Load more purchase history."
        )

    def objective(log_params: np.ndarray) -> float:
        return -float(np.sum(_bgnbd_log_likelihood(np.exp(log_params), x, t_x, T)))

    # Nelder-Mead on log-parameters (positivity for free), polished by L-BFGS.
    start = minimize(
        objective, np.zeros(4), method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-8}
    )
    result = minimize(objective, start.x, method="L-BFGS-B")
    best = result if result.fun <= start.fun else start
    r, alpha, a, b = np.exp(best.x)
    return BgNbdParams(r=float(r), alpha=float(alpha), a=float(a), b=float(b), log_likelihood=-float(best.fun))


def probability_alive(params: BgNbdParams, x, t_x, T) -> np.ndarray:
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    odds_dropped = np.where(
        x > 0,
        params.a / np.maximum(params.b + x - 1, 1e-12) * ((params.alpha + T) / (params.alpha + t_x)) ** (params.r + x),
        0.0,
    )
    return 1.0 / (1.0 + odds_dropped)


def expected_purchases(params: BgNbdParams, horizon, x, t_x, T) -> np.ndarray:
    """E[purchases in (T, T + horizon] | x, t_x, T], equation (10) of the paper."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    t = float(horizon)
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    return head * body * probability_alive(params, x, t_x, T)


def fit_gamma_gamma(frequency: np.ndarray, monetary_value: np.ndarray) -> GammaGammaParams:
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary_value, dtype=float)
    keep = (x > 0) & np.isfinite(m) & (m > 0)
    x, m = x[keep], m[keep]
    if x.size < 10:
        raise PredictionError(f"Gamma-Gamma needs at least 10 repeat buyers with spend; found {x.size}.")

    def objective(log_params: np.ndarray) -> float:
        p, q, v = np.exp(log_params)
        ll = (
            gammaln(p * x + q)
            - gammaln(p * x)
            - gammaln(q)
            + q * np.log(v)
            + (p * x - 1) * np.log(m)
            + (p * x) * np.log(x)
            - (p * x + q) * np.log(x * m + v)
        )
        return -float(np.sum(ll))

    result = minimize(
        objective,
        np.log([1.0, 1.0, float(np.mean(m))]),
        method="Nelder-Mead",
        options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-8},
    )
    p, q, v = np.exp(result.x)
    return GammaGammaParams(p=float(p), q=float(q), v=float(v), log_likelihood=-float(result.fun))


def expected_average_value(params: GammaGammaParams, frequency, monetary_value, population_mean: float) -> np.ndarray:
    """E[spend per transaction | x, m_x]; customers without repeat purchases get the population mean."""
    x = np.asarray(frequency, dtype=float)
    m = np.nan_to_num(np.asarray(monetary_value, dtype=float), nan=0.0)
    p, q, v = params.p, params.q, params.v
    conditional = p * (v + x * m) / np.maximum(p * x + q - 1, 1e-12)
    return np.where(x > 0, conditional, population_mean)


def churn_risk_grade(p_alive: np.ndarray) -> np.ndarray:
    return np.select([p_alive >= 0.7, p_alive >= 0.3], ["low", "medium"], "high")
