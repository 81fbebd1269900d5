{#- Fail an audience model at build time when a column its definition names is missing from the
    public table it reads (the whitelist is the warehouse catalog, so new traits need no compiler change). -#}
{% macro audience_require_columns(definition_file, checks) -%}
    {%- if execute -%}
        {%- set columns_by_table = {} -%}
        {%- for table, column, path in checks -%}
            {%- if table not in columns_by_table -%}
                {%- set names = adapter.get_columns_in_relation(ref(table)) | map(attribute='name') | map('lower') | list -%}
                {%- do columns_by_table.update({table: names}) -%}
            {%- endif -%}
            {#- An empty list: the table is not built yet (a first build, a lint); its contract checks it then. -#}
            {%- if columns_by_table[table] and column not in columns_by_table[table] -%}
                {{ exceptions.raise_compiler_error(
                    definition_file ~ ": " ~ path ~ ": '" ~ column ~ "' is not a column of " ~ table
                    ~ "; allowed: " ~ columns_by_table[table] | join(', ')
                    ~ ". Fix the definition and run `cdp segments compile`.") }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#- A stable bucket 0..99 of a key (splits and holdouts): the first 32 bits of md5(key ':' salt), mod 100.
    The same on every engine and every run, so a profile stays in its split. -#}
{% macro audience_split_bucket(key, salt) -%}
    {{ return(adapter.dispatch('audience_split_bucket', 'cdp')(key, salt)) }}
{%- endmacro %}

{% macro default__audience_split_bucket(key, salt) -%}
    cast(conv(substr(md5({{ key }} || ':' || {{ salt }}), 1, 8), 16, 10) as bigint) % 100
{%- endmacro %}

{% macro duckdb__audience_split_bucket(key, salt) -%}
    cast(('0x' || substr(md5({{ key }} || ':' || {{ salt }}), 1, 8)) as bigint) % 100
{%- endmacro %}
