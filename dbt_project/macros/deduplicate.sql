{#- Keep one row per `partition_by`: the first by `order_by` (same contract as dbt_utils.deduplicate,
    which cannot be installed here). Portable: a window function, no QUALIFY. -#}
{% macro deduplicate(relation, partition_by, order_by) -%}
    select *
    from (
        select
            *,
            row_number() over (partition by {{ partition_by }} order by {{ order_by }}) as dedupe_rank
        from {{ relation }}
    ) as ranked
    where dedupe_rank = 1
{%- endmacro %}
