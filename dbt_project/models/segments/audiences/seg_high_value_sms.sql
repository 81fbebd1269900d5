-- generated from audiences/high_value_sms.yml by `cdp segments compile`; do not edit.
-- High-value customers who agreed to marketing SMS.
with

profiles as (
    select * from {{ ref('profiles') }}
),

consents as (
    select * from {{ ref('profile_consents') }}
),

audience_high_value as (
    select profile_id from {{ ref('seg_high_value') }}
),

candidates as (
    select
        {{ audience_columns('profiles') }}
    from profiles
    where
        (
            profiles.profile_id in (select profile_id from audience_high_value)
            and exists (
                select 1 from consents
                where consents.profile_id = profiles.profile_id
                    and consents.consent_purpose = 'marketing_sms'
                    and consents.consent_value = 'y'
            )
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
