-- The golden record: one row per profile. Each group of attributes comes from the one source record
-- the merge policy picked (profile_merge_winners; rules in macros/merge_policy.sql).
{%- set policy = merge_policy() %}

with

graph as (
    select * from {{ ref('identity_graph') }}
),

record_profiles as (
    select * from {{ ref('record_profiles') }}
),

profile_records as (
    select * from {{ ref('xdm_profile_records') }}
),

winners as (
    select * from {{ ref('profile_merge_winners') }}
),

namespaces as (
    select * from {{ ref('identity_namespaces') }}
),

profile_ids as (
    select
        graph.profile_id,
        -- Known: identified by something a person gave us, not only a cookie or device.
        bool_or(namespaces.is_person_level) as is_known,
        count(*) as identity_count
    from graph
    inner join namespaces
        on namespaces.namespace = graph.namespace
    group by graph.profile_id
),

record_counts as (
    select
        record_profiles.profile_id,
        count(*) as profile_record_count,
        max(profile_records.record_updated_at) as last_updated_at
    from profile_records
    inner join record_profiles
        on record_profiles.record_id = profile_records.record_id
    group by record_profiles.profile_id
),

{% for group in policy.groups %}
{{ group.name }} as (
    select
        winners.profile_id,
        {%- for attribute, column in group.fields.items() %}
        profile_records.{{ column }}{{ (' as ' ~ attribute) if attribute != column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from winners
    inner join profile_records
        on profile_records.record_id = winners.record_id
    where winners.attribute_group = '{{ group.name }}'
),
{% endfor %}

final as (
    select
        profile_ids.profile_id,
        profile_ids.is_known,
        {%- for group in policy.groups %}
        {%- for attribute in group.fields %}
        {{ group.name }}.{{ attribute }},
        {%- endfor %}
        {%- endfor %}
        profile_ids.identity_count,
        coalesce(record_counts.profile_record_count, 0) as profile_record_count,
        record_counts.last_updated_at
    from profile_ids
    left join record_counts
        on record_counts.profile_id = profile_ids.profile_id
    {%- for group in policy.groups %}
    left join {{ group.name }}
        on {{ group.name }}.profile_id = profile_ids.profile_id
    {%- endfor %}
)

select * from final
