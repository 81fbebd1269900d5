-- Lapsed buyers: known profiles who bought before but not in the last var lapsed_after_days days.
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
        and traits.last_purchase_at < {{ dbt.dateadd('day', -var('lapsed_after_days'), as_of_timestamp()) }}
)

select * from final
