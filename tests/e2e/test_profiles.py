"""Unified profiles on the shared pipeline runs: traits against an independent computation from the raw
tables (polars), the merge policy's lineage, and profile snapshots."""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
import pytest

from cdp.settings import DBT_PROJECT_DIR
from support.pipeline_runs import (
    AS_OF_END,
    HIGH_VALUE_MIN_REVENUE,
    completed_purchases,
    latest_versions,
    query,
    run_dbt,
)

KEY = "profile_id"


def most_frequent(frame: pl.DataFrame, value: str, at: str) -> pl.DataFrame:
    """Per profile, the value seen most often; ties go to the value seen last, then the smallest."""
    counted = frame.group_by(KEY, value).agg(occurrences=pl.len(), latest_at=pl.col(at).max())
    return (
        counted.sort([KEY, "occurrences", "latest_at", value], descending=[False, True, True, False])
        .unique(KEY, keep="first")
        .select(KEY, value)
    )


def quantile_score(frame: pl.DataFrame, column: str, higher_is_better: bool = True, buckets: int = 5) -> pl.Series:
    """1 + floor(buckets x share of profiles ranked strictly below); ties share a score. With at least
    `buckets` distinct values no band stays empty: walking up the distinct values, a value scores at
    most one more than the value below it and at least buckets - (distinct values above it)."""
    below = frame[column].rank("min", descending=not higher_is_better) - 1
    share = below / max(frame.height - 1, 1)
    plain = (1 + (share * buckets).floor()).clip(upper_bound=buckets).cast(pl.Int32)
    values = (
        pl.DataFrame({"value": frame[column], "plain": plain})
        .unique("value")
        .sort("value", descending=not higher_is_better)
    )
    distinct = values.height
    if distinct < buckets:
        return plain
    scores, previous = [], 0
    for rank, quantile in enumerate(values["plain"].to_list(), start=1):
        previous = max(min(quantile, previous + 1), buckets - (distinct - rank))
        scores.append(previous)
    lookup = dict(zip(values["value"].to_list(), scores, strict=True))
    return frame[column].replace_strict(lookup, return_dtype=pl.Int32)


