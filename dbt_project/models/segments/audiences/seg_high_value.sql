-- generated from audiences/high_value.yml by `cdp segments compile`; do not edit.
-- Known profiles with lifetime revenue of at least var high_value_min_revenue (in the reporting currency, var reporting_currency).
{{ audience_require_columns('audiences/high_value.yml', [
    ['profile_traits', 'last_purchase_at', 'columns[2].field'],
    ['profile_traits', 'lifetime_orders', 'columns[0].field'],
    ['profile_traits', 'lifetime_revenue', 'columns[1].field'],
    ['profile_traits', 'lifetime_revenue', 'conditions[1].field'],
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
            and coalesce(traits.lifetime_revenue >= {{ var('high_value_min_revenue') }}, false)
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
