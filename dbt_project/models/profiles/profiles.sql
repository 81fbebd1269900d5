-- The golden record: one row per profile. For now every attribute follows one merge policy,
-- Adobe's default: the latest non-null value (by the record's update time) wins.
with

graph as (
    select * from {{ ref('identity_graph') }}
),

record_profiles as (
    select * from {{ ref('record_profiles') }}
),

profile_records as (
    select * from {{ ref('xdm_profile_records') }}
),

namespaces as (
    select * from {{ ref('identity_namespaces') }}
),

profile_ids as (
    select
        graph.profile_id,
        -- Known: identified by something a person gave us, not only a cookie or device.
        bool_or(namespaces.is_person_level) as is_known,
        count(*) as identity_count
    from graph
    inner join namespaces
        on namespaces.namespace = graph.namespace
    group by graph.profile_id
),

attributed_records as (
    select
        record_profiles.profile_id,
        profile_records.*
    from profile_records
    inner join record_profiles
        on record_profiles.record_id = profile_records.record_id
),

merged as (
    select
        profile_id,
        {{ latest_non_null('person_name_first_name', 'record_updated_at') }} as first_name,
        {{ latest_non_null('person_name_last_name', 'record_updated_at') }} as last_name,
        {{ latest_non_null('person_birth_date', 'record_updated_at') }} as birth_date,
        {{ latest_non_null('person_gender', 'record_updated_at') }} as gender,
        {{ latest_non_null('personal_email_address', 'record_updated_at') }} as email,
        {{ latest_non_null('mobile_phone_number', 'record_updated_at') }} as phone,
        {{ latest_non_null('home_address_street1', 'record_updated_at') }} as street,
        {{ latest_non_null('home_address_city', 'record_updated_at') }} as city,
        {{ latest_non_null('home_address_postal_code', 'record_updated_at') }} as postcode,
        {{ latest_non_null('home_address_country_code', 'record_updated_at') }} as country_code,
        {{ latest_non_null('loyalty_tier', 'record_updated_at') }} as loyalty_tier,
        {{ latest_non_null('loyalty_points', 'record_updated_at') }} as loyalty_points,
        count(*) as profile_record_count,
        max(record_updated_at) as last_updated_at
    from attributed_records
    group by profile_id
),

final as (
    select
        profile_ids.profile_id,
        profile_ids.is_known,
        merged.first_name,
        merged.last_name,
        merged.birth_date,
        merged.gender,
        merged.email,
        merged.phone,
        merged.street,
        merged.city,
        merged.postcode,
        merged.country_code,
        merged.loyalty_tier,
        merged.loyalty_points,
        profile_ids.identity_count,
        coalesce(merged.profile_record_count, 0) as profile_record_count,
        merged.last_updated_at
    from profile_ids
    left join merged
        on merged.profile_id = profile_ids.profile_id
)

select * from final