@pytest.fixture(scope="module")
def expected_traits(runs) -> pl.DataFrame:
    purchases = completed_purchases(runs).filter(pl.col("at") < AS_OF_END)
    window_start = AS_OF_END - dt.timedelta(days=90)
    per_profile = (
        purchases.group_by(KEY)
        .agg(
            lifetime_orders=pl.len(),
            lifetime_revenue=pl.col("amount").sum(),
            orders_90d=(pl.col("at") >= window_start).sum(),
            revenue_90d=pl.col("amount").filter(pl.col("at") >= window_start).sum(),
            first_purchase_at=pl.col("at").min(),
            last_purchase_at=pl.col("at").max(),
        )
        .with_columns(
            days_since_last_purchase=(pl.lit(AS_OF_END.date()) - pl.col("last_purchase_at").dt.date()).dt.total_days(),
            average_order_value=pl.col("lifetime_revenue") / pl.col("lifetime_orders"),
        )
    )
    per_profile = per_profile.with_columns(
        rfm_recency_score=quantile_score(per_profile, "days_since_last_purchase", higher_is_better=False),
        rfm_frequency_score=quantile_score(per_profile, "lifetime_orders"),
        rfm_monetary_score=quantile_score(per_profile, "lifetime_revenue"),
    )
    groups = pl.read_csv(
        DBT_PROJECT_DIR / "seeds" / "rfm_groups.csv",
        schema_overrides={"recency_score": pl.Int32, "frequency_score": pl.Int32},
    )
    per_profile = per_profile.join(
        groups,
        left_on=["rfm_recency_score", "rfm_frequency_score"],
        right_on=["recency_score", "frequency_score"],
        how="left",
    )

    lines = latest_versions(query(runs, "select * from raw.webshop__order_lines"), "order_line_id")
    completed_orders = purchases.filter(pl.col("order_id").is_not_null()).select(KEY, "order_id", "at")
    bought = lines.join(completed_orders, on="order_id").select(
        KEY, "at", product_category=pl.col("category").str.strip_chars().str.to_lowercase()
    )
    favourite = most_frequent(bought.filter(pl.col("product_category") != ""), "product_category", "at").rename(
        {"product_category": "favourite_category"}
    )

    email = query(
        runs,
        """
        select r.profile_id, e.event_type, e.campaign_id, e.occurred_at
        from raw.esp__email_events as e
        inner join identity.record_profiles as r on r.record_id = 'esp__email_events:' || e.event_id""",
    ).filter(pl.col("occurred_at") < AS_OF_END)
    rates = email.group_by(KEY).agg(
        **{
            f"emails_{name}": pl.col("campaign_id").filter(pl.col("event_type") == kind).n_unique()
            for name, kind in (("received", "sent"), ("opened", "opened"), ("clicked", "clicked"))
        }
    )
    opens = email.filter(pl.col("event_type") == "opened").with_columns(
        preferred_send_hour=pl.col("occurred_at").dt.hour().cast(pl.Int32)
    )
    send_hour = most_frequent(opens, "preferred_send_hour", "occurred_at")

    profiles = query(runs, "select profile_id, loyalty_tier, loyalty_points from profiles.profiles")
    return (
        profiles.join(per_profile, on=KEY, how="left")
        .join(favourite, on=KEY, how="left")
        .join(rates, on=KEY, how="left")
        .join(send_hour, on=KEY, how="left")
        .with_columns(
            pl.col("lifetime_orders", "orders_90d", "emails_received", "emails_opened", "emails_clicked").fill_null(0),
            pl.col("lifetime_revenue", "revenue_90d").fill_null(0.0),
        )
        .with_columns(
            email_open_rate=pl.when(pl.col("emails_received") > 0).then(
                pl.col("emails_opened") / pl.col("emails_received")
            ),
            email_click_rate=pl.when(pl.col("emails_received") > 0).then(
                pl.col("emails_clicked") / pl.col("emails_received")
            ),
        )
    )


def test_traits_equal_an_independent_computation_from_raw_data(runs, expected_traits):
    actual = query(runs, "select * from profiles.profile_traits")
    assert actual.height == expected_traits.height
    joined = expected_traits.join(actual, on=KEY, suffix="_actual")
    assert joined.height == actual.height
    money = ("lifetime_revenue", "revenue_90d", "average_order_value")
    rates = ("email_open_rate", "email_click_rate")
    checked = (
        "lifetime_orders",
        "orders_90d",
        "first_purchase_at",
        "last_purchase_at",
        "days_since_last_purchase",
        "rfm_recency_score",
        "rfm_frequency_score",
        "rfm_monetary_score",
        "rfm_group",
        "favourite_category",
        "emails_received",
        "emails_opened",
        "emails_clicked",
        "preferred_send_hour",
        "loyalty_tier",
        "loyalty_points",
        *money,
        *rates,
    )
    for column in checked:
        expected, got = joined[column], joined[f"{column}_actual"]
        if column in money or column in rates:
            # Money is decimal(18, 2) in the warehouse (rounded half away from zero); rates are doubles.
            tolerance = 0.005 + 1e-9 if column in money else 1e-9
            got = got.cast(pl.Float64)
            differs = (~((expected - got).abs() <= tolerance)).fill_null(False) | (expected.is_null() != got.is_null())
        else:
            differs = ~expected.eq_missing(got.cast(expected.dtype))
        bad = joined.filter(differs)
        assert bad.is_empty(), (
            f"{column}: {bad.height} profiles differ, e.g. {bad.select(KEY, column, f'{column}_actual').head(3).to_dicts()}"
        )
    buyers = joined.filter(pl.col("lifetime_orders") > 0)
    assert buyers.height > 500 and buyers["rfm_group"].null_count() == 0
    assert set(buyers["rfm_group"]) >= {"champions", "at_risk", "lost", "loyal_customers"}
    assert not math.isnan(buyers["email_open_rate"].drop_nulls().mean())


