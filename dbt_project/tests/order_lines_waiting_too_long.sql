-- Order lines whose order has not arrived within the grace period (var late_parent_grace_hours):
-- probably never sent, or quarantined (see quarantine.webshop__orders). A warning, not a block: the
-- lines wait without harm, and arrive with their order.
{{ config(severity='warn') }}

select *
from {{ ref('xdm_product_list_items_pending') }}
where waiting_since < {{ dbt.dateadd('hour', -var('late_parent_grace_hours'), utc_now()) }}
