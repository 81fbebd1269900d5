-- generated from audiences/email_offer_test.yml by `cdp segments compile`; do not edit.
-- Known profiles with marketing email consent who are not lapsed buyers; half held out to measure the summer email offer.
{{ audience_require_columns('audiences/email_offer_test.yml', [
    ['profiles', 'is_known', 'conditions[0].field']
]) }}
with

profiles as (
    select * from {{ ref('profiles') }}
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
            and not (
                profiles.profile_id in (select profile_id from audience_lapsed_buyers)
            )
        )
),

bucketed as (
    select
        *,
        {{ audience_split_bucket('profile_id', "'email_offer_test'") }} as split_bucket
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
            when split_bucket < 50 then 'email'
            when split_bucket < 100 then 'holdout'
        end as split_name,
        (split_bucket >= 50 and split_bucket < 100) as is_holdout
    from bucketed
)

select * from final
