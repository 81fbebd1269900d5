-- XDM productListItems of purchase events, as a child table of xdm_experience_events.
with

order_lines as (
    select * from {{ ref('stg_webshop__order_lines') }}
),

final as (
    select
        {{ record_id('webshop__order_lines', 'order_line_id') }} as product_list_item_id,
        {{ record_id('webshop__orders', 'order_id') }} as record_id,
        product_id as sku,
        product_name as name,
        product_category,
        product_colour,
        quantity,
        line_total as price_total
    from order_lines
)

select * from final
