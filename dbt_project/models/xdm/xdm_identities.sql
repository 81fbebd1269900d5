-- XDM identityMap as a long table: one row per (source record, namespace, identifier value).
-- The first identifier listed for a source is the record's primary identity. A source with
-- `versions` keeps the identifiers of every version of a record (seen_at: the latest version that
-- carried it), as an identity graph keeps a link once made.
{%- set identity_sources = [
    {'model': 'stg_crm__contact_versions', 'source_table': 'crm__contacts', 'key': 'contact_id', 'seen_at': 'updated_at', 'versions': true,
     'identities': [('crm_id', 'contact_id', 'authenticated'), ('email', 'email', 'authenticated'), ('phone', 'phone', 'authenticated')]},
    {'model': 'stg_loyalty__members', 'source_table': 'loyalty__members', 'key': 'loyalty_id', 'seen_at': 'updated_at',
     'identities': [('loyalty_id', 'loyalty_id', 'authenticated'), ('email', 'email', 'authenticated'), ('phone', 'phone', 'authenticated')]},
    {'model': 'stg_webshop__orders', 'source_table': 'webshop__orders', 'key': 'order_id', 'seen_at': 'ordered_at',
     'identities': [('shop_customer_id', 'shop_customer_id', 'authenticated'), ('email', 'email', 'ambiguous'), ('phone', 'phone', 'ambiguous')]},
    {'model': 'stg_pos__transactions', 'source_table': 'pos__transactions', 'key': 'transaction_id', 'seen_at': 'transacted_at',
     'identities': [('loyalty_id', 'loyalty_id', 'ambiguous')]},
    {'model': 'stg_web__events', 'source_table': 'web__events', 'key': 'event_id', 'seen_at': 'occurred_at',
     'identities': [('cookie_id', 'cookie_id', 'ambiguous'), ('shop_customer_id', 'shop_customer_id', 'authenticated')]},
    {'model': 'stg_app__events', 'source_table': 'app__events', 'key': 'event_id', 'seen_at': 'occurred_at',
     'identities': [('device_id', 'device_id', 'ambiguous'), ('ad_id', 'advertising_id', 'ambiguous'), ('shop_customer_id', 'shop_customer_id', 'authenticated')]},
    {'model': 'stg_esp__email_events', 'source_table': 'esp__email_events', 'key': 'event_id', 'seen_at': 'occurred_at',
     'identities': [('email', 'email', 'ambiguous')]},
    {'model': 'stg_sms__sms_events', 'source_table': 'sms__sms_events', 'key': 'event_id', 'seen_at': 'occurred_at',
     'identities': [('phone', 'phone', 'ambiguous')]},
    {'model': 'stg_support__tickets', 'source_table': 'support__tickets', 'key': 'ticket_id', 'seen_at': 'opened_at',
     'identities': [('crm_id', 'contact_id', 'authenticated'), ('email', 'email', 'ambiguous'), ('phone', 'phone', 'ambiguous')]},
    {'model': 'stg_preferences__consents', 'source_table': 'preferences__consents', 'key': 'consent_event_id', 'seen_at': 'recorded_at',
     'identities': [('email', 'email', 'authenticated'), ('phone', 'phone', 'authenticated')]},
] %}

with

{% for src in identity_sources %}
{{ src.source_table }} as (
    {%- for namespace, column, state in src.identities %}
    select
        {{ record_id(src.source_table, src.key) }} as record_id,
        '{{ src.source_table }}' as source_table,
        '{{ namespace }}' as namespace,
        {{ column }} as identity_value,
        '{{ state }}' as authenticated_state,
        {{ 'true' if loop.first else 'false' }} as is_primary,
        {{ 'max(' ~ src.seen_at ~ ')' if src.versions else src.seen_at }} as seen_at
    from {{ ref(src.model) }}
    where {{ column }} is not null
    {%- if src.versions %}
    group by 1, 2, 3, 4, 5, 6
    {%- endif %}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),
{% endfor %}

final as (
    {%- for src in identity_sources %}
    select * from {{ src.source_table }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
)

select * from final
