-- The unified activity timeline: every experience event attributed to a profile.
with

events as (
    select * from {{ ref('xdm_experience_events') }}
),

record_profiles as (
    select * from {{ ref('record_profiles') }}
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
        events.commerce_order_status,
        events.marketing_campaign_id,
        events.event_measures
    from events
    inner join record_profiles
        on record_profiles.record_id = events.record_id
)

select * from final
