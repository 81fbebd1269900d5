-- generated from audiences/lapsed_buyers.yml by `cdp segments compile`; do not edit.
-- Known profiles who purchased before but not within var lapsed_after_days days of the as-of date.
{{ audience_require_columns('audiences/lapsed_buyers.yml', [
    ['profile_traits', 'last_purchase_at', 'columns[2].field'],
    ['profile_traits', 'last_purchase_at', 'conditions[1].field'],
    ['profile_traits', 'lifetime_orders', 'columns[0].field'],
    ['profile_traits', 'lifetime_revenue', 'columns[1].field'],
    ['profiles', 'is_known', 'conditions[0].field']
]) }}
with

profiles as (
    select * from {{ ref('profiles') }}
),

traits as (
    select * from {{ ref('profile_traits') }}
),

candidates as (
    select
        {{ audience_columns('profiles') }},
        traits.lifetime_orders,
        traits.lifetime_revenue,
        traits.last_purchase_at
    from profiles
    left join traits
        on traits.profile_id = profiles.profile_id
    where
        (
            coalesce(profiles.is_known = true, false)
            and coalesce(traits.last_purchase_at < {{ dbt.dateadd('day', -var('lapsed_after_days'), as_of_timestamp()) }}, false)
        )
),

final as (
    select
        profile_id,
        email,
        phone,
        first_name,
        last_name,
        lifetime_orders,
        lifetime_revenue,
        last_purchase_at
    from candidates
)

select * from final
