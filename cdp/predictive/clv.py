"""Buy-till-you-die models of repeat purchasing and a spend model, fitted by maximum likelihood with scipy.

- BG/NBD (Fader, Hardie and Lee 2005): drop-out only after a repeat purchase, so P(alive) = 1 for
  every customer without one. Kept to reproduce the paper; never chosen for scoring.
- MBG/NBD (Batislam, Denizel and Filiztekin 2007): drop-out also at the first purchase, so a one-time
  buyer whose purchase is long ago is likely gone.
- Pareto/NBD (Schmittlein, Morrison and Colombo 1987): exponential lifetimes in continuous time
  (likelihood as in Fader, Hardie and Lee's 2005 note on implementing it).
- Gamma-Gamma (Fader, Hardie and Lee 2005b; Fader and Hardie's 2013 note) for spend per purchase.

Every fit is checked where it runs (`_fit`): the optimizer's gradient must vanish and the Hessian be
positive definite, or the fit raises ModelNotConverged; standard errors come from the inverse Hessian.

Why scipy and not the `lifetimes` library: lifetimes is unmaintained (last release 2020) and breaks on
current pandas/numpy; each likelihood is a few lines, and the fits reproduce the published estimates on
CDNOW (tests/unit/cdp/test_predictive.py).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1, roots_genlaguerre

from cdp.predictive import PredictionError

DAYS_PER_WEEK = 7.0


class ModelNotConverged(PredictionError):
    """The likelihood maximization did not reach a maximum: the fit is not used."""


@dataclass(frozen=True)
class Fit:
    """A fitted model: parameters with standard errors, log-likelihood and how the optimizer ended."""

    model: str
    params: dict[str, float]
    standard_errors: dict[str, float]
    log_likelihood: float
    customers: int
    gradient_norm: float
    iterations: int
    extra: dict = field(default_factory=dict)

    def __getattr__(self, name: str) -> float:
        params = self.__dict__.get("params") or {}
        if name in params:
            return params[name]
        raise AttributeError(name)

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "params": self.params,
            "standard_errors": self.standard_errors,
            "log_likelihood": self.log_likelihood,
            "customers": self.customers,
            "gradient_norm": self.gradient_norm,
            "iterations": self.iterations,
        }


def rfm_summary(
    transactions: pl.DataFrame,
    customer: str,
    purchased_at: str,
    monetary: str | None,
    calibration_end: dt.datetime | dt.date,
    time_unit_days: float = DAYS_PER_WEEK,
) -> pl.DataFrame:
    """Per customer, from purchases up to `calibration_end`: frequency (repeat purchases, counted
    per distinct day, as the paper does: purchases of one day are one transaction, their values
    added), recency t_x and age T (in `time_unit_days` units), and the mean value of the repeat
    purchases."""
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


def _arrays(*values) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(v, dtype=float) for v in values)


# --- likelihoods and predictions ------------------------------------------------------------------


class RepeatModel:
    """A model of repeat purchasing: per customer (x repeat purchases, the last at t_x, observed for T)."""

    name: str
    param_names: tuple[str, ...]
    sees_one_time_buyers: bool

    def log_likelihood(self, p: dict, x, t_x, T) -> np.ndarray: ...
    def p_alive(self, p: dict, x, t_x, T) -> np.ndarray: ...
    def conditional_expected(self, p: dict, t: float, x, t_x, T) -> np.ndarray:
        """E[repeat purchases in (T, T + t] | x, t_x, T]."""

    def unconditional_expected(self, p: dict, t) -> np.ndarray:
        """E[X(t)]: repeat purchases in the first t units after the first purchase, for a new customer."""

    def probability_of_purchase(self, p: dict, t: float, x, t_x, T) -> np.ndarray:
        """P(at least one purchase in (T, T + t] | x, t_x, T)."""


class BgNbd(RepeatModel):
    name, param_names, sees_one_time_buyers = "bg_nbd", ("r", "alpha", "a", "b"), False

    def log_likelihood(self, p, x, t_x, T):
        r, alpha, a, b = (p[k] for k in self.param_names)
        common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
        stays = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore"):
            drops = np.where(
                x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x), -np.inf
            )
        return common + np.logaddexp(stays, drops)

    def p_alive(self, p, x, t_x, T):
        r, alpha, a, b = (p[k] for k in self.param_names)
        x, t_x, T = _arrays(x, t_x, T)
        odds = np.where(x > 0, a / np.maximum(b + x - 1, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
        return 1.0 / (1.0 + odds)

    def conditional_expected(self, p, t, x, t_x, T):
        r, alpha, a, b = (p[k] for k in self.param_names)
        x, t_x, T = _arrays(x, t_x, T)
        z = t / (alpha + T + t)
        head = (a + b + x - 1) / (a - 1)
        body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        return head * body * self.p_alive(p, x, t_x, T)

    def unconditional_expected(self, p, t):
        r, alpha, a, b = (p[k] for k in self.param_names)
        t = np.asarray(t, dtype=float)
        return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))

    def probability_of_purchase(self, p, t, x, t_x, T):
        r, alpha = p["r"], p["alpha"]
        x, t_x, T = _arrays(x, t_x, T)
        # Alive at T, a customer drops out only after a purchase: no purchase in the window means
        # a Poisson zero with the posterior Gamma(r + x, alpha + T) rate.
        return self.p_alive(p, x, t_x, T) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))


class MbgNbd(RepeatModel):
    name, param_names, sees_one_time_buyers = "mbg_nbd", ("r", "alpha", "a", "b"), True

    def log_likelihood(self, p, x, t_x, T):
        r, alpha, a, b = (p[k] for k in self.param_names)
        common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x + 1) - betaln(a, b)
        stays = -(r + x) * np.log(alpha + T)
        drops = np.log(a) - np.log(b + x) - (r + x) * np.log(alpha + t_x)
        return common + np.logaddexp(stays, drops)

    def p_alive(self, p, x, t_x, T):
        r, alpha, a, b = (p[k] for k in self.param_names)
        x, t_x, T = _arrays(x, t_x, T)
        return 1.0 / (1.0 + a / (b + x) * ((alpha + T) / (alpha + t_x)) ** (r + x))

    def conditional_expected(self, p, t, x, t_x, T):
        r, alpha, a, b = (p[k] for k in self.param_names)
        x, t_x, T = _arrays(x, t_x, T)
        z = t / (alpha + T + t)
        head = (a + b + x) / (a - 1)
        body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x + 1, a + b + x, z)
        return head * body * self.p_alive(p, x, t_x, T)

    def unconditional_expected(self, p, t):
        r, alpha, a, b = (p[k] for k in self.param_names)
        t = np.asarray(t, dtype=float)
        return b / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b + 1, a + b, t / (alpha + t)))

    def probability_of_purchase(self, p, t, x, t_x, T):
        r, alpha = p["r"], p["alpha"]
        x, t_x, T = _arrays(x, t_x, T)
        return self.p_alive(p, x, t_x, T) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))


class ParetoNbd(RepeatModel):
    name, param_names, sees_one_time_buyers = "pareto_nbd", ("r", "alpha", "s", "beta"), True

    @staticmethod
    def _log_terms(p, x, t_x, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """log of Gamma(r+x) alpha^r beta^s / Gamma(r), of the 'alive at T' term, and of the 'died in
        (t_x, T]' term (s / (r+s+x) x A0 of the note, in logs for stability)."""
        r, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
        x, t_x, T = _arrays(x, t_x, T)
        rsx = r + s + x
        if alpha >= beta:
            top, gap, second = alpha, alpha - beta, s + 1
        else:
            top, gap, second = beta, beta - alpha, r + x
        log_head = gammaln(r + x) - gammaln(r) + r * math.log(alpha) + s * math.log(beta)
        log_alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        log_early = np.log(hyp2f1(rsx, second, rsx + 1, gap / (top + t_x))) - rsx * np.log(top + t_x)
        log_late = np.log(hyp2f1(rsx, second, rsx + 1, gap / (top + T))) - rsx * np.log(top + T)
        with np.errstate(divide="ignore"):
            log_a0 = log_early + np.log1p(-np.exp(np.minimum(log_late - log_early, 0.0)))
        log_died = np.log(s) - np.log(rsx) + log_a0
        return log_head, log_alive, log_died

    def log_likelihood(self, p, x, t_x, T):
        log_head, log_alive, log_died = self._log_terms(p, x, t_x, T)
        return log_head + np.logaddexp(log_alive, log_died)

    def p_alive(self, p, x, t_x, T):
        _, log_alive, log_died = self._log_terms(p, x, t_x, T)
        return np.exp(log_alive - np.logaddexp(log_alive, log_died))

    def conditional_expected(self, p, t, x, t_x, T):
        r, alpha, s, beta = (p[k] for k in self.param_names)
        x, t_x, T = _arrays(x, t_x, T)
        if abs(s - 1) < 1e-9:
            per_alive = (r + x) * (beta + T) / (alpha + T) * np.log((beta + T + t) / (beta + T))
        else:
            per_alive = (r + x) * (beta + T) / ((alpha + T) * (s - 1)) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1))
        return per_alive * self.p_alive(p, x, t_x, T)

    def unconditional_expected(self, p, t):
        r, alpha, s, beta = (p[k] for k in self.param_names)
        t = np.asarray(t, dtype=float)
        if abs(s - 1) < 1e-9:
            return r * beta / alpha * np.log((beta + t) / beta)
        return r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))

    def probability_of_purchase(self, p, t, x, t_x, T, nodes: int = 48):
        """Alive at T, the rates have independent posteriors lambda ~ Gamma(r + x, alpha + T) and
        mu ~ Gamma(s, beta + T); a purchase in (T, T + t] comes before death with probability
        lambda / (lambda + mu) x (1 - exp(-(lambda + mu) t)). The expectation over both posteriors is
        a generalized Gauss-Laguerre quadrature (tested against simulation)."""
        r, alpha, s, beta = (p[k] for k in self.param_names)
        x, t_x, T = _arrays(x, t_x, T)
        mu_nodes, mu_weights = roots_genlaguerre(nodes, s - 1)
        mu_weights = mu_weights / math.gamma(s)
        inside = np.empty_like(x)
        for shape in np.unique(r + x):
            rows = np.flatnonzero(r + x == shape)
            lam_nodes, lam_weights = roots_genlaguerre(nodes, shape - 1)
            lam_weights = lam_weights / np.exp(gammaln(shape))
            for chunk in np.array_split(rows, max(1, rows.size // 512)):
                lam = lam_nodes[None, :, None] / (alpha + T[chunk])[:, None, None]
                mu = mu_nodes[None, None, :] / (beta + T[chunk])[:, None, None]
                total = lam + mu
                value = lam / total * -np.expm1(-total * t)
                inside[chunk] = np.einsum("nij,i,j->n", value, lam_weights, mu_weights)
        return self.p_alive(p, x, t_x, T) * np.clip(inside, 0.0, 1.0)


MODELS: dict[str, RepeatModel] = {m.name: m for m in (BgNbd(), MbgNbd(), ParetoNbd())}


# --- fitting ----------------------------------------------------------------------------------------


def _numeric_hessian(f: Callable[[np.ndarray], float], theta: np.ndarray, step: float = 1e-4) -> np.ndarray:
    k = theta.size
    hessian = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            e_i, e_j = np.eye(k)[i] * step, np.eye(k)[j] * step
            value = (f(theta + e_i + e_j) - f(theta + e_i - e_j) - f(theta - e_i + e_j) + f(theta - e_i - e_j)) / (
                4 * step * step
            )
            hessian[i, j] = hessian[j, i] = value
    return hessian


def _numeric_gradient(f: Callable[[np.ndarray], float], theta: np.ndarray, step: float = 1e-6) -> np.ndarray:
    return np.array([(f(theta + e) - f(theta - e)) / (2 * step) for e in np.eye(theta.size) * step])


def _fit(
    model: str,
    names: tuple[str, ...],
    negative_log_likelihood: Callable[[np.ndarray], float],
    start: np.ndarray,
    customers: int,
) -> Fit:
    """Maximize on log-parameters (positivity for free): Nelder-Mead, polished by BFGS. Then check
    that it is a maximum (gradient ~ 0, Hessian positive definite, parameters finite and not
    running off to 0 or infinity) and take standard errors from the inverse Hessian (delta method
    back to the natural scale)."""

    def objective(theta: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            value = negative_log_likelihood(theta)
        return value if np.isfinite(value) else 1e300

    coarse = minimize(objective, start, method="Nelder-Mead", options={"maxiter": 6000, "xatol": 1e-9, "fatol": 1e-9})
    polished = minimize(objective, coarse.x, method="BFGS", options={"gtol": 1e-6})
    best = polished if polished.fun <= coarse.fun else coarse
    theta = best.x
    params = {name: float(v) for name, v in zip(names, np.exp(theta), strict=True)}
    gradient = _numeric_gradient(objective, theta)
    hessian = _numeric_hessian(objective, theta)
    eigenvalues = np.linalg.eigvalsh(hessian) if np.all(np.isfinite(hessian)) else np.array([np.nan])
    problems = []
    if not np.isfinite(best.fun) or best.fun >= 1e299:
        problems.append("the log-likelihood is not finite at the optimum")
    if np.any(np.abs(theta) > 13.8):  # beyond 1e6 or below 1e-6: a boundary, not a maximum
        problems.append(
            "a parameter ran off to 0 or infinity (" + ", ".join(f"{k}={v:.3g}" for k, v in params.items()) + ")"
        )
    gradient_norm = float(np.max(np.abs(gradient))) if np.all(np.isfinite(gradient)) else math.inf
    if gradient_norm > 1e-2 * max(1.0, math.sqrt(customers)):
        problems.append(f"the gradient is not zero (largest component {gradient_norm:.3g})")
    if not np.all(np.isfinite(eigenvalues)) or eigenvalues.min() <= 0:
        problems.append(
            "the Hessian is not positive definite (a flat or saddle point: the data do not identify the parameters)"
        )
    if problems:
        raise ModelNotConverged(
            f"{model}: the fit on {customers:,} customers did not converge: {'; '.join(problems)}. "
            "It is not used; check the purchase history (too short, too few repeat buyers) or the time unit."
        )
    covariance_log = np.linalg.inv(hessian)
    errors = {name: float(params[name] * math.sqrt(max(covariance_log[i, i], 0.0))) for i, name in enumerate(names)}
    return Fit(
        model=model,
        params=params,
        standard_errors=errors,
        log_likelihood=-float(best.fun),
        customers=customers,
        gradient_norm=gradient_norm,
        iterations=int(coarse.nit + polished.nit),
    )


MIN_CUSTOMERS, MIN_REPEAT_BUYERS = 50, 10


def fit_repeat_model(name: str, frequency, recency, T) -> Fit:
    model = MODELS[name]
    x, t_x, age = _arrays(frequency, recency, T)
    if x.size < MIN_CUSTOMERS or (x > 0).sum() < MIN_REPEAT_BUYERS:
        raise PredictionError(
            f"{name} needs at least {MIN_CUSTOMERS} customers and {MIN_REPEAT_BUYERS} repeat buyers to fit; found "
            f"{x.size} customers and {int((x > 0).sum())} repeat buyers. Load more purchase history."
        )

    def negative(theta: np.ndarray) -> float:
        params = dict(zip(model.param_names, np.exp(theta), strict=True))
        return -float(np.sum(model.log_likelihood(params, x, t_x, age)))

    # Start at the scale of the data: alpha (and beta) near the mean age, shapes at 1.
    scale = math.log(max(float(np.mean(age)), 1e-3))
    start = np.array([0.0, scale, 0.0, 0.0 if name != "pareto_nbd" else scale])
    return _fit(name, model.param_names, negative, start, int(x.size))


def fit_bgnbd(frequency, recency, T) -> Fit:
    return fit_repeat_model("bg_nbd", frequency, recency, T)


def probability_alive(params: Fit, x, t_x, T) -> np.ndarray:
    return MODELS[params.model].p_alive(params.params, x, t_x, T)


def expected_purchases(params: Fit, horizon, x, t_x, T) -> np.ndarray:
    """E[purchases in (T, T + horizon] | x, t_x, T] (equation 10 of FHL 2005 for BG/NBD)."""
    return MODELS[params.model].conditional_expected(params.params, float(horizon), x, t_x, T)


def expected_unconditional(params: Fit, t) -> np.ndarray:
    return MODELS[params.model].unconditional_expected(params.params, t)


def probability_of_purchase(params: Fit, horizon, x, t_x, T) -> np.ndarray:
    return MODELS[params.model].probability_of_purchase(params.params, float(horizon), x, t_x, T)


def expected_repeat_purchases_between(params: Fit, start, end, trial_times) -> float:
    """Aggregate forecast: repeat purchases in (start, end] of customers whose first purchase was at
    `trial_times` (same time unit), from the unconditional E[X(t)] (the paper's tracking plots)."""
    born = np.asarray(trial_times, dtype=float)
    until_end = np.clip(end - born, 0, None)
    until_start = np.clip(start - born, 0, None)
    return float(np.sum(expected_unconditional(params, until_end) - expected_unconditional(params, until_start)))


# --- Gamma-Gamma ------------------------------------------------------------------------------------


def fit_gamma_gamma(frequency, monetary_value) -> Fit:
    x, m = _arrays(frequency, monetary_value)
    keep = (x > 0) & np.isfinite(m) & (m > 0)
    x, m = x[keep], m[keep]
    if x.size < MIN_REPEAT_BUYERS:
        raise PredictionError(
            f"gamma_gamma needs at least {MIN_REPEAT_BUYERS} repeat buyers with spend; found {x.size}. "
            "Load more purchase history."
        )

    def negative(theta: np.ndarray) -> float:
        p, q, v = np.exp(theta)
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

    return _fit("gamma_gamma", ("p", "q", "v"), negative, np.log([1.0, 1.0, float(np.mean(m))]), int(x.size))


def population_mean_spend(params: Fit) -> float | None:
    """E[M] = p v / (q - 1); undefined (None) when q <= 1 (spend with an infinite mean)."""
    return params.p * params.v / (params.q - 1) if params.q > 1 else None


def expected_average_value(params: Fit, frequency, monetary_value) -> np.ndarray:
    """E[spend per transaction | x, m_x]; customers without repeat purchases get the population
    mean p v / (q - 1). NaN where the model has no finite mean (q <= 1): the caller says why."""
    x = np.asarray(frequency, dtype=float)
    m = np.nan_to_num(np.asarray(monetary_value, dtype=float), nan=0.0)
    p, q, v = params.p, params.q, params.v
    with np.errstate(all="ignore"):
        conditional = p * (v + x * m) / (p * x + q - 1)
    prior = population_mean_spend(params)
    conditional = np.where(p * x + q - 1 > 0, conditional, np.nan)
    return np.where(x > 0, conditional, np.nan if prior is None else prior)
