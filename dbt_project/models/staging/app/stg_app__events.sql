with

source as (
    select * from {{ source('app', 'events') }}
),

deduplicated as (
    {{ deduplicate('source', 'event_id', '_loaded_at, _source_file, _row_number') }}
),

renamed as (
    select
        event_id,
        lower(trim(device_id)) as device_id,
        -- IDFA arrives upper case, GAID lower case: one spelling per id.
        lower(nullif(trim(advertising_id), '')) as advertising_id,
        lower(platform) as platform,
        nullif(trim(customer_id), '') as shop_customer_id,
        lower(event_type) as event_type,
        occurred_at,
        _loaded_at as loaded_at
    from deduplicated
)

select * from renamed
