"""Stages degrade, the run completes (issue 18 item 5): on identity-only data (no purchase at all, the
web shop and the tills never delivered) every predictive model is skipped with a warning and a record,
and segments, syncs and publication still run; `cdp run` exits 0."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from support.workspace import DEMO_AS_OF

# Enough people that the demo's planted bad rows stay under every contract's reject rate.
PEOPLE = 800
MODELS = ("churn_90d", "clv", "lookalike_high_value", "purchase_30d")


@pytest.fixture(scope="module")
def identity_only(make_workspace):
    workspace = make_workspace("identity-only")
    workspace.cdp("generate", "--people", str(PEOPLE), "--seed", "5", "--as-of", DEMO_AS_OF)
    for source in ("webshop", "pos"):
        shutil.rmtree(workspace.data_dir / "landing" / source)
    return workspace, workspace.cdp("run")  # fails the test unless it exits 0


def test_a_run_without_purchases_completes_and_says_what_it_skipped(identity_only):
    workspace, result = identity_only
    for model in MODELS:
        assert f"WARNING: model {model} skipped: " in result.stderr, result.stderr[-3000:]
    assert "this run published nothing" not in result.stdout
    with duckdb.connect(str(workspace.warehouse), read_only=True) as con:
        run_id = con.execute(
            "select run_id from predictions.model_reports order by trained_at desc limit 1"
        ).fetchone()[0]
        reports = dict(
            con.execute(
                "select model_name, status from predictions.model_reports where run_id = ?", [run_id]
            ).fetchall()
        )
        assert reports == dict.fromkeys(MODELS, "skipped")
        scores = con.execute(
            "select count(*), count(p_alive), count(purchase_probability_30d) from profiles.profile_predictions"
        ).fetchone()
        assert scores[0] > 0 and scores[1:] == (0, 0)
        reason = json.loads(con.execute("select null_reasons from profiles.profile_predictions limit 1").fetchone()[0])
        assert reason["predicted_clv_90d"].startswith("model clv skipped: ")
        assert con.execute("select count(*) from segments.seg_lookalike_high_value").fetchone()[0] == 0
        assert con.execute("select count(*) from segments.seg_new_email_subscribers").fetchone()[0] > 0
    with duckdb.connect(str(workspace.serving_store), read_only=True) as store:
        published = store.execute(
            "select run_id from serving.publications order by published_at desc limit 1"
        ).fetchone()
    assert published is not None
