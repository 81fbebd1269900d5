-- Hub detection: a shared identifier (email, phone, cookie, ...) seen on records with more than one
-- value of a namespace a person has at most one of (crm id, shop account, loyalty id) links
-- different people, so it is excluded from linking. So does one seen on person records whose first
-- names clearly differ (a family email on a CRM contact and on a relative's loyalty card: not a typo,
-- nickname, initial or swapped order). Evidence lists the conflicting values or names.
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

records as (
    select * from {{ ref('xdm_profile_records') }}
),

name_variants as (
    select * from {{ ref('identity_name_variants') }}
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

named_records as (
    select distinct
        shared_identities.namespace,
        shared_identities.identity_value,
        coalesce(name_variants.canonical, {{ normalize_name('records.person_name_first_name') }}) as first_name,
        {{ normalize_name('records.person_name_last_name') }} as last_name
    from shared_identities
    inner join records
        on records.record_id = shared_identities.record_id
    left join name_variants
        on name_variants.variant = {{ normalize_name('records.person_name_first_name') }}
    where records.person_name_first_name is not null
),

name_conflicts as (
    select
        first_record.namespace,
        first_record.identity_value,
        'first names' as conflicting_namespace,
        count(distinct second_record.first_name) + 1 as conflicting_value_count,
        min(first_record.first_name) as first_conflicting_value,
        max(second_record.first_name) as last_conflicting_value
    from named_records as first_record
    inner join named_records as second_record
        on second_record.namespace = first_record.namespace
        and second_record.identity_value = first_record.identity_value
        and second_record.first_name > first_record.first_name
    where {{ name_similarity('first_record.first_name', 'second_record.first_name') }} < 0.8
        and left(first_record.first_name, 1) <> left(second_record.first_name, 1)
        and first_record.first_name is distinct from second_record.last_name
        and second_record.first_name is distinct from first_record.last_name
    group by first_record.namespace, first_record.identity_value
),

all_conflicts as (
    select * from conflicts
    union all
    select * from name_conflicts
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
            order by conflicting_namespace
        ) as evidence
    from all_conflicts
    group by namespace, identity_value
)

select * from final
