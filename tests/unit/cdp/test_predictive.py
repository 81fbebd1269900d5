"""Predictive traits, validated against published results and the demo's planted signal."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import duckdb
import numpy as np
import pytest

import data_contracts
from cdp.predictive import clv
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
        assert report.rows_read == 6919
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
    expected = clv.expected_average_value(
        params, repeat["frequency"], repeat["monetary_value"], population_mean=float(repeat["monetary_value"].mean())
    )
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
