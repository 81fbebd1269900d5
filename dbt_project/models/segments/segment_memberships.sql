-- Current members of every audience, one row per (audience, profile).
{%- set audiences = ['seg_high_value', 'seg_lapsed_buyers', 'seg_lookalike_high_value', 'seg_likely_buyers'] %}

with

{% for audience in audiences %}
{{ audience }} as (
    select '{{ audience[4:] }}' as segment_name, profile_id from {{ ref(audience) }}
),
{% endfor %}

final as (
    {%- for audience in audiences %}
    select * from {{ audience }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
)

select * from final
