with

source as (
    select * from {{ source('esp', 'email_events') }}
),

deduplicated as (
    {{ deduplicate('source', 'event_id', '_loaded_at, _source_file, _row_number') }}
),

renamed as (
    select
        event_id,
        {{ normalize_email('email') }} as email,
        campaign_id,
        lower(event_type) as event_type,
        occurred_at,
        _loaded_at as loaded_at
    from deduplicated
)

select * from renamed
