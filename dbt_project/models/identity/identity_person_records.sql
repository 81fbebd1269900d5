-- Person records for probabilistic matching: source records that carry a name, with the fields
-- compared normalized, and the record's anchor (its smallest linkable identifier, key and id), through
-- which a match enters the identity graph.
with

records as (
    select * from {{ ref('xdm_profile_records') }}
),

identities as (
    select * from {{ ref('xdm_identities') }}
),

identifiers as (
    select * from {{ ref('identity_identifiers') }}
),

linkable as (
    {{ linkable_identities('identities', 'identifiers') }}
),

anchors as (
    {{ record_anchors('linkable') }}
),

final as (
    select
        records.record_id,
        anchors.anchor_key,
        anchors.anchor_id,
        records.source_table,
        cast(records.record_updated_at as timestamp) as seen_at,
        {{ normalize_name('records.person_name_first_name') }} as first_name,
        {{ normalize_name('records.person_name_last_name') }} as last_name,
        cast(records.person_birth_date as varchar) as birth_date,
        nullif(upper(replace(records.home_address_postal_code, ' ', '')), '') as postcode,
        {{ normalize_name('records.home_address_city') }} as city,
        records.home_address_country_code as country,
        records.personal_email_address as email,
        records.mobile_phone_number as phone
    from records
    inner join anchors
        on anchors.record_id = records.record_id
    where records.person_name_first_name is not null
        or records.person_name_last_name is not null
)

select * from final
