with

source as (
    select * from {{ source('web', 'events') }}
),

-- Events are immutable; a repeated event id (re-sent by the collector) is kept once.
deduplicated as (
    {{ deduplicate('source', 'event_id', '_loaded_at, _source_file, _row_number') }}
),

renamed as (
    select
        event_id,
        lower(trim(cookie_id)) as cookie_id,
        nullif(trim(customer_id), '') as shop_customer_id,
        lower(event_type) as event_type,
        nullif(trim(page_url), '') as page_url,
        occurred_at,
        _loaded_at as loaded_at
    from deduplicated
)

select * from renamed
