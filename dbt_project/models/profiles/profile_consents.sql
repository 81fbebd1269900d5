-- Consent per profile and purpose from the preference centre: the latest decision wins. A purpose
-- with no recorded decision has no row here, and no row never counts as consent.
with

consents as (
    select * from {{ ref('stg_preferences__consents') }}
),

record_profiles as (
    select * from {{ ref('record_profiles') }}
),

attributed as (
    select
        record_profiles.profile_id,
        consents.consent_purpose,
        consents.is_granted,
        consents.recorded_at,
        consents.consent_event_id
    from consents
    inner join record_profiles
        on record_profiles.record_id = {{ record_id('preferences__consents', 'consents.consent_event_id') }}
),

latest as (
    {{ deduplicate('attributed', 'profile_id, consent_purpose', 'recorded_at desc, consent_event_id desc') }}
),

final as (
    select
        profile_id,
        consent_purpose,
        case when is_granted then 'y' else 'n' end as consent_value,
        recorded_at as decided_at,
        consent_event_id
    from latest
)

select * from final
