-- XDM productListItems of purchase events, as a child table of xdm_experience_events. A line whose
-- order has not been loaded yet waits in xdm_product_list_items_pending and comes here with the
-- first build after its order arrives. Incremental: the lines loaded since the last build whose order
-- is there, and the lines of the orders loaded since (a late parent brings its waiting lines);
-- loaded_at is the later of the line's and its order's.
-- A table built before a column was added (loaded_at by an earlier version, or a new attribute) is
-- taken whole once (xdm_adds_to_table), as the other XDM tables do.
{{ config(unique_key='product_list_item_id') }}
{%- set adds = xdm_adds_to_table([
    'product_list_item_id', 'record_id', 'sku', 'name', 'product_category', 'product_colour', 'quantity',
    'price_total', 'loaded_at'
]) %}

with

order_lines as (
    select * from {{ ref('stg_webshop__order_lines') }}
),

events as (
    select record_id, loaded_at from {{ ref('xdm_experience_events') }}
    where source_table = 'webshop__orders'
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
        line_total as price_total,
        loaded_at
    from order_lines
),

{% if adds %}
high_water_mark as (
    select coalesce(max(loaded_at), cast('1900-01-01 00:00:00' as timestamp)) as loaded_at from {{ this }}
),
{% endif %}

parented as (
    select
        items.*,
        events.loaded_at as order_loaded_at
    from items
    inner join events
        on events.record_id = items.record_id
    {% if adds %}
    -- The lines loaded since the last build whose order is there, and every line (also an earlier one,
    -- waiting) of an order loaded since.
    where items.loaded_at > (select loaded_at from high_water_mark)
        or events.loaded_at > (select loaded_at from high_water_mark)
    {% endif %}
),

final as (
    select
        product_list_item_id,
        record_id,
        sku,
        name,
        product_category,
        product_colour,
        quantity,
        price_total,
        greatest(loaded_at, order_loaded_at) as loaded_at
    from parented
)

select * from final
