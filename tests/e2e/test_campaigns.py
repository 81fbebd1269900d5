"""Campaign effectiveness end to end (issue 23), on the demo as `cdp demo` plays it: the pipeline as of
four weeks before the as-of day sends the two demo campaigns, the simulated people respond to what
reached them (the email offer makes each buy once more with probability 0.10; the SMS reminder does
nothing), and the pipeline runs as of the as-of day. Checked against computations of our own from the
raw tables (polars, scipy) and the generator's ground truth; then a merge of an exposed and a held-out
member, and a third run."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import duckdb
import polars as pl
import pytest
from scipy import stats

from cdp.campaigns import load_campaigns
from support.pipeline_runs import completed_purchases, write_late_order
from support.workspace import DEMO_AS_OF, Workspace

PEOPLE = 2500
SEED = 11
AS_OF_END = dt.datetime.fromisoformat(DEMO_AS_OF) + dt.timedelta(days=1)
LAUNCH_DAY = "2026-06-02"  # four weeks before the as-of day: the launch run sends at its end
LAUNCH_EXPOSURE = AS_OF_END - dt.timedelta(days=28)
EFFECT, NULL = "summer_email_offer", "sms_reminder"
Z = stats.norm.ppf(0.975)


@dataclass
class Demo:
    workspace: Workspace
    output: str
    merge: dict | None = None  # the exposed and held-out members an order joined before the last run

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        with duckdb.connect(str(self.workspace.warehouse), read_only=True) as con:
            return con.execute(sql, params or []).pl()


@pytest.fixture(scope="module")
def demo(make_workspace) -> Demo:
    """The steps `cdp demo` takes (README, Campaigns), with one addition before the last run: an order that
    joins an exposed member's shop account to a held-out member's email (test_a_member_keeps_its_group...)."""
    workspace = make_workspace("campaigns")
    workspace.cdp("generate", "--people", str(PEOPLE), "--seed", str(SEED), "--as-of", DEMO_AS_OF)
    launch = Workspace(workspace.data_dir, env_overrides={"CDP_AS_OF": LAUNCH_DAY})
    output = launch.cdp("run").stdout + launch.cdp("generate-responses", "--seed", str(SEED)).stdout
    demo = Demo(workspace, output)
    demo.merge = plant_a_merge(demo)
    demo.output += workspace.cdp("run").stdout
    return demo


def campaign_syncs() -> dict[str, tuple[str, ...]]:
    return {campaign.name: campaign.syncs for campaign in load_campaigns()}


# --- an independent computation of the lift, from the raw tables ---------------------------------------


def merged_into(demo: Demo) -> dict[str, str]:
    history = demo.query(
        "select previous_profile_id, current_profile_id from identity.profile_id_history where change_type = 'merge'"
    )
    step = dict(zip(history["previous_profile_id"], history["current_profile_id"], strict=True))

    def final(profile_id: str) -> str:
        seen = set()
        while profile_id in step and profile_id not in seen:
            seen.add(profile_id)
            profile_id = step[profile_id]
        return profile_id

    return {previous: final(previous) for previous in step}


def members_from_the_ledger(demo: Demo) -> pl.DataFrame:
    """campaign, profile_id (current), is_holdout and assigned_at of the first decision, is_crossover."""
    ledger = demo.query("select * from activation.sync_ledger")
    runs = demo.query("select run_id, sync_name, coalesce(as_of, started_at) as decided_at from activation.sync_runs")
    remap = merged_into(demo)
    frames = []
    for campaign, syncs in campaign_syncs().items():
        decisions = (
            ledger.filter(
                pl.col("sync_name").is_in(list(syncs))
                & pl.col("record_key").is_not_null()
                & (
                    (pl.col("status") == "held_out")
                    | ((pl.col("status") == "sent") & pl.col("change_kind").is_in(["added", "changed"]))
                )
            )
            .join(runs, on=["run_id", "sync_name"])
            .with_columns(
                campaign=pl.lit(campaign),
                profile_id=pl.col("record_key").replace_strict(remap, default=pl.col("record_key")),
            )
        )
        frames.append(
            decisions.sort("decided_at")
            .group_by("campaign", "profile_id")
            .agg(
                assigned_at=pl.col("decided_at").min(),
                first_status=pl.col("status").first(),
                split_name=pl.col("split_name").first(),
                is_crossover=pl.col("status").n_unique() > 1,
            )
        )
    members = pl.concat(frames).with_columns(is_holdout=pl.col("first_status") == "held_out")
    return members.with_columns(window_ends_at=pl.col("assigned_at") + pl.duration(days=14))


def outcomes(demo: Demo, members: pl.DataFrame) -> pl.DataFrame:
    """Per member with a complete window, not a crossover: converted (a completed purchase in the window)
    and revenue (both demo goals are completed purchases; the SMS goal adds up their revenue)."""
    purchases = completed_purchases(SimpleNamespace(workspace=demo.workspace)).with_columns(
        at=pl.col("at").cast(pl.Datetime("us"))
    )
    counted = members.filter(~pl.col("is_crossover") & (pl.col("window_ends_at") <= AS_OF_END))
    in_window = (
        counted.join(purchases, on="profile_id")
        .filter((pl.col("at") >= pl.col("assigned_at")) & (pl.col("at") < pl.col("window_ends_at")))
        .group_by("campaign", "profile_id")
        .agg(purchases=pl.len(), revenue=pl.col("amount").sum())
    )
    return counted.join(in_window, on=["campaign", "profile_id"], how="left").select(
        "campaign",
        "profile_id",
        "split_name",
        "is_holdout",
        converted=pl.col("purchases").is_not_null(),
        purchases=pl.col("purchases").fill_null(0),
        revenue=pl.col("revenue").fill_null(0.0),
    )


def wilson(x: int, n: int) -> tuple[float, float]:
    interval = stats.binomtest(x, n).proportion_ci(0.95, method="wilson")
    return interval.low, interval.high


def expected_lift(demo: Demo) -> dict[tuple[str, str], dict]:
    members = members_from_the_ledger(demo)
    results = outcomes(demo, members)
    splits = {c.name: c.splits for c in load_campaigns()}
    expected = {}
    for campaign in splits:
        rows = results.filter(pl.col("campaign") == campaign)
        holdout = rows.filter(pl.col("is_holdout"))
        n_h, x_h = holdout.height, int(holdout["converted"].sum())
        assigned = members.filter((pl.col("campaign") == campaign) & ~pl.col("is_crossover"))
        observed = [assigned.filter(pl.col("split_name") == s.name).height for s in splits[campaign]]
        srm = stats.chisquare(observed, [assigned.height * s.percent / 100 for s in splits[campaign]]).pvalue
        for split in splits[campaign]:
            group = rows.filter(pl.col("split_name") == split.name)
            n, x = group.height, int(group["converted"].sum())
            row = {"members": n, "conversions": x, "conversion_rate": x / n, "sample_ratio_p_value": srm}
            row["revenue_per_member"] = group["revenue"].mean()
            if not split.is_holdout:
                p, q = x / n, x_h / n_h
                (low_t, high_t), (low_h, high_h) = wilson(x, n), wilson(x_h, n_h)
                ratio = stats.contingency.relative_risk(x, n, x_h, n_h).confidence_interval(0.95)
                pooled = (x + x_h) / (n + n_h)
                revenue_error = math.sqrt(group["revenue"].var() / n + holdout["revenue"].var() / n_h)
                revenue_lift = group["revenue"].mean() - holdout["revenue"].mean()
                row |= {
                    "absolute_lift": p - q,
                    "absolute_lift_low": p - q - math.hypot(p - low_t, high_h - q),
                    "absolute_lift_high": p - q + math.hypot(high_t - p, q - low_h),
                    "relative_lift": p / q - 1,
                    "relative_lift_low": ratio.low - 1,
                    "relative_lift_high": ratio.high - 1,
                    "p_value": 2 * stats.norm.sf(abs(p - q) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / n_h))),
                    "revenue_lift": revenue_lift,
                    "revenue_lift_low": revenue_lift - Z * revenue_error,
                    "revenue_lift_high": revenue_lift + Z * revenue_error,
                }
            expected[(campaign, split.name)] = row
    return expected


def assert_lift_equals_the_independent_computation(demo: Demo) -> None:
    expected = expected_lift(demo)
    actual = {
        (r["campaign_name"], r["split_name"]): r for r in demo.query("select * from analytics.campaign_lift").to_dicts()
    }
    assert set(actual) == set(expected)
    for key, row in expected.items():
        for column, value in row.items():
            found = actual[key][column]
            assert found is not None and math.isclose(float(found), value, rel_tol=1e-6, abs_tol=1e-6), (
                key,
                column,
                found,
                value,
            )


# --- the tests -----------------------------------------------------------------------------------------


def test_the_demo_plays_its_campaigns(demo):
    assert re.search(r"campaign summer_email_offer\s+reached [\d,]+ people; [\d,]+ bought once more", demo.output)
    effects = pl.read_csv(demo.workspace.data_dir / "truth" / "campaign_effects.csv")
    assert effects.filter(pl.col("campaign") == NULL)["responders"].item() == 0
    assert effects.filter(pl.col("campaign") == EFFECT)["responders"].item() > 20
    runs = demo.query("select distinct run_id, as_of from activation.sync_runs order by as_of nulls last")
    assert runs["as_of"].to_list() == [LAUNCH_EXPOSURE, AS_OF_END], (
        "a launch run as of 2026-06-02, then one as of the day"
    )


def test_holdouts_were_never_sent_and_every_run_counts_them(demo):
    """Every campaign sync, every run: no held-out member was sent (nor sits in the destination file), the
    ledger holds each held-out member once per run with its split, and sync_runs.held_out counts them."""
    for campaign, syncs in campaign_syncs().items():
        for sync in syncs:
            ledger = demo.query("select * from activation.sync_ledger where sync_name = ?", [sync])
            held_out = ledger.filter(pl.col("status") == "held_out")
            sent = ledger.filter(pl.col("status") == "sent")
            assert held_out.height > 100 and sent.height > 100, campaign
            assert not set(held_out["record_key"]) & set(sent["record_key"]), f"{sync} sent a held-out member"
            assert set(held_out["split_name"]) == {"holdout"} and "holdout" not in set(sent["split_name"])
            per_run = held_out.group_by("run_id").len()
            runs = demo.query("select run_id, held_out from activation.sync_runs where sync_name = ?", [sync])
            assert dict(per_run.iter_rows()) == dict(runs.iter_rows())
            audience = demo.query(f"select profile_id, is_holdout from segments.seg_{campaign_audience(campaign)}")
            destination = next((demo.workspace.data_dir / "destinations").glob(f"*/{sync}__current.*"))
            held = set(read_destination(destination)["profile_id"])
            assert held == set(audience.filter(~pl.col("is_holdout"))["profile_id"]) & held
            assert not held & set(audience.filter(pl.col("is_holdout"))["profile_id"])


def campaign_audience(campaign: str) -> str:
    return next(c.audience for c in load_campaigns() if c.name == campaign)


def read_destination(path: Path) -> pl.DataFrame:
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False)
    return pl.DataFrame([json.loads(line) for line in path.read_text().splitlines()])


def test_lift_equals_an_independent_computation_from_the_raw_tables(demo):
    assert_lift_equals_the_independent_computation(demo)
    sample = demo.query("select * from analytics.campaign_lift where not is_holdout")
    assert (sample["members"] > 300).all() and not sample["has_sample_ratio_mismatch"].any()


def planted_effect(demo: Demo) -> float:
    """The effect the generator planted, realized on the treated members counted in the lift: the share
    of them who converted only through a response order (no purchase of their own in the window)."""
    responses = pl.read_csv(demo.workspace.data_dir / "truth" / "campaign_responses.csv")
    response_orders = set(responses.filter(pl.col("responded"))["order_id"])
    members = members_from_the_ledger(demo).filter(
        (pl.col("campaign") == EFFECT)
        & ~pl.col("is_holdout")
        & ~pl.col("is_crossover")
        & (pl.col("window_ends_at") <= AS_OF_END)
    )
    purchases = completed_purchases(SimpleNamespace(workspace=demo.workspace)).with_columns(
        at=pl.col("at").cast(pl.Datetime("us"))
    )
    in_window = members.join(purchases, on="profile_id").filter(
        (pl.col("at") >= pl.col("assigned_at")) & (pl.col("at") < pl.col("window_ends_at"))
    )
    by_member = in_window.group_by("profile_id").agg(
        organic=(~pl.col("order_id").is_in(list(response_orders)).fill_null(False)).any()
    )
    only_through_the_campaign = by_member.filter(~pl.col("organic")).height
    return only_through_the_campaign / members.height


def test_the_planted_effect_is_recovered_and_the_null_campaign_covers_zero(demo):
    lift = {
        r["campaign_name"]: r
        for r in demo.query("select * from analytics.campaign_lift where not is_holdout").to_dicts()
    }
    effect, null = lift[EFFECT], lift[NULL]
    planted = planted_effect(demo)
    assert 0.05 < planted < 0.10, planted  # 0.10 of the reached, less those who bought anyway
    assert effect["absolute_lift_low"] <= planted <= effect["absolute_lift_high"], (planted, effect)
    assert effect["is_significant"] and effect["absolute_lift_low"] > 0 and effect["p_value"] < 0.05
    assert null["absolute_lift_low"] <= 0 <= null["absolute_lift_high"], null
    assert not null["is_significant"]
    assert null["revenue_lift_low"] <= 0 <= null["revenue_lift_high"], null


def test_the_report_renders_both_results_in_a_browser(demo, tmp_path):
    from playwright.sync_api import sync_playwright
    from test_segments import chromium

    out = tmp_path / "campaigns.html"
    demo.workspace.cdp("campaigns", "report", "--out", str(out))
    document = out.read_text()
    assert "<script" not in document and not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", document)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(out.as_uri())
            for campaign in (EFFECT, NULL):
                for figure in (f"conversions-{campaign}", f"lift-{campaign}"):
                    box = page.locator(f"#{figure} svg").bounding_box()
                    assert box and box["width"] > 300 and box["height"] > 80, (figure, box)
                    assert page.locator(f"#{figure} svg path").count() > 5, figure
                legend = " ".join(page.locator(f"#conversions-{campaign} svg text").all_text_contents())
                assert "holdout" in legend and "treated" in legend
            verdicts = page.locator("section td:last-child").all_text_contents()
            assert "significant increase" in verdicts and any("covers 0" in v for v in verdicts), verdicts
            page.screenshot(path=str(tmp_path / "campaigns.png"), full_page=True)
        finally:
            browser.close()


def plant_a_merge(demo: Demo) -> dict:
    """After the launch run: an order dated the as-of day with an exposed member's shop account and a
    held-out member's email, so the last run merges their profiles."""
    audience = campaign_audience(EFFECT)
    exposed, held_out, shop_account, email = pick_members_to_merge(demo, audience)
    splits = dict(demo.query(f"select profile_id, split_name from segments.seg_{audience}").iter_rows())
    write_late_order(demo.workspace, "orders_merge.jsonl", "E2E-MERGE-1", shop_account, "14:00:00", "20.00")
    orders = demo.workspace.data_dir / "landing" / "webshop" / "orders" / "orders_merge.jsonl"
    orders.write_text(json.dumps(json.loads(orders.read_text()) | {"email": email}) + "\n")
    return {"exposed": exposed, "held_out": held_out, "splits_at_launch": splits}


