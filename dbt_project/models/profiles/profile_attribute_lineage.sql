-- Where every attribute of the golden record came from: per profile and attribute, the winning source
-- record, its update time and the merge rule that picked it (what `cdp profile show` prints).
{%- set policy = merge_policy() %}

with

winners as (
    select * from {{ ref('profile_merge_winners') }}
),

profile_records as (
    select * from {{ ref('xdm_profile_records') }}
),

final as (
    {%- for group in policy.groups %}
    {%- set outer_loop = loop %}
    {%- for attribute, column in group.fields.items() %}
    select
        winners.profile_id,
        '{{ attribute }}' as attribute,
        cast(profile_records.{{ column }} as varchar) as attribute_value,
        winners.attribute_group,
        winners.merge_rule,
        winners.source_table,
        winners.record_id,
        winners.record_updated_at
    from winners
    inner join profile_records
        on profile_records.record_id = winners.record_id
    where winners.attribute_group = '{{ group.name }}'
        and profile_records.{{ column }} is not null
    {% if not (outer_loop.last and loop.last) %}union all{% endif %}
    {%- endfor %}
    {%- endfor %}
)

select * from final
