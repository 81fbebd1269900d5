"""Audiences on the shared pipeline runs (tests/pipeline_runs.py): every example audience equals an
independent computation in polars over the profile tables, membership history is right across the
three runs (entries and exits planted before the third), the `cdp segments` commands work, and the
audience report renders its plots in a real browser."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl

from cdp.audiences import list_audiences
from cdp.settings import DBT_PROJECT_DIR
from support.browser import chromium
from support.pipeline_runs import AS_OF_END, PipelineRuns, query

CONTRACT_COLUMNS = ["profile_id", "email", "phone", "first_name", "last_name"]


def window(days: int) -> pl.Expr:
    return pl.col("occurred_at").is_between(AS_OF_END - dt.timedelta(days=days), AS_OF_END, closed="left")


def members(runs: PipelineRuns, audience: str) -> set[str]:
    return set(query(runs, f"select profile_id from segments.seg_{audience}")["profile_id"])


def known(runs: PipelineRuns) -> set[str]:
    return set(query(runs, "select profile_id from profiles.profiles where is_known")["profile_id"])


def consented(runs: PipelineRuns, purpose: str, within_days: int | None = None) -> set[str]:
    consents = query(
        runs,
        f"select profile_id, decided_at from profiles.profile_consents "
        f"where consent_purpose = '{purpose}' and consent_value = 'y'",
    )
    if within_days is not None:
        consents = consents.rename({"decided_at": "occurred_at"}).filter(window(within_days))
    return set(consents["profile_id"])


def completed_items(runs: PipelineRuns) -> pl.DataFrame:
    return query(runs, "select * from profiles.profile_purchase_items").filter(
        pl.col("commerce_order_status") == "completed"
    )


def test_red_dress_buyers(runs):
    women = set(query(runs, "select profile_id from profiles.profiles where gender = 'F'")["profile_id"])
    bought = set(
        completed_items(runs).filter(
            (pl.col("product_category") == "dresses") & (pl.col("product_colour") == "red") & window(14)
        )["profile_id"]
    )
    expected = women & bought
    assert runs.red_dress_profile in expected, "the red dress planted before run 3 must count"
    assert members(runs, "red_dress_buyers") == expected


def test_rfm_champions_and_at_risk(runs):
    traits = query(runs, "select profile_id, rfm_recency_score, rfm_frequency_score from profiles.profile_traits")
    groups = pl.read_csv(DBT_PROJECT_DIR / "seeds" / "rfm_groups.csv")
    grouped = traits.join(
        groups, left_on=["rfm_recency_score", "rfm_frequency_score"], right_on=["recency_score", "frequency_score"]
    )
    champions = set(grouped.filter(pl.col("rfm_group") == "champions")["profile_id"]) & known(runs)
    at_risk = set(grouped.filter(pl.col("rfm_group").is_in(["at_risk", "cannot_lose_them"]))["profile_id"]) & known(
        runs
    )
    assert champions and at_risk
    assert members(runs, "rfm_champions") == champions
    assert members(runs, "at_risk") == at_risk


def test_new_email_subscribers_and_high_value_with_sms(runs):
    assert members(runs, "new_email_subscribers") == known(runs) & consented(runs, "marketing_email", within_days=30)
    # seg_high_value itself is checked against the raw tables in test_pipeline_e2e.
    expected = members(runs, "high_value") & consented(runs, "marketing_sms")
    assert expected and members(runs, "high_value_sms") == expected


def test_lapsed_buyers_have_no_purchase_in_90_days(runs):
    purchases = query(
        runs,
        "select profile_id, occurred_at from profiles.profile_events where "
        "event_type = 'commerce.purchases' and commerce_order_status = 'completed'",
    )
    recent = set(purchases.filter(window(90))["profile_id"])
    expected = (set(purchases.filter(pl.col("occurred_at") < AS_OF_END)["profile_id"]) - recent) & known(runs)
    assert members(runs, "lapsed_buyers") == expected


def split_of(profile_id: str, audience: str) -> str:
    bucket = int(hashlib.md5(f"{profile_id}:{audience}".encode()).hexdigest()[:8], 16) % 100
    return "campaign" if bucket < 90 else "holdout"


def test_campaign_audience_and_its_holdout_split(runs):
    views = query(
        runs,
        "select profile_id, event_id, occurred_at from profiles.profile_events "
        "where event_type = 'commerce.productViews'",
    ).filter(window(30))
    viewers = set(
        views.group_by("profile_id")
        .agg(pl.col("event_id").n_unique().alias("n"))
        .filter(pl.col("n") >= 2)["profile_id"]
    )
    dress_buyers = set(
        completed_items(runs).filter((pl.col("product_category") == "dresses") & window(90))["profile_id"]
    )
    expected = (known(runs) & consented(runs, "marketing_email") & (viewers | dress_buyers)) - members(
        runs, "lapsed_buyers"
    )
    rows = query(runs, "select profile_id, split_name, is_holdout from segments.seg_dress_campaign")
    assert set(rows["profile_id"]) == expected
    for row in rows.iter_rows(named=True):
        assert row["split_name"] == split_of(row["profile_id"], "dress_campaign")
        assert row["is_holdout"] == (row["split_name"] == "holdout")
    holdout_share = rows["is_holdout"].mean()
    assert 0.03 < holdout_share < 0.2, holdout_share
    in_memberships = query(
        runs,
        "select profile_id, split_name, is_holdout from segments.segment_memberships "
        "where segment_name = 'dress_campaign'",
    )
    assert in_memberships.sort("profile_id").equals(rows.sort("profile_id"))


def test_top_customers_rank_by_revenue_with_a_limit(runs):
    traits = query(runs, "select profile_id, lifetime_orders, lifetime_revenue from profiles.profile_traits")
    expected = (
        traits.filter(pl.col("profile_id").is_in(list(known(runs))) & (pl.col("lifetime_orders") >= 1))
        .sort(["lifetime_revenue", "profile_id"], descending=[True, False])
        .head(100)
    )
    actual = query(runs, "select profile_id, audience_rank from segments.seg_top_customers order by audience_rank")
    assert actual["profile_id"].to_list() == expected["profile_id"].to_list()


def test_every_audience_model_keeps_the_contract_and_is_collected(runs):
    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    nodes = {node["name"]: node for node in manifest["nodes"].values() if node["resource_type"] == "model"}
    audiences = {audience.model for audience in list_audiences()}
    assert audiences == {name for name in nodes if name.startswith("seg_")}
    memberships = nodes["segment_memberships"]["depends_on"]["nodes"]
    for model in audiences:
        node = nodes[model]
        assert node["config"]["contract"]["enforced"], f"{model}: the audience contract must be enforced"
        assert list(node["columns"])[:5] == CONTRACT_COLUMNS, f"{model}: {list(node['columns'])}"
        assert f"model.cdp.{model}" in memberships, f"segment_memberships does not collect {model}"
    sizes = query(runs, "select segment_name, count(*) as members from segments.segment_memberships group by 1")
    for name, size in sizes.iter_rows():
        assert size == len(members(runs, name)), name
    assert set(sizes["segment_name"]) == {model.removeprefix("seg_") for model in audiences}


def test_membership_history_across_three_runs(runs):
    history = query(runs, "select * from segments.segment_membership_history")
    run_times = sorted(history["evaluated_at"].unique().to_list())
    assert len(run_times) == 3, "one evaluation per pipeline run"
    previous: set[tuple[str, str]] = set()
    entered_at: dict[tuple[str, str], dt.datetime] = {}
    for run_number, (evaluated_at, snapshot) in enumerate(zip(run_times, runs.memberships_by_run, strict=True), 1):
        current = set(snapshot.select("segment_name", "profile_id").iter_rows())
        rows = history.filter(pl.col("evaluated_at") == evaluated_at)
        by_status = {
            status: set(
                rows.filter(pl.col("membership_status") == status).select("segment_name", "profile_id").iter_rows()
            )
            for status in ("realized", "existing", "exited")
        }
        assert by_status["realized"] == current - previous, f"run {run_number}: realized"
        assert by_status["existing"] == current & previous, f"run {run_number}: existing"
        assert by_status["exited"] == previous - current, f"run {run_number}: exited"
        for row in rows.iter_rows(named=True):
            key = (row["segment_name"], row["profile_id"])
            if row["membership_status"] == "realized":
                entered_at[key] = evaluated_at
            assert row["entered_at"] == entered_at[key], f"run {run_number}: entered_at of {key}"
            assert (row["exited_at"] == evaluated_at) == (row["membership_status"] == "exited")
        previous = current
        sizes = query(
            runs,
            f"select segment_name, members, realized, exited from segments.segment_sizes "
            f"where evaluated_at = '{evaluated_at}'",
        )
        for name, size, realized, exited in sizes.iter_rows():
            assert size == sum(1 for segment, _ in current if segment == name), (run_number, name)
            assert realized == sum(1 for segment, _ in by_status["realized"] if segment == name), (run_number, name)
            assert exited == sum(1 for segment, _ in by_status["exited"] if segment == name), (run_number, name)
        if run_number == 2:  # a rerun without new data: no entries, no exits
            assert not by_status["realized"] and not by_status["exited"]
        if run_number == 3:  # the planted entries and exit
            assert ("high_value", runs.promoted_profile) in by_status["realized"]
            assert ("lapsed_buyers", runs.promoted_profile) in by_status["exited"]
            assert ("red_dress_buyers", runs.red_dress_profile) in by_status["realized"]


def test_segments_commands(runs):
    listing = runs.workspace.cdp("segments", "list").stdout
    high_value = next(line for line in listing.splitlines() if line.startswith("high_value "))
    assert high_value.split()[1:] == ["yaml", f"{len(members(runs, 'high_value')):,}", "+1", "1", "0"], listing
    overlap = runs.workspace.cdp("segments", "overlap", "high_value", "high_value_sms").stdout
    shared = len(members(runs, "high_value_sms"))
    assert f"{shared:,} (100%)" in overlap.splitlines()[2], overlap
    preview = runs.workspace.cdp("segments", "preview", "red_dress_buyers", "--no-sql", "--sample", "3").stdout
    assert f"{len(members(runs, 'red_dress_buyers')):,} members" in preview, preview


def test_audience_report_renders_its_plots_in_a_browser(runs, tmp_path):
    from playwright.sync_api import sync_playwright

    out = tmp_path / "audiences.html"
    runs.workspace.cdp("segments", "report", "--out", str(out))
    document = out.read_text()
    # Self-contained: no scripts, nothing loaded from elsewhere (SVG namespaces are names, not fetches).
    assert "<script" not in document and not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", document)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(Path(out).as_uri())
            for figure in ("sizes-over-time", "overlap-heatmap", "rfm-grid"):
                box = page.locator(f"#{figure} svg").bounding_box()
                assert box and box["width"] > 200 and box["height"] > 150, (figure, box)
                shapes = page.locator(f"#{figure} svg path, #{figure} svg image, #{figure} svg use").count()
                assert shapes > 10, f"{figure}: {shapes} drawn shapes"
            legend = page.locator("#sizes-over-time svg text").all_text_contents()
            assert "red_dress_buyers" in legend and "high_value" in legend
            cells = page.locator("#rfm-grid svg g[id^='rfm-cell-'] text").all_text_contents()
            buyers = query(
                runs, "select count(*) from profiles.profile_traits where rfm_recency_score is not null"
            ).item()
            assert len(cells) == 25 and sum(int(text.replace(",", "")) for text in cells) == buyers
        finally:
            browser.close()


def test_hostile_values_stay_literals_on_the_built_warehouse(runs):
    """The compiled SQL of hostile values, run on the pipeline's warehouse: no error, no rows, nothing dropped."""
    import duckdb
    from test_audience_compiler import HOSTILE, definition, render

    from cdp.audiences.render import render_model

    tables_before = query(runs, "select count(*) from information_schema.tables").item()
    with duckdb.connect(str(runs.workspace.warehouse), read_only=True) as con:
        for value in HOSTILE:
            quoted = value.replace("'", "''")
            audience = definition(f"""
                name: test
                conditions:
                  - {{field: profile.gender, op: in, value: ['{quoted}']}}
                  - purchased_item: {{where: [{{field: product_colour, op: ne, value: '{quoted}'}}]}}
                  - {{field: traits.rfm_group, op: eq, value: '{quoted}'}}
            """)
            assert con.execute(render(render_model(audience))).fetchall() == [], value
    assert query(runs, "select count(*) from information_schema.tables").item() == tables_before


def test_a_missing_column_fails_the_build_with_the_definition_path(runs):
    """The build-time guard of every generated audience: the warehouse catalog is the field whitelist."""
    inline = (
        "-- depends_on: {{ ref('profile_traits') }}\nselect 1 {{ audience_require_columns('audiences/x.yml', "
        "[['profile_traits', 'rfm_grup', 'conditions[1].any[0].field']]) }}"
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("dbt")),
            "compile",
            "--quiet",
            "--inline",
            inline,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
        ],
        env=runs.workspace.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert (
        "audiences/x.yml: conditions[1].any[0].field: 'rfm_grup' is not a column of profile_traits; "
        "allowed: profile_id, lifetime_orders"
    ) in result.stdout, result.stdout[-2000:]
    assert "rfm_group" in result.stdout
