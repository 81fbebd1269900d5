-- generated from audiences/top_customers.yml by `cdp segments compile`; do not edit.
-- The 100 known customers with the highest lifetime revenue.
{{ audience_require_columns('audiences/top_customers.yml', [
    ['profile_traits', 'lifetime_orders', 'conditions[1].field'],
    ['profile_traits', 'lifetime_revenue', 'columns[0].field'],
    ['profile_traits', 'lifetime_revenue', 'rank.by'],
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
        traits.lifetime_revenue,
        traits.lifetime_revenue as rank_value
    from profiles
    left join traits
        on traits.profile_id = profiles.profile_id
    where
        (
            coalesce(profiles.is_known = true, false)
            and coalesce(traits.lifetime_orders >= 1, false)
        )
),

ranked as (
    select
        *,
        row_number() over (
            order by rank_value desc nulls last, profile_id
        ) as audience_rank
    from candidates
),

top_ranked as (
    select * from ranked
    where audience_rank <= 100
),

final as (
    select
        profile_id,
        email,
        phone,
        first_name,
        last_name,
        lifetime_revenue,
        audience_rank
    from top_ranked
)

select * from final
