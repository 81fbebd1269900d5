-- XDM ExperienceEvents: every interaction, with the XDM eventType it maps to.
with

webshop_orders as (
    select * from {{ ref('stg_webshop__orders') }}
),

pos_transactions as (
    select * from {{ ref('stg_pos__transactions') }}
),

web_events as (
    select * from {{ ref('stg_web__events') }}
),

app_events as (
    select * from {{ ref('stg_app__events') }}
),

email_events as (
    select * from {{ ref('stg_esp__email_events') }}
),

sms_events as (
    select * from {{ ref('stg_sms__sms_events') }}
),

support_tickets as (
    select * from {{ ref('stg_support__tickets') }}
),

orders as (
    select
        {{ record_id('webshop__orders', 'order_id') }} as record_id,
        'webshop__orders' as source_table,
        'commerce.purchases' as event_type,
        ordered_at as occurred_at,
        'webshop' as channel,
        order_id as commerce_order_purchase_id,
        order_total as commerce_order_price_total,
        currency_code as commerce_order_currency_code,
        order_status as commerce_order_status,
        cast(null as varchar) as web_page_url,
        cast(null as varchar) as marketing_campaign_id
    from webshop_orders
),

store_purchases as (
    select
        {{ record_id('pos__transactions', 'transaction_id') }} as record_id,
        'pos__transactions' as source_table,
        'commerce.purchases' as event_type,
        transacted_at as occurred_at,
        'store' as channel,
        transaction_id as commerce_order_purchase_id,
        transaction_total as commerce_order_price_total,
        currency_code as commerce_order_currency_code,
        'completed' as commerce_order_status,
        cast(null as varchar) as web_page_url,
        cast(null as varchar) as marketing_campaign_id
    from pos_transactions
),

web as (
    select
        {{ record_id('web__events', 'event_id') }} as record_id,
        'web__events' as source_table,
        case event_type
            when 'page_view' then 'web.webpagedetails.pageViews'
            when 'product_view' then 'commerce.productViews'
            when 'add_to_cart' then 'commerce.productListAdds'
            when 'login' then 'userAccount.login'
            else 'web.other'
        end as event_type,
        occurred_at,
        'web' as channel,
        cast(null as varchar) as commerce_order_purchase_id,
        cast(null as decimal(18, 2)) as commerce_order_price_total,
        cast(null as varchar) as commerce_order_currency_code,
        cast(null as varchar) as commerce_order_status,
        page_url as web_page_url,
        cast(null as varchar) as marketing_campaign_id
    from web_events
),

app as (
    select
        {{ record_id('app__events', 'event_id') }} as record_id,
        'app__events' as source_table,
        case event_type
            when 'app_open' then 'application.launch'
            when 'screen_view' then 'web.webpagedetails.pageViews'
            when 'add_to_cart' then 'commerce.productListAdds'
            when 'login' then 'userAccount.login'
            else 'application.other'
        end as event_type,
        occurred_at,
        'app' as channel,
        cast(null as varchar) as commerce_order_purchase_id,
        cast(null as decimal(18, 2)) as commerce_order_price_total,
        cast(null as varchar) as commerce_order_currency_code,
        cast(null as varchar) as commerce_order_status,
        cast(null as varchar) as web_page_url,
        cast(null as varchar) as marketing_campaign_id
    from app_events
),

email as (
    select
        {{ record_id('esp__email_events', 'event_id') }} as record_id,
        'esp__email_events' as source_table,
        case event_type
            when 'sent' then 'directMarketing.emailSent'
            when 'opened' then 'directMarketing.emailOpened'
            when 'clicked' then 'directMarketing.emailClicked'
            when 'bounced' then 'directMarketing.emailBounced'
            when 'unsubscribed' then 'directMarketing.emailUnsubscribed'
            else 'directMarketing.other'
        end as event_type,
        occurred_at,
        'email' as channel,
        cast(null as varchar) as commerce_order_purchase_id,
        cast(null as decimal(18, 2)) as commerce_order_price_total,
        cast(null as varchar) as commerce_order_currency_code,
        cast(null as varchar) as commerce_order_status,
        cast(null as varchar) as web_page_url,
        campaign_id as marketing_campaign_id
    from email_events
),

sms as (
    select
        {{ record_id('sms__sms_events', 'event_id') }} as record_id,
        'sms__sms_events' as source_table,
        -- XDM has no SMS event types of its own; these follow the directMarketing naming.
        case event_type
            when 'sent' then 'directMarketing.smsSent'
            when 'delivered' then 'directMarketing.smsDelivered'
            when 'clicked' then 'directMarketing.smsClicked'
            when 'unsubscribed' then 'directMarketing.smsUnsubscribed'
            else 'directMarketing.other'
        end as event_type,
        occurred_at,
        'sms' as channel,
        cast(null as varchar) as commerce_order_purchase_id,
        cast(null as decimal(18, 2)) as commerce_order_price_total,
        cast(null as varchar) as commerce_order_currency_code,
        cast(null as varchar) as commerce_order_status,
        cast(null as varchar) as web_page_url,
        campaign_id as marketing_campaign_id
    from sms_events
),

support as (
    select
        {{ record_id('support__tickets', 'ticket_id') }} as record_id,
        'support__tickets' as source_table,
        'customerService.ticketOpened' as event_type,
        opened_at as occurred_at,
        contact_channel as channel,
        cast(null as varchar) as commerce_order_purchase_id,
        cast(null as decimal(18, 2)) as commerce_order_price_total,
        cast(null as varchar) as commerce_order_currency_code,
        cast(null as varchar) as commerce_order_status,
        cast(null as varchar) as web_page_url,
        cast(null as varchar) as marketing_campaign_id
    from support_tickets
),

final as (
    select * from orders
    union all
    select * from store_purchases
    union all
    select * from web
    union all
    select * from app
    union all
    select * from email
    union all
    select * from sms
    union all
    select * from support
)

select * from final
