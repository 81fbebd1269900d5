with

source as (
    select * from {{ source('sms', 'sms_events') }}
),

calling_codes as (
    select * from {{ ref('country_calling_codes') }}
    where country_code = '{{ var("default_phone_country") }}'
),

deduplicated as (
    {{ deduplicate('source', 'event_id', '_loaded_at, _source_file, _row_number') }}
),

renamed as (
    select
        deduplicated.event_id,
        {{ normalize_phone('deduplicated.phone', 'calling_codes.calling_code', 'calling_codes.trunk_prefix') }} as phone,
        deduplicated.campaign_id,
        lower(deduplicated.event_type) as event_type,
        deduplicated.occurred_at,
        deduplicated._loaded_at as loaded_at
    from deduplicated
    cross join calling_codes
)

select * from renamed
