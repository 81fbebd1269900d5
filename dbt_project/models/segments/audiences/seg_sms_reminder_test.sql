-- generated from audiences/sms_reminder_test.yml by `cdp segments compile`; do not edit.
-- Known profiles with marketing SMS consent; half held out to measure the SMS reminder.
{{ audience_require_columns('audiences/sms_reminder_test.yml', [
    ['profiles', 'is_known', 'conditions[0].field']
]) }}
with

profiles as (
    select * from {{ ref('profiles') }}
),

consents as (
    select * from {{ ref('profile_consents') }}
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
                    and consents.consent_purpose = 'marketing_sms'
                    and consents.consent_value = 'y'
            )
        )
),

bucketed as (
    select
        *,
        {{ audience_split_bucket('profile_id', "'sms_reminder_test'") }} as split_bucket
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
            when split_bucket < 50 then 'sms'
            when split_bucket < 100 then 'holdout'
        end as split_name,
        (split_bucket >= 50 and split_bucket < 100) as is_holdout
    from bucketed
)

select * from final
