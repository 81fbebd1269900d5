-- Which profile each source record belongs to. Records with no linkable identifier (walk-in store
-- purchases, events seen only with a junk or hub identifier) stay unresolved and are not listed.
with

identities as (
    select * from {{ ref('xdm_identities') }}
),

graph as (
    select * from {{ ref('identity_graph') }}
),

final as (
    select
        identities.record_id,
        min(identities.source_table) as source_table,
        min(graph.profile_id) as profile_id
    from identities
    inner join graph
        on graph.namespace = identities.namespace
        and graph.identity_value = identities.identity_value
    group by identities.record_id
)

select * from final
