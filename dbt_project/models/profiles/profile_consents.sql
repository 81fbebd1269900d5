-- Consent per profile and purpose: the latest decision wins, whichever system recorded it. The
-- preference centre records grants and refusals; an unsubscribe in the email or SMS tool is a
-- refusal of that channel's marketing. A purpose with no recorded decision has no row here, and no
-- row never counts as consent.
with

preference_consents as (
    select * from {{ ref('stg_preferences__consents') }}
),

events as (
    select * from {{ ref('xdm_experience_events') }}
),

record_profiles as (
    select * from {{ ref('record_profiles') }}
),

preference_decisions as (
    select
        {{ record_id('preferences__consents', 'consent_event_id') }} as record_id,
        consent_purpose,
        is_granted,
        recorded_at as decided_at
    from preference_consents
),

unsubscribes as (
    select
        record_id,
        case event_type
            when 'directMarketing.emailUnsubscribed' then 'marketing_email'
            when 'directMarketing.smsUnsubscribed' then 'marketing_sms'
        end as consent_purpose,
        false as is_granted,
        occurred_at as decided_at
    from events
    where event_type in ('directMarketing.emailUnsubscribed', 'directMarketing.smsUnsubscribed')
),

decisions as (
    select * from preference_decisions
    union all
    select * from unsubscribes
),

attributed as (
    select
        record_profiles.profile_id,
        decisions.consent_purpose,
        decisions.is_granted,
        decisions.decided_at,
        decisions.record_id,
        record_profiles.source_table
    from decisions
    inner join record_profiles
        on record_profiles.record_id = decisions.record_id
),

latest as (
    {{ deduplicate('attributed', 'profile_id, consent_purpose', 'decided_at desc, record_id desc') }}
),

final as (
    select
        profile_id,
        consent_purpose,
        case when is_granted then 'y' else 'n' end as consent_value,
        decided_at,
        source_table as decided_by_source,
        record_id as decided_by_record_id
    from latest
)

select * from final
