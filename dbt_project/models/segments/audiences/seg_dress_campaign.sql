-- generated from audiences/dress_campaign.yml by `cdp segments compile`; do not edit.
-- Known profiles with marketing email consent who viewed products at least twice in the last 30 days or bought a dress in the last 90 days, lapsed buyers excluded; 10% held out.
{{ audience_require_columns('audiences/dress_campaign.yml', [
    ['profile_purchase_items', 'product_category', 'conditions[2].any[1].purchased_item.where[0].field'],
    ['profiles', 'is_known', 'conditions[0].field']
]) }}
with

profiles as (
    select * from {{ ref('profiles') }}
),

events as (
    select * from {{ ref('profile_events') }}
),

purchase_items as (
    select * from {{ ref('profile_purchase_items') }}
),

consents as (
    select * from {{ ref('profile_consents') }}
),

audience_lapsed_buyers as (
    select profile_id from {{ ref('seg_lapsed_buyers') }}
),

candidates as (
    select
        {{ audience_columns('profiles') }}
    from profiles
    where
        (
            coalesce(profiles.is_known = true, false)
            and exists (
                select 1 from consents
                where consents.profile_id = profiles.profile_id
                    and consents.consent_purpose = 'marketing_email'
                    and consents.consent_value = 'y'
            )
            and (
                (
                    select count(distinct events.event_id)
                    from events
                    where events.profile_id = profiles.profile_id
                        and events.event_type = 'commerce.productViews'
                        and events.occurred_at >= {{ dbt.dateadd('day', -30, as_of_timestamp()) }} and events.occurred_at < {{ as_of_timestamp() }}
                ) >= 2
                or (
                    select count(distinct purchase_items.event_id)
                    from purchase_items
                    where purchase_items.profile_id = profiles.profile_id
                        and purchase_items.commerce_order_status = 'completed'
                        and purchase_items.occurred_at >= {{ dbt.dateadd('day', -90, as_of_timestamp()) }} and purchase_items.occurred_at < {{ as_of_timestamp() }}
                        and coalesce(purchase_items.product_category = 'dresses', false)
                ) >= 1
            )
            and not (
                profiles.profile_id in (select profile_id from audience_lapsed_buyers)
            )
        )
),

bucketed as (
    select
        *,
        {{ audience_split_bucket('profile_id', "'dress_campaign'") }} as split_bucket
    from candidates
),

final as (
    select
        profile_id,
        email,
        phone,
        first_name,
        last_name,
        case
            when split_bucket < 90 then 'campaign'
            when split_bucket < 100 then 'holdout'
        end as split_name,
        (split_bucket >= 90 and split_bucket < 100) as is_holdout
    from bucketed
)

select * from final
