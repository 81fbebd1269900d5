-- Duplicate source records: two records of one source (e.g. a contact entered twice in the CRM) that
-- probabilistic matching found to be one person, for the source's owners to clean up. Each pair with
-- its match evidence, the profile both resolve to, and whether the linking rules merged them.
with

matches as (
    select * from {{ ref('identity_probabilistic_links') }}
),

record_profiles as (
    select * from {{ ref('record_profiles') }}
),

duplicates as (
    select * from matches
    where link_type = 'duplicate_record' and decision = 'match'
),

final as (
    select
        left_profiles.source_table,
        duplicates.left_record_id,
        duplicates.right_record_id,
        duplicates.left_identity_key as left_identifier,
        duplicates.right_identity_key as right_identifier,
        duplicates.match_probability,
        duplicates.match_weight,
        duplicates.agreeing_fields,
        left_profiles.profile_id,
        coalesce(left_profiles.profile_id = right_profiles.profile_id, false) as is_merged,
        duplicates.last_seen_at
    from duplicates
    left join record_profiles as left_profiles
        on left_profiles.record_id = duplicates.left_record_id
    left join record_profiles as right_profiles
        on right_profiles.record_id = duplicates.right_record_id
)

select * from final
