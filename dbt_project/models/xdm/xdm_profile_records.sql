-- XDM Individual Profile records: every source row that describes a person, in XDM field names.
with

crm_contacts as (
    select * from {{ ref('stg_crm__contacts') }}
),

loyalty_members as (
    select * from {{ ref('stg_loyalty__members') }}
),

webshop_orders as (
    select * from {{ ref('stg_webshop__orders') }}
),

support_tickets as (
    select * from {{ ref('stg_support__tickets') }}
),

from_crm as (
    select
        {{ record_id('crm__contacts', 'contact_id') }} as record_id,
        'crm__contacts' as source_table,
        first_name as person_name_first_name,
        last_name as person_name_last_name,
        birth_date as person_birth_date,
        gender as person_gender,
        email as personal_email_address,
        phone as mobile_phone_number,
        street as home_address_street1,
        city as home_address_city,
        postcode as home_address_postal_code,
        country_code as home_address_country_code,
        cast(null as varchar) as loyalty_tier,
        cast(null as bigint) as loyalty_points,
        updated_at as record_updated_at
    from crm_contacts
),

from_loyalty as (
    select
        {{ record_id('loyalty__members', 'loyalty_id') }} as record_id,
        'loyalty__members' as source_table,
        first_name as person_name_first_name,
        last_name as person_name_last_name,
        cast(null as date) as person_birth_date,
        cast(null as varchar) as person_gender,
        email as personal_email_address,
        phone as mobile_phone_number,
        cast(null as varchar) as home_address_street1,
        cast(null as varchar) as home_address_city,
        cast(null as varchar) as home_address_postal_code,
        country_code as home_address_country_code,
        loyalty_tier,
        loyalty_points,
        updated_at as record_updated_at
    from loyalty_members
),

from_webshop as (
    select
        {{ record_id('webshop__orders', 'order_id') }} as record_id,
        'webshop__orders' as source_table,
        cast(null as varchar) as person_name_first_name,
        cast(null as varchar) as person_name_last_name,
        cast(null as date) as person_birth_date,
        cast(null as varchar) as person_gender,
        email as personal_email_address,
        phone as mobile_phone_number,
        cast(null as varchar) as home_address_street1,
        shipping_city as home_address_city,
        shipping_postcode as home_address_postal_code,
        shipping_country_code as home_address_country_code,
        cast(null as varchar) as loyalty_tier,
        cast(null as bigint) as loyalty_points,
        ordered_at as record_updated_at
    from webshop_orders
),

from_support as (
    select
        {{ record_id('support__tickets', 'ticket_id') }} as record_id,
        'support__tickets' as source_table,
        cast(null as varchar) as person_name_first_name,
        cast(null as varchar) as person_name_last_name,
        cast(null as date) as person_birth_date,
        cast(null as varchar) as person_gender,
        email as personal_email_address,
        phone as mobile_phone_number,
        cast(null as varchar) as home_address_street1,
        cast(null as varchar) as home_address_city,
        cast(null as varchar) as home_address_postal_code,
        cast(null as varchar) as home_address_country_code,
        cast(null as varchar) as loyalty_tier,
        cast(null as bigint) as loyalty_points,
        opened_at as record_updated_at
    from support_tickets
),

final as (
    select * from from_crm
    union all
    select * from from_loyalty
    union all
    select * from from_webshop
    union all
    select * from from_support
)

select * from final