def test_a_member_keeps_its_group_across_runs_and_merges(demo):
    """Every member's split is the same in every run's ledger rows and in the audience after the last run.
    The order planted before it merged an exposed and a held-out member into the older id, which kept its
    own split; the absorbed member's holdout decision followed it, so the merged person was both exposed
    and held out: a crossover, out of both groups' figures (the lift test above recomputes it that way)."""
    audience = campaign_audience(EFFECT)
    (sync,) = campaign_syncs()[EFFECT]
    splits = demo.query(
        "select record_key, count(distinct split_name) as splits, count(distinct run_id) as runs "
        "from activation.sync_ledger where sync_name = ? and split_name is not null group by 1",
        [sync],
    )
    assert splits["splits"].max() == 1 and splits["runs"].max() == 2, "a member changed split between runs"
    exposed, held_out, before = demo.merge["exposed"], demo.merge["held_out"], demo.merge["splits_at_launch"]
    history = demo.query(
        "select previous_profile_id, current_profile_id from identity.profile_id_history "
        "where previous_profile_id in (?, ?) and change_type = 'merge'",
        [exposed, held_out],
    )
    assert history.height == 1, history  # merges keep the oldest of the two ids
    absorbed, survivor = history.row(0)
    assert {absorbed, survivor} == {exposed, held_out}
    now = dict(demo.query(f"select profile_id, split_name from segments.seg_{audience}").iter_rows())
    assert now.get(survivor) == before[survivor], "the surviving profile changed group"
    assert absorbed not in now
    assert all(now[p] == before[p] for p in now if p in before), "a member changed group between runs"
    member = demo.query(
        "select * from analytics.campaign_members where campaign_name = ? and profile_id = ?", [EFFECT, survivor]
    ).to_dicts()
    assert len(member) == 1 and member[0]["is_crossover"] and not member[0]["is_counted"], member
    crossovers = demo.query("select crossover_members from analytics.campaigns where campaign_name = ?", [EFFECT])
    assert crossovers.item() == 1


