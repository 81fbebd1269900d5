with

source as (
    select * from {{ source('loyalty', 'members') }}
),

calling_codes as (
    select * from {{ ref('country_calling_codes') }}
),

latest_versions as (
    {{ deduplicate('source', 'loyalty_id', 'updated_at desc, _loaded_at desc, _source_file desc, _row_number desc') }}
),

renamed as (
    select
        latest_versions.loyalty_id,
        {{ normalize_email('latest_versions.email') }} as email,
        {{ normalize_phone('latest_versions.phone', 'calling_codes.calling_code', 'calling_codes.trunk_prefix') }} as phone,
        nullif(trim(latest_versions.first_name), '') as first_name,
        nullif(trim(latest_versions.last_name), '') as last_name,
        latest_versions.birth_date,
        nullif(trim(latest_versions.street), '') as street,
        nullif(trim(latest_versions.city), '') as city,
        nullif(trim(latest_versions.postcode), '') as postcode,
        nullif(trim(latest_versions.region), '') as region,
        lower(latest_versions.tier) as loyalty_tier,
        latest_versions.points as loyalty_points,
        upper(nullif(trim(latest_versions.country), '')) as country_code,
        latest_versions.joined_at,
        latest_versions.updated_at,
        latest_versions._loaded_at as loaded_at
    from latest_versions
    left join calling_codes
        on calling_codes.country_code
            = coalesce(upper(nullif(trim(latest_versions.country), '')), '{{ var("default_phone_country") }}')
)

select * from renamed
