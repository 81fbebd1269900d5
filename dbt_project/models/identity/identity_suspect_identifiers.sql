-- Hub detection: a shared identifier (email, phone, cookie, ...) seen on records with more than one
-- value of a namespace a person has at most one of (crm id, shop account, loyalty id) links
-- different people, so it is excluded from linking. Evidence lists the conflicting values.
with

identities as (
    select * from {{ ref('xdm_identities') }}
),

namespaces as (
    select * from {{ ref('identity_namespaces') }}
),

shared_identities as (
    select identities.*
    from identities
    inner join namespaces
        on namespaces.namespace = identities.namespace
    where not namespaces.is_unique_per_person
),

unique_identities as (
    select identities.*
    from identities
    inner join namespaces
        on namespaces.namespace = identities.namespace
    where namespaces.is_unique_per_person
),

conflicts as (
    select
        shared_identities.namespace,
        shared_identities.identity_value,
        unique_identities.namespace as conflicting_namespace,
        count(distinct unique_identities.identity_value) as conflicting_value_count,
        min(unique_identities.identity_value) as first_conflicting_value,
        max(unique_identities.identity_value) as last_conflicting_value
    from shared_identities
    inner join unique_identities
        on unique_identities.record_id = shared_identities.record_id
    group by shared_identities.namespace, shared_identities.identity_value, unique_identities.namespace
    having count(distinct unique_identities.identity_value) > 1
),

final as (
    select
        namespace,
        identity_value,
        sum(conflicting_value_count) as conflicting_value_count,
        string_agg(
            conflicting_namespace || ': ' || cast(conflicting_value_count as varchar)
            || ' values (' || first_conflicting_value || ' .. ' || last_conflicting_value || ')',
            '; '
        ) as evidence
    from conflicts
    group by namespace, identity_value
)

select * from final
