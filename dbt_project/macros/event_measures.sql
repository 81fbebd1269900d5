{#- Numeric measures of an event travel as one JSON object text (xdm_experience_events.event_measures,
    profile_events.event_measures), so a source adding a measure changes no table's columns. -#}

{#- A JSON object text of (name, numeric SQL) pairs, keys in the given order; a null value is JSON null. -#}
{% macro json_object_text(pairs) -%}
    {{ return(adapter.dispatch('json_object_text', 'cdp')(pairs)) }}
{%- endmacro %}

{% macro default__json_object_text(pairs) -%}
    '{' ||
    {%- for name, value in pairs %}
    '{{ '"' ~ name ~ '":' }}' || coalesce(cast({{ value }} as varchar), 'null'){{ " || ',' ||" if not loop.last }}
    {%- endfor %}
    || '}'
{%- endmacro %}

{% macro duckdb__json_object_text(pairs) -%}
    cast(json_object(
        {%- for name, value in pairs %}'{{ name }}', {{ value }}{{ ', ' if not loop.last }}{% endfor -%}
    ) as varchar)
{%- endmacro %}

{% macro spark__json_object_text(pairs) -%}
    to_json(named_struct(
        {%- for name, value in pairs %}'{{ name }}', {{ value }}{{ ', ' if not loop.last }}{% endfor -%}
    ))
{%- endmacro %}


{#- The number under `name` of a JSON object text column, as double (null when absent or not a number). -#}
{% macro json_number(column, name) -%}
    {{ return(adapter.dispatch('json_number', 'cdp')(column, name)) }}
{%- endmacro %}

{% macro default__json_number(column, name) -%}
    cast(json_value({{ column }}, '$.{{ name }}') as double precision)
{%- endmacro %}

{% macro duckdb__json_number(column, name) -%}
    try_cast(json_extract_string({{ column }}, '$.{{ name }}') as double)
{%- endmacro %}

{% macro spark__json_number(column, name) -%}
    cast(get_json_object({{ column }}, '$.{{ name }}') as double)
{%- endmacro %}
