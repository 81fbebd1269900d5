-- Which profile each source record belongs to. Records with no linkable identifier (walk-in store
-- purchases, events seen only with a junk or hub identifier) stay unresolved and are not listed.
-- A record whose identifiers ended up in two profiles (a link the rules dropped) goes to the profile
-- with the strongest evidence, never the id that sorts first: the one holding the record's primary
-- identifier, then the one holding its highest-priority identifier (seed identity_namespaces), then the
-- one holding most of its identifiers; only a full tie falls back to the profile id.
with

identities as (
    select * from {{ ref('xdm_identities') }}
),

graph as (
    select * from {{ ref('identity_graph') }}
),

namespaces as (
    select * from {{ ref('identity_namespaces') }}
),

record_candidates as (
    select
        identities.record_id,
        min(identities.source_table) as source_table,
        graph.profile_id,
        bool_or(identities.is_primary) as holds_primary_identifier,
        min(coalesce(namespaces.priority, 99)) as best_priority,
        count(*) as identifiers_held
    from identities
    inner join graph
        on graph.namespace = identities.namespace
        and graph.identity_value = identities.identity_value
    left join namespaces
        on namespaces.namespace = identities.namespace
    group by identities.record_id, graph.profile_id
),

ranked as (
    select
        *,
        count(*) over (partition by record_id) as candidate_profiles,
        row_number() over (
            partition by record_id
            order by holds_primary_identifier desc, best_priority, identifiers_held desc, profile_id
        ) as evidence_rank
    from record_candidates
),

final as (
    select
        record_id,
        source_table,
        profile_id,
        candidate_profiles,
        case
            when candidate_profiles = 1 then 'only_profile'
            when holds_primary_identifier then 'primary_identifier'
            else 'strongest_identifier'
        end as assigned_by
    from ranked
    where evidence_rank = 1
)

select * from final
