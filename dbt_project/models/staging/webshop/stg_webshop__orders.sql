with

source as (
    select * from {{ source('webshop', 'orders') }}
),

calling_codes as (
    select * from {{ ref('country_calling_codes') }}
),

-- Exports repeat an order when its status changes: keep the latest version of each order.
latest_versions as (
    {{ deduplicate('source', 'order_id', '_loaded_at desc, _source_file desc, _row_number desc') }}
),

renamed as (
    select
        latest_versions.order_id,
        nullif(trim(latest_versions.customer_id), '') as shop_customer_id,
        {{ normalize_email('latest_versions.email') }} as email,
        {{ normalize_phone('latest_versions.phone', 'calling_codes.calling_code', 'calling_codes.trunk_prefix') }} as phone,
        latest_versions.ordered_at,
        cast(latest_versions.total_amount as decimal(18, 2)) as order_total,
        upper(latest_versions.currency) as currency_code,
        lower(latest_versions.status) as order_status,
        latest_versions.status = 'completed' as is_completed,
        nullif(trim(latest_versions.shipping_city), '') as shipping_city,
        nullif(trim(latest_versions.shipping_postcode), '') as shipping_postcode,
        upper(nullif(trim(latest_versions.shipping_country), '')) as shipping_country_code,
        latest_versions._source_file as source_file,
        latest_versions._loaded_at as loaded_at
    from latest_versions
    left join calling_codes
        on calling_codes.country_code
            = coalesce(upper(nullif(trim(latest_versions.shipping_country), '')), '{{ var("default_phone_country") }}')
)

select * from renamed
