-- Every distinct identifier seen, and whether it may link records: blocked values (junk,
-- placeholders) and suspect hubs (an identifier shared by several values of a namespace that a
-- person has only one of, e.g. a household phone on two CRM contacts) never link.
with

identities as (
    select * from {{ ref('xdm_identities') }}
),

namespaces as (
    select * from {{ ref('identity_namespaces') }}
),

blocked_values as (
    select * from {{ ref('identity_blocked_values') }}
),

suspects as (
    select * from {{ ref('identity_suspect_identifiers') }}
),

identifiers as (
    select
        namespace,
        identity_value,
        count(*) as record_count,
        min(seen_at) as first_seen_at,
        max(seen_at) as last_seen_at
    from identities
    group by namespace, identity_value
),

blocked as (
    select
        identifiers.namespace,
        identifiers.identity_value,
        min(blocked_values.reason) as block_reason
    from identifiers
    inner join blocked_values
        on blocked_values.namespace in (identifiers.namespace, '*')
        and (
            (blocked_values.match_type = 'exact' and identifiers.identity_value = blocked_values.pattern)
            or (blocked_values.match_type = 'regex' and {{ regex_search('identifiers.identity_value', 'blocked_values.pattern') }})
        )
    group by identifiers.namespace, identifiers.identity_value
),

final as (
    select
        identifiers.namespace || ':' || identifiers.identity_value as identity_key,
        -- Dense integer id in identity_key order: the graph models work on integers (scipy, union-find),
        -- and the smallest id of a component is its smallest key.
        row_number() over (order by identifiers.namespace || ':' || identifiers.identity_value) - 1 as identity_id,
        identifiers.namespace,
        identifiers.identity_value,
        namespaces.priority as namespace_priority,
        identifiers.record_count,
        identifiers.first_seen_at,
        identifiers.last_seen_at,
        blocked.block_reason,
        suspects.evidence as suspect_evidence,
        blocked.block_reason is null and suspects.identity_value is null as is_linkable
    from identifiers
    left join namespaces
        on namespaces.namespace = identifiers.namespace
    left join blocked
        on blocked.namespace = identifiers.namespace
        and blocked.identity_value = identifiers.identity_value
    left join suspects
        on suspects.namespace = identifiers.namespace
        and suspects.identity_value = identifiers.identity_value
)

select * from final
