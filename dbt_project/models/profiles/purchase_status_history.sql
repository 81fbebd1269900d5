-- The status history of purchase events (web-shop orders change status; till transactions never do),
-- keyed like profile_events: predictive features read the status an order had as of their cutoff.
with

versions as (
    select * from {{ ref('stg_webshop__order_status_versions') }}
),

final as (
    select
        {{ record_id('webshop__orders', 'order_id') }} as event_id,
        order_status as commerce_order_status,
        status_known_at,
        status_version
    from versions
)

select * from final
