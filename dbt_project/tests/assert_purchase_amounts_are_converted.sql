-- Purchase amounts that could not be converted to the reporting currency (a currency without rates in
-- seed exchange_rates, or a day before its first rate): they keep their original amount and currency
-- in profile_events but count for no revenue. Add the rates to the seed (tools/exchange_rates.py).
{{ config(severity='warn') }}

with

events as (
    select * from {{ ref('profile_events') }}
),

final as (
    select
        commerce_order_currency_code,
        count(*) as purchases,
        min(occurred_at) as first_occurred_at,
        max(occurred_at) as last_occurred_at,
        'no exchange rate to ' || '{{ var("reporting_currency") }}' || ' on or before the purchase day' as reason
    from events
    where
        commerce_order_price_total is not null
        and commerce_order_price_total_reporting is null
    group by commerce_order_currency_code
)

select * from final
