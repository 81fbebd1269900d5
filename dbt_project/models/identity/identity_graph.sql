-- Each linkable identifier with the profile it belongs to. A profile id is derived from the
-- smallest identifier key of its component, so it is the same on every run while that holds.
with

components as (
    select * from {{ ref('identity_components') }}
),

identifiers as (
    select * from {{ ref('identity_identifiers') }}
),

component_anchors as (
    select
        component_id,
        min(identity_key) as anchor_key,
        count(*) as component_size
    from components
    group by component_id
),

final as (
    select
        identifiers.identity_key,
        identifiers.namespace,
        identifiers.identity_value,
        'prf_' || substr(md5(component_anchors.anchor_key), 1, 16) as profile_id,
        component_anchors.component_size,
        identifiers.record_count,
        identifiers.first_seen_at,
        identifiers.last_seen_at
    from components
    inner join component_anchors
        on component_anchors.component_id = components.component_id
    inner join identifiers
        on identifiers.identity_key = components.identity_key
)

select * from final
