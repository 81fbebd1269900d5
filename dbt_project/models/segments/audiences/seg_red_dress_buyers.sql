-- generated from audiences/red_dress_buyers.yml by `cdp segments compile`; do not edit.
-- Women who bought a red dress in the last 14 days.
{{ audience_require_columns('audiences/red_dress_buyers.yml', [
    ['profile_purchase_items', 'product_category', 'conditions[1].purchased_item.where[0].field'],
    ['profile_purchase_items', 'product_colour', 'conditions[1].purchased_item.where[1].field'],
    ['profiles', 'gender', 'conditions[0].field']
]) }}
with

profiles as (
    select * from {{ ref('profiles') }}
),

purchase_items as (
    select * from {{ ref('profile_purchase_items') }}
),

candidates as (
    select
        {{ audience_columns('profiles') }}
    from profiles
    where
        (
            coalesce(profiles.gender = 'F', false)
            and (
                select count(distinct purchase_items.event_id)
                from purchase_items
                where purchase_items.profile_id = profiles.profile_id
                    and purchase_items.commerce_order_status = 'completed'
                    and purchase_items.occurred_at >= {{ dbt.dateadd('day', -14, as_of_timestamp()) }} and purchase_items.occurred_at < {{ as_of_timestamp() }}
                    and coalesce(purchase_items.product_category = 'dresses', false)
                    and coalesce(purchase_items.product_colour = 'red', false)
            ) >= 1
        )
),

final as (
    select
        profile_id,
        email,
        phone,
        first_name,
        last_name
    from candidates
)

select * from final
