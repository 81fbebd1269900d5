-- Every version of every CRM contact, normalized. Identity keeps the identifiers of all versions
-- (an old phone number still links that person's SMS history); the profile uses the latest.
with

source as (
    select * from {{ source('crm', 'contacts') }}
),

calling_codes as (
    select * from {{ ref('country_calling_codes') }}
),

-- One row per distinct version (contact_id, updated_at): a later export repeating a version is the same version.
versions as (
    {{ deduplicate('source', 'contact_id, updated_at', '_loaded_at desc, _source_file desc, _row_number desc') }}
),

renamed as (
    select
        versions.contact_id,
        nullif(trim(versions.first_name), '') as first_name,
        nullif(trim(versions.last_name), '') as last_name,
        {{ normalize_email('versions.email') }} as email,
        {{ normalize_phone('versions.phone', 'calling_codes.calling_code', 'calling_codes.trunk_prefix') }} as phone,
        versions.birth_date,
        upper(nullif(trim(versions.gender), '')) as gender,
        nullif(trim(versions.street), '') as street,
        nullif(trim(versions.city), '') as city,
        nullif(trim(versions.postcode), '') as postcode,
        upper(nullif(trim(versions.country), '')) as country_code,
        versions.created_at,
        versions.updated_at,
        versions._source_file as source_file,
        versions._loaded_at as loaded_at
    from versions
    left join calling_codes
        on calling_codes.country_code
            = coalesce(upper(nullif(trim(versions.country), '')), '{{ var("default_phone_country") }}')
)

select * from renamed
