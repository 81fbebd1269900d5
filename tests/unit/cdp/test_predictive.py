"""Predictive traits, validated against published results and the demo's planted signal."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil

import duckdb
import numpy as np
import pytest

import data_contracts
from cdp.predictive import PredictionError, clv
from support.workspace import PROJECT_ROOT

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "cdnow"
# Fader, Hardie and Lee (2005), Marketing Science 24(2), BG/NBD on the CDNOW sample, 39-week calibration.
PAPER = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


@pytest.fixture(scope="module")
def cdnow_transactions(tmp_path_factory):
    """The CDNOW sample loaded through the product's own source path: contract + loader."""
    root = tmp_path_factory.mktemp("cdnow")
    landing = root / "landing" / "cdnow" / "transactions"
    landing.mkdir(parents=True)
    shutil.copy(FIXTURES / "CDNOW_sample.csv", landing)
    contract = data_contracts.load_contracts(FIXTURES)["cdnow__transactions"]
    with duckdb.connect(str(root / "w.duckdb")) as con:
        report = data_contracts.load_table(con, contract, root / "landing", load_id="cdnow")
        # The 21 rows that repeat another row exactly are purchases too: nothing is quarantined.
        assert (report.rows_read, report.rows_accepted, report.rows_quarantined) == (6919, 6919, 0)
        yield con.execute("select * from raw.cdnow__transactions").pl(), report


def test_bgnbd_reproduces_the_published_cdnow_estimates(cdnow_transactions):
    transactions, report = cdnow_transactions
    summary = clv.rfm_summary(
        transactions, "customer_id", "purchase_date", "amount", calibration_end=dt.date(1997, 9, 30)
    )
    assert summary.height == 2357
    params = clv.fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    for name, published in PAPER.items():
        fitted = getattr(params, name)
        assert fitted == pytest.approx(published, rel=0.01), f"{name}: fitted {fitted:.4f}, paper {published}"
    assert params.log_likelihood == pytest.approx(-9582.4, abs=0.5)


def test_expected_purchases_and_p_alive_behave(cdnow_transactions):
    transactions, _ = cdnow_transactions
    summary = clv.rfm_summary(
        transactions, "customer_id", "purchase_date", "amount", calibration_end=dt.date(1997, 9, 30)
    )
    params = clv.fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    # A customer with 2 repeat purchases, the last one recent, is more likely alive than one whose
    # last purchase was long ago (same frequency and age).
    recent, stale = clv.probability_alive(params, [2, 2], [30.0, 5.0], [32.0, 32.0])
    assert recent > stale
    # BG/NBD's blind spot, kept for comparison: a customer without repeat purchases is alive for sure.
    assert clv.probability_alive(params, [0], [0.0], [30.0])[0] == 1.0
    # Over the 39 holdout weeks the model's conditional expectations add up to roughly the purchase
    # days that happened (measured: 1,653 predicted vs 1,882 actual, -12%).
    predicted = clv.expected_purchases(params, 39, summary["frequency"], summary["recency"], summary["T"]).sum()
    actual = (
        transactions.filter(transactions["purchase_date"] > dt.date(1997, 9, 30))
        .unique(["customer_id", "purchase_date"])
        .height
    )
    assert predicted == pytest.approx(actual, rel=0.15)


def test_gamma_gamma_predicts_spend_of_repeat_buyers(cdnow_transactions):
    transactions, _ = cdnow_transactions
    summary = clv.rfm_summary(
        transactions, "customer_id", "purchase_date", "amount", calibration_end=dt.date(1998, 6, 30)
    )
    params = clv.fit_gamma_gamma(summary["frequency"], summary["monetary_value"])
    repeat = summary.filter(summary["frequency"] > 0)
    expected = clv.expected_average_value(params, repeat["frequency"], repeat["monetary_value"])
    # Shrinkage towards the population mean: predictions are less spread than observed means,
    # and on average agree with them.
    assert np.std(expected) < np.std(repeat["monetary_value"].to_numpy())
    assert np.mean(expected) == pytest.approx(repeat["monetary_value"].mean(), rel=0.05)


