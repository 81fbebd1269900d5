"""Point-in-time features per known profile, computed from the unified timeline as of a cutoff,
so a model trained on the past sees exactly what it will see when scoring today."""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

FEATURES = (
    "days_since_last_purchase",
    "purchases_90d",
    "purchases_365d",
    "purchases_total",
    "revenue_365d",
    "revenue_total",
    "email_opens_30d",
    "email_clicks_30d",
    "web_events_30d",
    "app_events_30d",
    "add_to_cart_30d",
    "tenure_days",
)
# Behaviour over a longer window, for look-alikes (engagement of people who are not buying this month).
BEHAVIOUR_FEATURES = (
    "email_opens_180d",
    "email_clicks_180d",
    "web_events_180d",
    "app_events_180d",
    "product_views_180d",
    "online_purchase_share",
    # Rates over the profile's active span (first to last event): how intensely someone engages while
    # a customer, whatever how long ago they started (tenure) or stopped (recency).
    "web_events_per_active_week",
    "app_events_per_active_week",
    "email_open_rate",
    "email_click_rate",
)
LOOKALIKE_FEATURES = FEATURES + BEHAVIOUR_FEATURES
# What each feature measures: a look-alike leaves out the families its seed is defined by.
FEATURE_FAMILIES = {
    "monetary": ("revenue_365d", "revenue_total"),
    "frequency": ("purchases_90d", "purchases_365d", "purchases_total"),
    "recency": ("days_since_last_purchase",),
    "tenure": ("tenure_days",),
}
NO_PURCHASE_DAYS = 3650  # stands for "never purchased" in days_since_last_purchase


def features_as_of(con: duckdb.DuckDBPyConnection, cutoff: dt.datetime) -> pl.DataFrame:
    """One row per known profile seen before `cutoff`, with LOOKALIKE_FEATURES computed from events before
    it; money in the reporting currency."""
    return con.execute(
        f"""
        with events as (
            select * from profiles.profile_events where occurred_at < $cutoff
        ),
        -- An order's status as the warehouse knew it at the cutoff: the latest version loaded by then, else
        -- the first version seen (history loaded after the cutoff). A later cancellation does not leak back.
        status_as_of as (
            select event_id, commerce_order_status
            from profiles.purchase_status_history
            qualify row_number() over (
                partition by event_id
                order by case when status_known_at <= $cutoff then 0 else 1 end,
                         case when status_known_at <= $cutoff then status_version end desc,
                         status_version
            ) = 1
        ),
        purchases as (
            select events.*
            from events
            left join status_as_of on status_as_of.event_id = events.event_id
            where events.event_type = 'commerce.purchases'
              and coalesce(status_as_of.commerce_order_status, events.commerce_order_status) = 'completed'
        ),
        known as (
            select profile_id from profiles.profiles where is_known
        ),
        purchase_features as (
            select profile_id,
                   date_diff('day', max(occurred_at), $cutoff) as days_since_last_purchase,
                   count(*) filter (where occurred_at >= $cutoff - interval 90 day) as purchases_90d,
                   count(*) filter (where occurred_at >= $cutoff - interval 365 day) as purchases_365d,
                   count(*) as purchases_total,
                   coalesce(sum(commerce_order_price_total_reporting) filter (where occurred_at >= $cutoff - interval 365 day), 0)
                       as revenue_365d,
                   sum(commerce_order_price_total_reporting) as revenue_total,
                   count(*) filter (where channel <> 'store') * 1.0 / count(*) as online_purchase_share
            from purchases group by profile_id
        ),
        engagement as (
            select profile_id,
                   count(*) filter (where event_type = 'directMarketing.emailOpened' and occurred_at >= $cutoff - interval 30 day) as email_opens_30d,
                   count(*) filter (where event_type = 'directMarketing.emailClicked' and occurred_at >= $cutoff - interval 30 day) as email_clicks_30d,
                   count(*) filter (where channel = 'web' and occurred_at >= $cutoff - interval 30 day) as web_events_30d,
                   count(*) filter (where channel = 'app' and occurred_at >= $cutoff - interval 30 day) as app_events_30d,
                   count(*) filter (where event_type = 'commerce.productListAdds' and occurred_at >= $cutoff - interval 30 day) as add_to_cart_30d,
                   count(*) filter (where event_type = 'directMarketing.emailOpened' and occurred_at >= $cutoff - interval 180 day) as email_opens_180d,
                   count(*) filter (where event_type = 'directMarketing.emailClicked' and occurred_at >= $cutoff - interval 180 day) as email_clicks_180d,
                   count(*) filter (where channel = 'web' and occurred_at >= $cutoff - interval 180 day) as web_events_180d,
                   count(*) filter (where channel = 'app' and occurred_at >= $cutoff - interval 180 day) as app_events_180d,
                   count(*) filter (where event_type = 'commerce.productViews' and occurred_at >= $cutoff - interval 180 day) as product_views_180d,
                   date_diff('day', min(occurred_at), $cutoff) as tenure_days,
                   count(*) filter (where channel = 'web')
                       / (greatest(date_diff('day', min(occurred_at), max(occurred_at)), 7) / 7.0) as web_events_per_active_week,
                   count(*) filter (where channel = 'app')
                       / (greatest(date_diff('day', min(occurred_at), max(occurred_at)), 7) / 7.0) as app_events_per_active_week,
                   count(*) filter (where event_type = 'directMarketing.emailOpened')
                       / greatest(count(*) filter (where event_type = 'directMarketing.emailSent'), 1) as email_open_rate,
                   count(*) filter (where event_type = 'directMarketing.emailClicked')
                       / greatest(count(*) filter (where event_type = 'directMarketing.emailSent'), 1) as email_click_rate
            from events group by profile_id
        )
        select
            known.profile_id,
            coalesce(purchase_features.days_since_last_purchase, {NO_PURCHASE_DAYS}) as days_since_last_purchase,
            coalesce(purchase_features.purchases_90d, 0) as purchases_90d,
            coalesce(purchase_features.purchases_365d, 0) as purchases_365d,
            coalesce(purchase_features.purchases_total, 0) as purchases_total,
            cast(coalesce(purchase_features.revenue_365d, 0) as double) as revenue_365d,
            cast(coalesce(purchase_features.revenue_total, 0) as double) as revenue_total,
            engagement.email_opens_30d, engagement.email_clicks_30d, engagement.web_events_30d,
            engagement.app_events_30d, engagement.add_to_cart_30d, engagement.tenure_days,
            engagement.email_opens_180d, engagement.email_clicks_180d, engagement.web_events_180d,
            engagement.app_events_180d, engagement.product_views_180d,
            cast(engagement.web_events_per_active_week as double) as web_events_per_active_week,
            cast(engagement.app_events_per_active_week as double) as app_events_per_active_week,
            cast(engagement.email_open_rate as double) as email_open_rate,
            cast(engagement.email_click_rate as double) as email_click_rate,
            coalesce(purchase_features.online_purchase_share, 0) as online_purchase_share
        from known
        inner join engagement on engagement.profile_id = known.profile_id
        left join purchase_features on purchase_features.profile_id = known.profile_id
        order by known.profile_id
        """,
        {"cutoff": cutoff},
    ).pl()


def purchases_between(con: duckdb.DuckDBPyConnection, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    """profile_id -> number of completed purchases in [start, end)."""
    return con.execute(
        """
        select profile_id, count(*) as purchases
        from profiles.profile_events
        where event_type = 'commerce.purchases' and commerce_order_status = 'completed'
          and occurred_at >= $start and occurred_at < $end
        group by profile_id
        """,
        {"start": start, "end": end},
    ).pl()
