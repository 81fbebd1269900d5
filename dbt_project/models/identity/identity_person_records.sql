-- Person records for probabilistic matching: source records that carry a name, with every person
-- attribute XDM holds normalized for comparison, the record's anchor (its smallest linkable identifier,
-- key and id, through which a match enters the identity graph) and its primary identifier (what a
-- duplicate record of the same source is merged through).
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

primary_identifiers as (
    select
        identities.record_id,
        min(identifiers.identity_key) as primary_key,
        min(identifiers.namespace) as primary_namespace
    from identities
    inner join identifiers
        on identifiers.namespace = identities.namespace
        and identifiers.identity_value = identities.identity_value
    where identities.is_primary and identifiers.is_linkable
    group by identities.record_id
),

final as (
    select
        records.record_id,
        anchors.anchor_key,
        anchors.anchor_id,
        primary_identifiers.primary_key,
        primary_identifiers.primary_namespace,
        records.source_table,
        cast(records.record_updated_at as timestamp) as seen_at,
        {{ normalize_name('records.person_name_first_name') }} as first_name,
        {{ normalize_name('records.person_name_last_name') }} as last_name,
        cast(records.person_birth_date as varchar) as birth_date,
        {{ normalize_name("regexp_replace(records.home_address_street1, '[.,#/]', ' ', 'g')") }} as street,
        nullif(upper(regexp_replace(records.home_address_postal_code, '[^0-9A-Za-z]', '', 'g')), '') as postcode,
        {{ normalize_name('records.home_address_city') }} as city,
        {{ normalize_name('records.home_address_region') }} as region,
        records.home_address_country_code as country,
        records.personal_email_address as email,
        records.mobile_phone_number as phone,
        nullif(upper(regexp_replace(records.person_national_id, '[^0-9A-Za-z]', '', 'g')), '') as national_id
    from records
    inner join anchors
        on anchors.record_id = records.record_id
    left join primary_identifiers
        on primary_identifiers.record_id = records.record_id
    where records.person_name_first_name is not null
        or records.person_name_last_name is not null
)

select * from final