def pick_members_to_merge(demo: Demo, audience: str) -> tuple[str, str, str, str]:
    """An exposed member with a shop account and a held-out member with an email and none of the ids a
    person may hold once (CRM, shop, loyalty) that the exposed one also has: an order can join them."""
    row = demo.query(
        f"""
        with ids as (
            select profile_id, namespace, min(identity_value) as value
            from profiles.profile_identities group by 1, 2
        ),
        exposed as (
            select audience.profile_id, shop.value as shop_account
            from segments.seg_{audience} as audience
            inner join ids as shop on shop.profile_id = audience.profile_id and shop.namespace = 'shop_customer_id'
            where not audience.is_holdout
        ),
        held_out as (
            select audience.profile_id, audience.email
            from segments.seg_{audience} as audience
            where audience.is_holdout and audience.email is not null
              and not exists (
                  select 1 from ids where ids.profile_id = audience.profile_id
                  and ids.namespace in ('crm_id', 'shop_customer_id', 'loyalty_id'))
        )
        select exposed.profile_id, held_out.profile_id, exposed.shop_account, held_out.email
        from exposed cross join held_out
        where not exists (
            select 1 from ids where ids.profile_id = exposed.profile_id and ids.namespace in ('crm_id', 'loyalty_id')
            and exists (select 1 from ids as other where other.profile_id = held_out.profile_id
                        and other.namespace = ids.namespace))
        order by 1, 2 limit 1
        """
    ).row(0)
    return row