def test_propensity_refuses_thin_data_and_is_reproducible():
    import polars as pl

    from cdp.predictive import PredictionError, propensity

    rng = np.random.default_rng(0)
    n = 600
    signal = rng.normal(size=n)
    frame = pl.DataFrame(
        {
            "profile_id": [f"p{i}" for i in range(n)],
            "signal": signal,
            "noise": rng.normal(size=n),
            "label": (signal + rng.normal(size=n)) > 1.2,
        }
    )
    thin = frame.head(300)
    with pytest.raises(PredictionError, match=r"too little data to train: \d+ positives .* at least 100 of each"):
        propensity.train_classifier(
            "thin", thin.with_columns(pl.col("label") & (pl.col("signal") > 2)), ("signal", "noise"), "label"
        )
    first = propensity.train_classifier("m", frame, ("signal", "noise"), "label")
    second = propensity.train_classifier("m", frame, ("signal", "noise"), "label")
    assert first.report["auc"] > 0.75
    assert propensity.score(first, frame).equals(propensity.score(second, frame))
    top = json.loads(propensity.score(first, frame.sort("signal", descending=True).head(1))["top_factors"][0])
    assert top[0] == {"feature": "signal", "value": pytest.approx(frame["signal"].max()), "direction": "up"}


# Fader, Hardie and Lee (2005), "A Note on Implementing the Pareto/NBD Model in MATLAB": CDNOW sample,
# 39-week calibration.
PARETO_PAPER = {"r": 0.5533, "alpha": 10.5776, "s": 0.6061, "beta": 11.6690}
# Fader and Hardie (2013), "The Gamma-Gamma Model of Monetary Value": CDNOW sample, calibration to 1997-09-30.
GAMMA_GAMMA_PAPER = {"p": 6.25, "q": 3.74, "v": 15.44}
CDNOW_ORIGIN = dt.date(1997, 1, 1)
CDNOW_CALIBRATION_END = dt.date(1997, 9, 30)
CDNOW_END = dt.date(1998, 6, 30)


@pytest.fixture(scope="module")
def cdnow_summary(cdnow_transactions):
    transactions, _ = cdnow_transactions
    return clv.rfm_summary(
        transactions, "customer_id", "purchase_date", "amount", calibration_end=CDNOW_CALIBRATION_END
    )


