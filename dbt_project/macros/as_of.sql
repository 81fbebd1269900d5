{#- The instant the pipeline measures time windows from: the end of day CDP_AS_OF (YYYY-MM-DD) if
    set, else the end of today (UTC). Day granularity keeps reruns on one day identical. -#}
{% macro as_of_timestamp() -%}
    {%- set as_of_date = env_var('CDP_AS_OF', '') -%}
    {%- if as_of_date -%}
        {{ dbt.dateadd('day', 1, "cast('" ~ as_of_date ~ "' as timestamp)") }}
    {%- else -%}
        {{ dbt.dateadd('day', 1, 'cast(current_date as timestamp)') }}
    {%- endif -%}
{%- endmacro %}
