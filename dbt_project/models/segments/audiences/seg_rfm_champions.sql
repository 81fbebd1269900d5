-- generated from audiences/rfm_champions.yml by `cdp segments compile`; do not edit.
-- RFM champions, known buyers who bought most recently and most often (rfm_group champions).
{{ audience_require_columns('audiences/rfm_champions.yml', [
    ['profile_traits', 'rfm_group', 'conditions[1].field'],
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
        {{ audience_columns('profiles') }}
    from profiles
    left join traits
        on traits.profile_id = profiles.profile_id
    where
        (
            coalesce(profiles.is_known = true, false)
            and coalesce(traits.rfm_group = 'champions', false)
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
