with

source as (
    select * from {{ source('preferences', 'consents') }}
),

calling_codes as (
    select * from {{ ref('country_calling_codes') }}
    where country_code = '{{ var("default_phone_country") }}'
),

deduplicated as (
    {{ deduplicate('source', 'consent_event_id', '_loaded_at, _source_file, _row_number') }}
),

renamed as (
    select
        deduplicated.consent_event_id,
        {{ normalize_email('deduplicated.email') }} as email,
        {{ normalize_phone('deduplicated.phone', 'calling_codes.calling_code', 'calling_codes.trunk_prefix') }} as phone,
        lower(deduplicated.purpose) as consent_purpose,
        lower(deduplicated.status) = 'y' as is_granted,
        deduplicated.recorded_at,
        lower(nullif(trim(deduplicated.channel), '')) as capture_channel,
        deduplicated._loaded_at as loaded_at
    from deduplicated
    cross join calling_codes
)

select * from renamed
