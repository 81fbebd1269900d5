-- Computed traits per profile. Purchases are completed web-shop orders and store transactions.
with

profiles as (
    select * from {{ ref('profiles') }}
),

events as (
    select * from {{ ref('profile_events') }}
),

purchases as (
    select *
    from events
    where event_type = 'commerce.purchases'
        and commerce_order_status = 'completed'
),

purchase_traits as (
    select
        profile_id,
        count(*) as lifetime_orders,
        sum(commerce_order_price_total) as lifetime_revenue,
        sum(case when occurred_at >= {{ dbt.dateadd('day', -90, as_of_timestamp()) }}
            then commerce_order_price_total else 0 end) as revenue_90d,
        min(occurred_at) as first_purchase_at,
        max(occurred_at) as last_purchase_at
    from purchases
    group by profile_id
),

final as (
    select
        profiles.profile_id,
        coalesce(purchase_traits.lifetime_orders, 0) as lifetime_orders,
        cast(coalesce(purchase_traits.lifetime_revenue, 0) as decimal(18, 2)) as lifetime_revenue,
        cast(coalesce(purchase_traits.revenue_90d, 0) as decimal(18, 2)) as revenue_90d,
        purchase_traits.first_purchase_at,
        purchase_traits.last_purchase_at,
        {{ dbt.datediff('purchase_traits.last_purchase_at', as_of_timestamp(), 'day') }} as days_since_last_purchase
    from profiles
    left join purchase_traits
        on purchase_traits.profile_id = profiles.profile_id
)

select * from final
