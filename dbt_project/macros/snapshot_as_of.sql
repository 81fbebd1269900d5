{#- The rows of a snapshot (profiles_snapshot, profile_traits_snapshot) as they stood at instant `at` (a SQL
    timestamp expression), without the snapshot's bookkeeping columns: use it in place of ref('profiles')
    or ref('profile_traits') to recompute a query or an audience as of a past date. -#}
{% macro snapshot_as_of(snapshot_name, at) -%}
    {%- set relation = ref(snapshot_name) -%}
    {%- set columns = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(relation) if not column.name.startswith('dbt_') -%}
            {%- do columns.append(adapter.quote(column.name)) -%}
        {%- endfor -%}
    {%- endif %}
    (
        select {{ columns | join(', ') if columns else '*' }}
        from {{ relation }}
        where dbt_valid_from <= {{ at }}
            and (dbt_valid_to is null or dbt_valid_to > {{ at }})
    )
{%- endmacro %}
