with

source as (
    select * from {{ source('webshop', 'order_lines') }}
),

latest_versions as (
    {{ deduplicate('source', 'order_line_id', '_loaded_at desc, _source_file desc, _row_number desc') }}
),

renamed as (
    select
        order_line_id,
        order_id,
        product_id,
        nullif(trim(product_name), '') as product_name,
        lower(nullif(trim(category), '')) as product_category,
        lower(nullif(trim(colour), '')) as product_colour,
        quantity,
        cast(unit_price as decimal(18, 2)) as unit_price,
        cast(quantity * unit_price as decimal(18, 2)) as line_total,
        _loaded_at as loaded_at,
        _source_file as source_file
    from latest_versions
)

select * from renamed
