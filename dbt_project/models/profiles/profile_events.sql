-- The unified activity timeline: every experience event attributed to a profile. Purchase amounts keep
-- their original value and currency and are also converted to the reporting currency (var
-- reporting_currency) at the reference rate of their day (macros/exchange_rates.sql).
with

events as (
    select * from {{ ref('xdm_experience_events') }}
),

record_profiles as (
    select * from {{ ref('record_profiles') }}
),

exchange_rates as (
    {{ reporting_rates_by_day('events', 'commerce_order_currency_code', 'occurred_at', 'commerce_order_price_total') }}
),

final as (
    select
        events.record_id as event_id,
        record_profiles.profile_id,
        events.event_type,
        events.occurred_at,
        events.channel,
        events.source_table,
        events.commerce_order_purchase_id,
        events.commerce_order_price_total,
        events.commerce_order_currency_code,
        cast(
            events.commerce_order_price_total
            * {{ rate_to_reporting('exchange_rates', 'events.commerce_order_currency_code') }} as decimal(18, 2)
        ) as commerce_order_price_total_reporting,
        case
            when events.commerce_order_price_total is not null
                then {{ rate_to_reporting('exchange_rates', 'events.commerce_order_currency_code') }}
        end as exchange_rate_to_reporting,
        events.commerce_order_status,
        events.marketing_campaign_id,
        events.event_measures
    from events
    inner join record_profiles
        on record_profiles.record_id = events.record_id
    left join exchange_rates
        on
            events.commerce_order_price_total is not null
            and {{ exchange_rate_applies('exchange_rates', 'events.commerce_order_currency_code', 'events.occurred_at') }}
)

select * from final
