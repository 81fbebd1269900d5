-- The merge policy applied: for every profile and attribute group, the one source record whose values
-- the golden record takes (macros/merge_policy.sql). profiles and profile_attribute_lineage read it.
{%- set policy = merge_policy() %}
{%- set all_fields = [] %}
{%- for group in policy.groups %}{% for column in group.fields.values() %}{% do all_fields.append(column) %}{% endfor %}{% endfor %}

with

record_profiles as (
    select * from {{ ref('record_profiles') }}
),

profile_records as (
    select * from {{ ref('xdm_profile_records') }}
),

attributed_records as (
    select
        record_profiles.profile_id,
        profile_records.*
        {%- if policy.groups | selectattr('rule', 'defined') | selectattr('rule', 'equalto', 'most_filled') | list %},
        -- For rule most_filled: how many profile attributes the record knows.
        {%- for column in all_fields | unique %}
        (case when profile_records.{{ column }} is null then 0 else 1 end){{ ' +' if not loop.last }}
        {%- endfor %} as filled_attributes
        {%- endif %}
    from profile_records
    inner join record_profiles
        on record_profiles.record_id = profile_records.record_id
),

{% for group in policy.groups %}
{%- set fields = group.fields.values() | list %}
winners__{{ group.name }} as (
    select
        profile_id,
        '{{ group.name }}' as attribute_group,
        record_id,
        source_table,
        record_updated_at,
        '{{ group.get('rule', 'most_recent') }}' as merge_rule
    from (
        select
            candidates.*,
            row_number() over (partition by profile_id order by {{ merge_order(group) }}) as merge_rank
        from (
            select
                attributed_records.*
                {%- if group.get('rule') == 'most_frequent' %},
                -- How many of the profile's records hold the same values.
                count(*) over (partition by profile_id, {{ fields | join(', ') }}) as agreeing_records
                {%- endif %}
            from attributed_records
            {%- if group.get('nulls', 'ignore') == 'ignore' %}
            where {{ fields | join(' is not null or ') }} is not null
            {%- endif %}
        ) as candidates
    ) as ranked
    where merge_rank = 1
),
{% endfor %}

final as (
    {%- for group in policy.groups %}
    select * from winners__{{ group.name }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
)

select * from final
