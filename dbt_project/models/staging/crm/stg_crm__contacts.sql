-- CRM contacts: the latest version of each (stg_crm__contact_versions holds them all).
with

versions as (
    select * from {{ ref('stg_crm__contact_versions') }}
),

latest_versions as (
    {{ deduplicate('versions', 'contact_id', 'updated_at desc, source_file desc') }}
),

final as (
    select
        contact_id,
        first_name,
        last_name,
        email,
        phone,
        birth_date,
        gender,
        street,
        city,
        postcode,
        country_code,
        created_at,
        updated_at,
        source_file,
        loaded_at
    from latest_versions
)

select * from final
