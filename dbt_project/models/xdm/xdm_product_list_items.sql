-- XDM productListItems of purchase events, as a child table of xdm_experience_events. A line whose
-- order has not been loaded yet waits in xdm_product_list_items_pending and comes here with the
-- first build after its order arrives.
with

order_lines as (
    select * from {{ ref('stg_webshop__order_lines') }}
),

events as (
    select * from {{ ref('xdm_experience_events') }}
),

items as (
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
),

final as (
    select items.*
    from items
    where exists (select 1 from events where events.record_id = items.record_id)
)

select * from final
