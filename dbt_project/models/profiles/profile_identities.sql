-- Every identifier of every profile, with when and where it was seen.
with

graph as (
    select * from {{ ref('identity_graph') }}
),

identities as (
    select * from {{ ref('xdm_identities') }}
),

sources as (
    select
        namespace,
        identity_value,
        string_agg(distinct source_table, ',' order by source_table) as source_tables
    from identities
    group by namespace, identity_value
),

final as (
    select
        graph.profile_id,
        graph.namespace,
        graph.identity_value,
        -- What ad platforms match on (Email_LC_SHA256, phone SHA-256 of E.164): hex of the normalized value.
        case when graph.namespace in ('email', 'phone') then {{ sha256_hex('graph.identity_value') }} end
            as identity_value_sha256,
        graph.record_count,
        graph.first_seen_at,
        graph.last_seen_at,
        sources.source_tables
    from graph
    inner join sources
        on sources.namespace = graph.namespace
        and sources.identity_value = graph.identity_value
)

select * from final
