{#- The current wall-clock time in UTC, as a timestamp without time zone (what the loader writes). -#}
{% macro utc_now() -%}
    {{ return(adapter.dispatch('utc_now', 'cdp')()) }}
{%- endmacro %}

{% macro default__utc_now() -%}
    current_timestamp
{%- endmacro %}

{% macro duckdb__utc_now() -%}
    cast(timezone('UTC', now()) as timestamp)
{%- endmacro %}

{% macro spark__utc_now() -%}
    to_utc_timestamp(current_timestamp(), current_timezone())
{%- endmacro %}
