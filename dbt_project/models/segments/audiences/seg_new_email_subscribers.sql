-- generated from audiences/new_email_subscribers.yml by `cdp segments compile`; do not edit.
-- Known profiles whose marketing email consent was granted in the last 30 days.
{{ audience_require_columns('audiences/new_email_subscribers.yml', [
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
                    and consents.consent_purpose = 'marketing_email'
                    and consents.consent_value = 'y'
                    and consents.decided_at >= {{ dbt.dateadd('day', -30, as_of_timestamp()) }} and consents.decided_at < {{ as_of_timestamp() }}
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
