with

source as (
    select * from {{ source('support', 'tickets') }}
),

calling_codes as (
    select * from {{ ref('country_calling_codes') }}
    where country_code = '{{ var("default_phone_country") }}'
),

latest_versions as (
    {{ deduplicate('source', 'ticket_id', '_loaded_at desc, _source_file desc, _row_number desc') }}
),

renamed as (
    select
        latest_versions.ticket_id,
        nullif(trim(latest_versions.crm_contact_id), '') as contact_id,
        {{ normalize_email('latest_versions.email') }} as email,
        {{ normalize_phone('latest_versions.phone', 'calling_codes.calling_code', 'calling_codes.trunk_prefix') }} as phone,
        lower(latest_versions.channel) as contact_channel,
        nullif(trim(latest_versions.subject), '') as subject,
        latest_versions.opened_at,
        lower(latest_versions.status) as ticket_status,
        latest_versions._loaded_at as loaded_at
    from latest_versions
    cross join calling_codes
)

select * from renamed
