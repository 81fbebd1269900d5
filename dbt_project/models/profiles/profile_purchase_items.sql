-- What each profile bought, one row per order line: the product-level view of purchase events that
-- traits (favourite category) and audiences ("bought a red dress in the last 14 days") filter on.
with

items as (
    select * from {{ ref('xdm_product_list_items') }}
),

events as (
    select * from {{ ref('profile_events') }}
),

final as (
    select
        items.product_list_item_id,
        events.profile_id,
        events.event_id,
        events.occurred_at,
        events.channel,
        events.commerce_order_status,
        items.sku,
        items.name as product_name,
        items.product_category,
        items.product_colour,
        items.quantity,
        items.price_total,
        cast(items.price_total * events.exchange_rate_to_reporting as decimal(18, 2)) as price_total_reporting
    from items
    inner join events
        on events.event_id = items.record_id
    where events.event_type = 'commerce.purchases'
)

select * from final