def test_pareto_nbd_reproduces_the_published_cdnow_estimates(cdnow_summary):
    fit = clv.fit_repeat_model("pareto_nbd", cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    for name, published in PARETO_PAPER.items():
        assert fit.params[name] == pytest.approx(published, rel=0.005), f"{name}: {fit.params[name]:.4f}"
    assert fit.log_likelihood == pytest.approx(-9594.98, abs=0.05)
    assert all(0 < error < fit.params[name] for name, error in fit.standard_errors.items())


def test_gamma_gamma_reproduces_the_published_cdnow_estimates(cdnow_summary):
    """With every CDNOW row loaded (21 repeated identical rows are real purchases), the spend model
    matches Fader and Hardie's p, q, gamma to the published precision."""
    fit = clv.fit_gamma_gamma(cdnow_summary["frequency"], cdnow_summary["monetary_value"])
    assert fit.customers == 946  # the repeat buyers of the calibration period
    for name, published in GAMMA_GAMMA_PAPER.items():
        assert fit.params[name] == pytest.approx(published, abs=0.006), f"{name}: {fit.params[name]:.4f}"


def test_cdnow_holdout_forecasts_beside_the_1882_actual_repeat_purchases(cdnow_transactions, cdnow_summary, capsys):
    """Weeks 40-78 hold 1,882 repeat purchases (distinct customer-days). Each model's aggregate
    forecast from the unconditional E[X(t)] (by each customer's first purchase week) and the sum of
    its conditional expectations, printed beside it."""
    transactions, _ = cdnow_transactions
    actual = (
        transactions.filter(transactions["purchase_date"] > CDNOW_CALIBRATION_END)
        .unique(["customer_id", "purchase_date"])
        .height
    )
    assert actual == 1882
    weeks = lambda day: (day - CDNOW_ORIGIN).days / 7  # noqa: E731
    trial = np.array([weeks(d) for d in cdnow_summary["first_purchase"].to_list()])
    start, end = weeks(CDNOW_CALIBRATION_END), weeks(CDNOW_END)
    lines, misses = [], []
    # Measured: BG/NBD 1,664 / 1,653 (-12%), MBG/NBD 1,572 / 1,577 (-16%), Pareto/NBD 1,743 / 1,666 (-7%/-11%):
    # the three models under-forecast this holdout, as the paper's tracking plot shows from week 60 on.
    for name, tolerance in (("bg_nbd", 0.15), ("mbg_nbd", 0.2), ("pareto_nbd", 0.15)):
        fit = clv.fit_repeat_model(name, cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
        aggregate = clv.expected_repeat_purchases_between(fit, start, end, trial)
        conditional = float(
            clv.expected_purchases(
                fit, end - start, cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"]
            ).sum()
        )
        lines.append(f"{name:<11} E[X(t)] {aggregate:7,.0f}  conditional {conditional:7,.0f}  actual {actual:,}")
        if not (abs(aggregate / actual - 1) < tolerance and abs(conditional / actual - 1) < tolerance):
            misses.append(name)
    with capsys.disabled():
        print("\nCDNOW holdout weeks 40-78:\n  " + "\n  ".join(lines))
    assert not misses, lines


def test_mbg_and_pareto_see_one_time_buyers(cdnow_summary):
    """Unlike BG/NBD, a one-time buyer whose purchase is long ago is probably gone: P(alive) falls with
    the time since the purchase. MBG/NBD's P(alive) checked against its closed form at x = 0:
    1 / (1 + a / b x ((alpha + T) / alpha)^r)."""
    for name in ("mbg_nbd", "pareto_nbd"):
        fit = clv.fit_repeat_model(name, cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
        recent, old = clv.probability_alive(fit, [0, 0], [0.0, 0.0], [2.0, 39.0])
        assert old < recent < 1.0 and old < 0.5, (name, recent, old)
    fit = clv.fit_repeat_model("mbg_nbd", cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    r, alpha, a, b = (fit.params[k] for k in ("r", "alpha", "a", "b"))
    assert clv.probability_alive(fit, [0], [0.0], [30.0])[0] == pytest.approx(
        1 / (1 + a / b * ((alpha + 30) / alpha) ** r)
    )


def simulate_mbg_nbd(params: dict, ages: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """MBG/NBD customers: rate ~ Gamma(r, alpha), drop-out probability ~ Beta(a, b), tried at the
    first purchase and after every repeat purchase."""
    rates = rng.gamma(params["r"], 1 / params["alpha"], ages.size)
    drop = rng.beta(params["a"], params["b"], ages.size)
    x, t_x = np.zeros(ages.size), np.zeros(ages.size)
    for i, age in enumerate(ages):
        t = 0.0
        if rng.random() < drop[i]:
            continue
        while True:
            t += rng.exponential(1 / rates[i])
            if t > age:
                break
            x[i], t_x[i] = x[i] + 1, t
            if rng.random() < drop[i]:
                break
    return x, t_x, ages


def test_standard_errors_match_the_spread_of_estimates_on_simulated_data():
    """On 20 data sets of 1,500 MBG/NBD customers simulated from known parameters: the estimates centre
    on the truth, the Hessian's standard errors (log scale, the scale of the fit) are of the size of the
    estimates' actual (robust) spread over the data sets. A sample can also put the maximum on a boundary
    (drop-out the same for everyone: a, b -> infinity); that fit must refuse, and be rare."""
    truth = {"r": 0.8, "alpha": 20.0, "a": 0.6, "b": 2.5}
    rng = np.random.default_rng(11)
    estimates, errors_1500, refused = [], [], 0
    for _ in range(20):
        try:
            fit = clv.fit_repeat_model("mbg_nbd", *simulate_mbg_nbd(truth, rng.uniform(20, 80, 1500), rng))
        except clv.ModelNotConverged:
            refused += 1
            continue
        estimates.append([math.log(fit.params[name]) for name in truth])
        errors_1500.append({name: fit.standard_errors[name] / fit.params[name] for name in truth})
    assert refused <= 2
    estimates = np.array(estimates)
    for column, (name, value) in enumerate(truth.items()):
        # A robust spread (1.4826 x the median absolute deviation): a few far estimates of a and b would
        # dominate a plain standard deviation.
        centre = float(np.median(estimates[:, column]))
        spread = 1.4826 * float(np.median(np.abs(estimates[:, column] - centre)))
        typical = float(np.median([e[name] for e in errors_1500]))
        assert abs(centre - math.log(value)) < 2 * spread / math.sqrt(len(estimates)) + 0.1, (name, centre)
        assert 0.6 < typical / spread < 1.6, (name, typical, spread)


def test_pareto_repurchase_probability_matches_simulation():
    """P(at least one purchase in the next t | x, t_x, T) of the Pareto/NBD (a quadrature over the
    rate posteriors) against a Monte Carlo of the same posterior process."""
    params = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}
    fit = clv.Fit("pareto_nbd", params, {}, 0.0, 0, 0.0, 0)
    rng = np.random.default_rng(3)
    for x, t_x, age in ((0, 0.0, 30.0), (3, 20.0, 30.0), (8, 29.0, 32.0)):
        p_alive = clv.probability_alive(fit, [x], [t_x], [age])[0]
        lam = rng.gamma(params["r"] + x, 1 / (params["alpha"] + age), 400_000)
        mu = rng.gamma(params["s"], 1 / (params["beta"] + age), 400_000)
        first_purchase = rng.exponential(1 / lam)
        death = rng.exponential(1 / mu)
        simulated = p_alive * np.mean((first_purchase < death) & (first_purchase < 26.0))
        computed = clv.probability_of_purchase(fit, 26.0, [x], [t_x], [age])[0]
        assert computed == pytest.approx(simulated, abs=0.004), (x, t_x, age)


def test_a_fit_that_does_not_converge_fails_loudly():
    """Customers who never stop buying (every one active at the end, no drop-out to see): the drop-out
    parameters run off to the boundary, and the fit refuses to be used."""
    rng = np.random.default_rng(1)
    ages = rng.uniform(30, 60, 300)
    x = np.floor(ages / 5)
    with pytest.raises(clv.ModelNotConverged, match=r"mbg_nbd: the fit on 300 customers did not converge: .*"):
        clv.fit_repeat_model("mbg_nbd", x, ages - 0.01, ages)


def test_lookalike_leaves_out_the_seed_rule_and_learns_behaviour():
    """A seed defined by revenue (like high_value): revenue and purchase counts are left out, so the
    model must find the members by a behaviour planted beside the rule (web visits); the similarity
    scale is the share of held-out members, and the reach curve falls as the threshold rises."""
    import polars as pl

    from cdp.predictive import lookalike
    from cdp.predictive.features import LOOKALIKE_FEATURES

    rng = np.random.default_rng(5)
    n = 3000
    engaged = rng.random(n) < 0.3
    frame = {name: rng.poisson(2.0, n).astype(float) for name in LOOKALIKE_FEATURES}
    frame["web_events_180d"] = rng.poisson(np.where(engaged, 12.0, 3.0)).astype(float)
    frame["purchases_total"] = rng.poisson(np.where(engaged, 6.0, 2.0)).astype(float)
    frame["revenue_total"] = frame["purchases_total"] * rng.gamma(4.0, 25.0, n)
    features = pl.DataFrame({"profile_id": [f"p{i:05d}" for i in range(n)], **frame})
    seed = set(features.filter(pl.col("revenue_total") >= 600)["profile_id"])
    definition = "conditions:\n- {field: traits.lifetime_revenue, op: gte, value: 600}\n"
    scores, reach, report = lookalike.score_lookalikes(features, seed, "segments.seg_rich", definition)
    used = report["parameters"]["features"]
    assert "revenue_total" not in used and "purchases_total" not in used and "web_events_180d" in used
    assert report["auc"] > 0.7
    assert scores.height == n - len(seed) and scores["similarity"].is_between(0, 1).all()
    assert reach["reach"].to_list() == sorted(reach["reach"].to_list(), reverse=True)
    picked = features.join(scores.filter(pl.col("similarity") >= 0.5), on="profile_id")
    others = features.filter(~pl.col("profile_id").is_in(list(seed)))
    assert picked["web_events_180d"].mean() > 2 * others["web_events_180d"].mean()
    with pytest.raises(PredictionError, match=r"at least 20 seed members .* found 3 members"):
        lookalike.score_lookalikes(features, set(list(seed)[:3]), "segments.seg_rich", definition)


def simulated_purchase_log(customers: int, rng: np.random.Generator, end: dt.datetime):
    """An MBG/NBD purchase log in days: first purchases spread over a year before `end`."""
    import polars as pl

    truth = {"r": 1.2, "alpha": 120.0, "a": 0.8, "b": 3.0}
    rates = rng.gamma(truth["r"], 1 / truth["alpha"], customers)
    drop = rng.beta(truth["a"], truth["b"], customers)
    start = end - dt.timedelta(days=540)
    rows = []
    for i in range(customers):
        t = float(rng.uniform(0, 360))
        rows.append((f"c{i}", start + dt.timedelta(days=t), 40.0))
        alive = rng.random() >= drop[i]
        while alive:
            t += rng.exponential(1 / rates[i])
            if t >= 540:
                break
            rows.append((f"c{i}", start + dt.timedelta(days=t), float(rng.gamma(3, 15))))
            alive = rng.random() >= drop[i]
    return pl.DataFrame(rows, schema=["profile_id", "occurred_at", "value"], orient="row")


def test_clv_validation_chooses_by_holdout_and_calibrates_the_repurchase_probability():
    """On a simulated purchase log the validation fits every model on the history before the 90-day
    holdout, compares them there, chooses one that sees one-time buyers, and its calibrated repurchase
    probability matches the share that really bought in the holdout (cross-fitted reliability)."""
    from cdp.predictive import run

    end = dt.datetime(2026, 7, 1)
    purchases = simulated_purchase_log(4000, np.random.default_rng(2), end)
    validation = run.validate_clv(purchases, end)
    assert validation["chosen"] in ("mbg_nbd", "pareto_nbd")
    chosen = validation["candidates"][validation["chosen"]]
    assert chosen["holdout_expected_conditional"] == pytest.approx(chosen["holdout_actual"], rel=0.15)
    assert len(validation["cumulative_actual"]) == len(chosen["cumulative_expected"])
    for row in validation["reliability_calibrated"]:
        if row["customers"] >= 150:
            assert abs(row["predicted"] - row["observed"]) < 0.06, row
    assert validation["brier_calibrated"] <= chosen["brier"] + 0.005


def test_scores_that_cannot_be_computed_are_null_with_a_reason():
    """Issue 19 item 19: a spend model without a finite mean (q <= 1) and a repeat model that overflows
    gave NaN CLVs, and casting them to decimal(18, 2) failed the run. Now they are null, say why, and
    the frame casts cleanly."""
    import polars as pl

    from cdp.predictive import run

    summary = pl.DataFrame(
        {
            "profile_id": ["a", "b", "c"],
            "frequency": [0, 2, 3],
            "recency": [0.0, 40.0, 200.0],
            "T": [100.0, 90.0, 300.0],
            "monetary_value": [None, 30.0, 25.0],
        }
    )
    fitted = {
        "repeat_model": clv.Fit("mbg_nbd", {"r": 1.2, "alpha": 120.0, "a": 0.8, "b": 3.0}, {}, 0.0, 0, 0.0, 0),
        "gamma_gamma": clv.Fit("gamma_gamma", {"p": 2.0, "q": 0.8, "v": 10.0}, {}, 0.0, 0, 0.0, 0),
        "calibrator": None,
        "horizon_days": 90,
    }
    scored = run.score_clv(fitted, summary)
    reasons = [json.loads(r) if r else {} for r in scored["_clv_reasons"]]
    assert scored["predicted_clv_90d"][0] is None and "q = 0.8 <= 1" in reasons[0]["predicted_clv_90d"]
    assert scored["predicted_clv_90d"][1] is not None and scored["predicted_clv_90d"][1] > 0
    # MBG/NBD's expectation divides by a - 1: at a = 1 it is not finite for anyone.
    fitted["repeat_model"] = clv.Fit("mbg_nbd", {"r": 1.2, "alpha": 120.0, "a": 1.0, "b": 3.0}, {}, 0.0, 0, 0.0, 0)
    overflowing = run.score_clv(fitted, summary)
    assert overflowing["predicted_clv_90d"].null_count() == 3
    assert all("no finite expectation" in json.loads(r)["expected_purchases_90d"] for r in overflowing["_clv_reasons"])
    with duckdb.connect() as con:
        for frame in (scored, overflowing):
            con.register("scored", frame.to_arrow())
            cast = con.execute("select cast(predicted_clv_90d as decimal(18, 2)) from scored").fetchall()
            assert [row[0] is None for row in cast] == frame["predicted_clv_90d"].is_null().to_list()


def test_propensity_is_validated_out_of_time_with_confidence_intervals():
    """Trained at one cutoff, tested at the next: when the signal weakens between them, the out-of-time
    AUC says so (its interval excludes the in-time AUC). The bootstrap interval of the AUC has the width
    the Hanley-McNeil standard error gives."""
    import polars as pl

    from cdp.predictive import propensity

    rng = np.random.default_rng(4)

    def frame(n: int, strength: float) -> pl.DataFrame:
        signal = rng.normal(size=n)
        return pl.DataFrame(
            {"signal": signal, "noise": rng.normal(size=n), "label": strength * signal + rng.normal(size=n) > 1.0}
        )

    model = propensity.train_out_of_time("m", frame(4000, 2.0), frame(3000, 0.7), ("signal", "noise"), "label")
    in_time, out_of_time = model.report["parameters"]["in_time"], model.report["parameters"]["out_of_time"]
    assert in_time["auc_ci"][0] < in_time["auc"] < in_time["auc_ci"][1]
    assert out_of_time["auc_ci"][1] < in_time["auc_ci"][0], (in_time, out_of_time)
    assert model.report["auc"] == out_of_time["auc"] and model.report["holdout_rows"] == 3000
    a, n1 = out_of_time["auc"], out_of_time["positives"]
    n2 = out_of_time["rows"] - n1
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    hanley_mcneil = math.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2))
    width = out_of_time["auc_ci"][1] - out_of_time["auc_ci"][0]
    assert width == pytest.approx(2 * 1.96 * hanley_mcneil, rel=0.3)
    with pytest.raises(PredictionError, match="at the test cutoff"):
        propensity.train_out_of_time("m", frame(4000, 2.0), frame(3000, 2.0).head(150), ("signal", "noise"), "label")


def test_features_take_an_orders_status_as_of_the_cutoff():
    """An order completed 90 days ago and cancelled (as a later export said) 10 days ago counts as a
    purchase in features as of 30 days ago, and not today; loaded all at once after the cutoff (a
    backfill), its first status seen is what the past knew."""
    from cdp.predictive.features import features_as_of

    today = dt.datetime(2026, 7, 1)
    with duckdb.connect() as con:
        con.execute("create schema profiles")
        con.execute("create table profiles.profiles as select 'P1' as profile_id, true as is_known")
        con.execute(
            """create table profiles.profile_events as
               select * from (values
                 ('webshop__orders:O1', 'P1', 'commerce.purchases', timestamp '2026-04-02 10:00', 'webshop', 'cancelled', 80.0),
                 ('web:1', 'P1', 'web.webpagedetails.pageViews', timestamp '2026-03-01 10:00', 'web', null, null)
               ) as t(event_id, profile_id, event_type, occurred_at, channel, commerce_order_status,
                      commerce_order_price_total_reporting)"""
        )
        history = [("completed", "2026-04-03 00:00", 1), ("cancelled", "2026-06-21 00:00", 2)]
        con.execute(
            "create table profiles.purchase_status_history (event_id varchar, commerce_order_status varchar, "
            "status_known_at timestamp, status_version bigint)"
        )
        for status, known_at, version in history:
            con.execute(
                "insert into profiles.purchase_status_history values ('webshop__orders:O1', ?, ?, ?)",
                [status, known_at, version],
            )
        past = features_as_of(con, today - dt.timedelta(days=30))
        now = features_as_of(con, today)
        assert past["purchases_total"].to_list() == [1] and past["revenue_total"].to_list() == [80.0]
        assert now["purchases_total"].to_list() == [0]
        con.execute("update profiles.purchase_status_history set status_known_at = timestamp '2026-06-30 00:00'")
        assert features_as_of(con, today - dt.timedelta(days=30))["purchases_total"].to_list() == [1]


def test_cdnow_validation_report_reproduces_the_papers_holdout(cdnow_transactions, tmp_path, capsys):
    """The validation the pipeline runs per fit, on CDNOW with the paper's split (calibration to
    1997-09-30, holdout to 1998-06-30): 1,882 repeat purchases in the holdout, each model's forecast
    beside it, expected vs actual by calibration frequency, and the figures as PNG."""
    import polars as pl

    from cdp.predictive import run
    from cdp.predictive.report import clv_figures

    transactions, _ = cdnow_transactions
    purchases = transactions.select(
        pl.col("customer_id").alias("profile_id"),
        pl.col("purchase_date").cast(pl.Datetime).alias("occurred_at"),
        pl.col("amount").cast(pl.Float64).alias("value"),
    )
    validation = run.validate_clv(purchases, dt.datetime(1998, 7, 1), horizon_days=273)
    assert validation["calibration_end"].startswith("1997-10-01")  # purchases before it: up to 1997-09-30
    rows = []
    for name, candidate in validation["candidates"].items():
        assert candidate["holdout_actual"] == 1882
        rows.append(
            f"{name:<11} conditional {candidate['holdout_expected_conditional']:7,.0f}  "
            f"E[X(t)] {candidate['holdout_expected_unconditional']:7,.0f}  Brier {candidate['brier']:.4f}"
        )
        for row in candidate["by_frequency"]:
            if row["customers"] >= 100:
                assert abs(row["expected"] - row["actual"]) < 0.35 + 0.25 * row["actual"], (name, row)
    with capsys.disabled():
        print(f"\nCDNOW validation (chosen {validation['chosen']}), actual 1,882:\n  " + "\n  ".join(rows))
    figures = clv_figures(validation, tmp_path)
    assert [f.name for f in figures] == ["clv_by_frequency.png", "clv_cumulative.png", "clv_reliability.png"]
    assert all(f.stat().st_size > 10_000 for f in figures)
