-- Consent of every profile for every purpose of seed consent_purposes: the latest decision wins,
-- whichever system recorded it. The preference centre records grants and refusals; an unsubscribe in
-- the email or SMS tool is a refusal of that channel's marketing. A purpose nobody decided is 'unknown',
-- and unknown never counts as consent (only 'y' does).
with

profiles as (
    select * from {{ ref('profiles') }}
),

purposes as (
    select * from {{ ref('consent_purposes') }}
),

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
        profiles.profile_id,
        purposes.consent_purpose,
        case
            when latest.is_granted then 'y'
            when not latest.is_granted then 'n'
            else 'unknown'
        end as consent_value,
        latest.decided_at,
        latest.source_table as decided_by_source,
        latest.record_id as decided_by_record_id
    from profiles
    cross join purposes
    left join latest
        on latest.profile_id = profiles.profile_id
        and latest.consent_purpose = purposes.consent_purpose
)

select * from final
