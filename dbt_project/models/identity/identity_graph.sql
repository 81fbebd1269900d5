-- Each linkable identifier with the profile it belongs to (stable ids: identity_profile_ids).
with

components as (
    select * from {{ ref('identity_profile_ids') }}
),

identifiers as (
    select * from {{ ref('identity_identifiers') }}
),

component_sizes as (
    select
        component_id,
        count(*) as component_size
    from components
    group by component_id
),

final as (
    select
        identifiers.identity_key,
        identifiers.namespace,
        identifiers.identity_value,
        components.profile_id,
        components.profile_created_at,
        component_sizes.component_size,
        identifiers.record_count,
        identifiers.first_seen_at,
        identifiers.last_seen_at
    from components
    inner join component_sizes
        on component_sizes.component_id = components.component_id
    inner join identifiers
        on identifiers.identity_key = components.identity_key
)

select * from final
