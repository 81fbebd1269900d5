-- Every status an order had, and from when the warehouse knew it: a later export of the same order
-- with another status (a cancellation, a return) is a new version. Predictive features read an order's
-- status as of their cutoff from here, so a later cancellation does not leak into the past.
with

source as (
    select * from {{ source('webshop', 'orders') }}
),

-- One row per (order, status): the first load that carried it.
versions as (
    select
        order_id,
        lower(status) as order_status,
        min(_loaded_at) as status_known_at,
        min(ordered_at) as ordered_at
    from source
    group by order_id, lower(status)
),

renamed as (
    select
        order_id,
        order_status,
        ordered_at,
        status_known_at,
        row_number() over (partition by order_id order by status_known_at, order_status) as status_version
    from versions
)

select * from renamed