def test_every_rfm_band_holds_buyers_on_skewed_frequencies(runs, expected_traits):
    """Most demo buyers bought once or twice: plain quantiles (1 + floor(5 x share ranked below)) give the
    one-time buyers 1 and the two-time buyers 3, so band 2 is empty (issue 21 item 9). Every band of
    every RFM score now holds buyers."""
    buyers = query(runs, "select * from profiles.profile_traits where lifetime_orders > 0")
    shares_below = (buyers["lifetime_orders"].rank("min") - 1) / (buyers.height - 1)
    plain = set((1 + (shares_below * 5).floor()).clip(upper_bound=5).cast(pl.Int32).to_list())
    assert 2 not in plain, "the demo's frequencies are skewed: plain quantiles leave band 2 empty"
    for score in ("rfm_recency_score", "rfm_frequency_score", "rfm_monetary_score"):
        counts = buyers[score].value_counts().sort(score)
        assert counts[score].to_list() == [1, 2, 3, 4, 5], (score, counts.to_dicts())


def test_preferred_channel_is_the_most_engaged_one_in_180_days(runs):
    engagement = (
        "commerce.purchases",
        "commerce.productViews",
        "commerce.productListAdds",
        "web.webpagedetails.pageViews",
        "application.launch",
        "userAccount.login",
        "directMarketing.emailOpened",
        "directMarketing.emailClicked",
        "directMarketing.smsClicked",
    )
    events = query(runs, "select profile_id, event_type, channel, occurred_at from profiles.profile_events").filter(
        pl.col("event_type").is_in(engagement)
        & (pl.col("occurred_at") < AS_OF_END)
        & (pl.col("occurred_at") >= AS_OF_END - dt.timedelta(days=180))
    )
    expected = most_frequent(events, "channel", "occurred_at")
    actual = query(
        runs, "select profile_id, preferred_channel from profiles.profile_traits where preferred_channel is not null"
    )
    assert actual.sort(KEY)["preferred_channel"].to_list() == expected.sort(KEY)["channel"].to_list()
    assert actual.height == expected.height > 0


def test_golden_record_takes_each_attribute_group_from_the_policy_winner(runs):
    """Independently of the SQL: email from the latest record with an email (the default rule); name and
    address from the CRM contact first, then loyalty, then the latest record; each group's fields from one
    record. The lineage lists exactly the filled attributes with their values."""
    records = query(
        runs,
        """
        select r.profile_id, x.* from xdm.xdm_profile_records as x
        inner join identity.record_profiles as r using (record_id)""",
    )
    precedence = {"crm__contacts": 1, "loyalty__members": 2}
    records = records.with_columns(source_rank=pl.col("source_table").replace_strict(precedence, default=3))

    def winners(fields: list[str], by_source: bool) -> pl.DataFrame:
        candidates = records.filter(pl.any_horizontal(pl.col(f).is_not_null() for f in fields))
        order = (["source_rank"] if by_source else []) + ["record_updated_at", "record_id"]
        descending = ([False] if by_source else []) + [True, True]
        return (
            candidates.sort([KEY, *order], descending=[False, *descending])
            .unique(KEY, keep="first")
            .select(KEY, *fields)
        )

    profiles = query(runs, "select * from profiles.profiles")
    email = winners(["personal_email_address"], by_source=False).rename({"personal_email_address": "email"})
    name = winners(["person_name_first_name", "person_name_last_name"], by_source=True).rename(
        {"person_name_first_name": "first_name", "person_name_last_name": "last_name"}
    )
    address = winners(
        ["home_address_street1", "home_address_city", "home_address_postal_code", "home_address_country_code"],
        by_source=True,
    ).rename(
        {
            "home_address_street1": "street",
            "home_address_city": "city",
            "home_address_postal_code": "postcode",
            "home_address_country_code": "country_code",
        }
    )
    for expected in (email, name, address):
        columns = [c for c in expected.columns if c != KEY]
        actual = profiles.select(KEY, *columns).filter(pl.any_horizontal(pl.col(c).is_not_null() for c in columns))
        assert actual.sort(KEY).equals(expected.sort(KEY)), f"{columns} differ from the policy's winners"
    # A group wins whole: some profiles have a street from one record and a different city elsewhere.
    assert profiles.filter(pl.col("street").is_null() & pl.col("city").is_not_null()).height > 0

    lineage = query(
        runs, "select profile_id, attribute, attribute_value, record_id from profiles.profile_attribute_lineage"
    )
    attributes = [
        c
        for c in profiles.columns
        if c not in (KEY, "is_known", "identity_count", "profile_record_count", "last_updated_at")
    ]
    filled = (
        profiles.with_columns(pl.col(attributes).cast(pl.String))
        .unpivot(index=KEY, on=attributes, variable_name="attribute", value_name="value")
        .filter(pl.col("value").is_not_null())
    )
    assert filled.height == lineage.height
    joined = filled.join(lineage, on=[KEY, "attribute"], how="inner")
    assert joined.height == lineage.height and (joined["value"] == joined["attribute_value"]).all()


