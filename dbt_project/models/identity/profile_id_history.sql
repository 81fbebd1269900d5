-- Every merge and split of profile ids, appended by the run that caused it: downstream tools use it
-- to re-key what they hold. A merge: an identifier's previous id was absorbed into another profile.
-- A split: part of a previous profile now has a new id.
{{ config(materialized='incremental') }}

with

assignments as (
    select * from {{ ref('identity_profile_ids') }}
),

survivors as (
    -- Previous ids still in use this run.
    select distinct profile_id from assignments
),

changes as (
    select
        previous_profile_id,
        profile_id,
        count(*) as identifiers_moved,
        min(identity_key) as example_identity_key
    from assignments
    where previous_profile_id is not null
    group by previous_profile_id, profile_id
),

final as (
    select
        case when changes.previous_profile_id in (select profile_id from survivors) then 'split' else 'merge' end
            as change_type,
        changes.previous_profile_id,
        changes.profile_id as current_profile_id,
        changes.identifiers_moved,
        changes.example_identity_key,
        {{ dbt.current_timestamp() }} as recorded_at
    from changes
)

select * from final
