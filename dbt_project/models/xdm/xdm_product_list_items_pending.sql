-- Order lines delivered before their order: two tables' exports are cut at slightly different
-- moments, so a line can arrive a run before its order header. Such a line waits here, counted and
-- visible with its reason, instead of failing the run; the first build after its order is loaded
-- moves it to xdm_product_list_items. A line waiting longer than var('late_parent_grace_hours') is
-- reported by a warning test (tests/order_lines_waiting_too_long.sql): its order may never come.
with

order_lines as (
    select * from {{ ref('stg_webshop__order_lines') }}
),

items as (
    select product_list_item_id from {{ ref('xdm_product_list_items') }}
),

lines as (
    select
        {{ record_id('webshop__order_lines', 'order_line_id') }} as product_list_item_id,
        {{ record_id('webshop__orders', 'order_id') }} as record_id,
        order_line_id,
        order_id,
        loaded_at,
        source_file
    from order_lines
),

final as (
    select
        product_list_item_id,
        order_line_id,
        order_id,
        record_id as parent_record_id,
        'order not loaded yet' as reason,
        loaded_at as waiting_since,
        source_file
    from lines
    -- Every line whose order is loaded is an item (xdm_product_list_items).
    where not exists (select 1 from items where items.product_list_item_id = lines.product_list_item_id)
)

select * from final
