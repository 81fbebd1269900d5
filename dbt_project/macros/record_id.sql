{#- Global id of a source record: "<source>__<table>:<primary key>", unique across all sources. -#}
{% macro record_id(source_table, key_column) -%}
    '{{ source_table }}:' || cast({{ key_column }} as varchar)
{%- endmacro %}
