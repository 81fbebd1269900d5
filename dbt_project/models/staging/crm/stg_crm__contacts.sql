with

source as (
    select * from {{ source('crm', 'contacts') }}
),

calling_codes as (
    select * from {{ ref('country_calling_codes') }}
),

-- A later export may carry a newer version of a contact: keep the latest version of each.
latest_versions as (
    {{ deduplicate('source', 'contact_id', 'updated_at desc, _loaded_at desc, _source_file desc, _row_number desc') }}
),

renamed as (
    select
        latest_versions.contact_id,
        nullif(trim(latest_versions.first_name), '') as first_name,
        nullif(trim(latest_versions.last_name), '') as last_name,
        {{ normalize_email('latest_versions.email') }} as email,
        {{ normalize_phone('latest_versions.phone', 'calling_codes.calling_code', 'calling_codes.trunk_prefix') }} as phone,
        latest_versions.birth_date,
        upper(nullif(trim(latest_versions.gender), '')) as gender,
        nullif(trim(latest_versions.street), '') as street,
        nullif(trim(latest_versions.city), '') as city,
        nullif(trim(latest_versions.postcode), '') as postcode,
        upper(nullif(trim(latest_versions.country), '')) as country_code,
        latest_versions.created_at,
        latest_versions.updated_at,
        latest_versions._source_file as source_file
    from latest_versions
    left join calling_codes
        on calling_codes.country_code
            = coalesce(upper(nullif(trim(latest_versions.country), '')), '{{ var("default_phone_country") }}')
)

select * from renamed
