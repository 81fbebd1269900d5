-- High-value customers: known profiles whose lifetime revenue reaches var high_value_min_revenue.
with

profiles as (
    select * from {{ ref('profiles') }}
),

traits as (
    select * from {{ ref('profile_traits') }}
),

final as (
    select
        {{ audience_columns('profiles') }},
        traits.lifetime_orders,
        traits.lifetime_revenue,
        traits.last_purchase_at
    from profiles
    inner join traits
        on traits.profile_id = profiles.profile_id
    where profiles.is_known
        and traits.lifetime_revenue >= {{ var('high_value_min_revenue') }}
)

select * from final