def test_snapshots_keep_history_and_recompute_an_audience_as_of_a_past_run(runs):
    """The third run's late order changed one profile: its traits and golden record have two versions
    (the small red-dress order of tests/pipeline_runs.py changes that buyer's traits too, and the planted
    identity merge and split change the profiles they touch: the merged profile gains the visitor's events,
    the split one loses a part); nothing else changed (the rerun recorded no version at all, per the fingerprints). As of the second
    run, seg_high_value recomputed from the traits snapshot is the audience before the order."""
    versions = query(
        runs,
        f"""
        select count(*) from snapshots.profile_traits_snapshot where profile_id = '{runs.promoted_profile}'""",
    ).item()
    assert versions == 2
    # Others changed only where the promoted buyer's new rank moved their RFM quantile scores.
    planted = [runs.promoted_profile, runs.red_dress_profile, *runs.merged_profiles, runs.split_profile]
    closed = query(
        runs,
        f"""
        select old.* exclude (dbt_scd_id, dbt_updated_at, dbt_valid_from, dbt_valid_to),
               new.* exclude (dbt_scd_id, dbt_updated_at, dbt_valid_from, dbt_valid_to)
        from snapshots.profile_traits_snapshot as old
        inner join snapshots.profile_traits_snapshot as new
            on new.profile_id = old.profile_id and new.dbt_valid_from = old.dbt_valid_to
        where old.profile_id not in ({", ".join(f"'{p}'" for p in planted)})""",
    )
    scores = {"rfm_recency_score", "rfm_frequency_score", "rfm_monetary_score", "rfm_group"}
    for column in (c for c in closed.columns if not c.endswith("_1") and c not in scores):
        assert closed[column].eq_missing(closed[f"{column}_1"]).all(), (
            f"{column} changed for a profile the run did not touch"
        )
    assert (
        query(
            runs,
            f"""select count(*) from snapshots.profiles_snapshot
                          where profile_id = '{runs.promoted_profile}'""",
        ).item()
        == 2
    )
    assert runs.fingerprints[0]["snapshots.profiles_snapshot"] == runs.fingerprints[1]["snapshots.profiles_snapshot"]

    between = runs.finished_at[1].isoformat(sep=" ")
    audience_then = f"""
        select profiles.profile_id
        from {{{{ snapshot_as_of('profile_traits_snapshot', "timestamp '{between}'") }}}} as traits
        inner join {{{{ snapshot_as_of('profiles_snapshot', "timestamp '{between}'") }}}} as profiles
            on profiles.profile_id = traits.profile_id
        where profiles.is_known and traits.lifetime_revenue >= {HIGH_VALUE_MIN_REVENUE}"""
    result = run_dbt(
        runs.workspace.env,
        runs.workspace.data_dir / "dbt-target-as-of",
        "show",
        "--inline",
        audience_then,
        "--limit",
        "-1",
        "--output",
        "json",
        "--log-format",
        "json",
    )
    shown = next(json.loads(line)["data"]["preview"] for line in result.stdout.splitlines() if '"preview"' in line)
    members_then = {row["profile_id"] for row in json.loads(shown)}
    members_now = set(query(runs, "select profile_id from segments.seg_high_value")["profile_id"])
    assert members_then == members_now - {runs.promoted_profile}
