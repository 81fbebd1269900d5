{#- Identifier normalization. Engine-specific SQL sits behind adapter.dispatch so the project
    can run on another engine by adding that engine's version. -#}

{% macro normalize_email(column) -%}
    {{ return(adapter.dispatch('normalize_email', 'cdp')(column)) }}
{%- endmacro %}

{% macro default__normalize_email(column) -%}
    case
        when regexp_like(lower(trim({{ column }})), '^[a-z0-9._%+''-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$')
            then lower(trim({{ column }}))
    end
{%- endmacro %}

{% macro duckdb__normalize_email(column) -%}
    case
        when regexp_full_match(lower(trim({{ column }})), '[a-z0-9._%+''-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}')
            then lower(trim({{ column }}))
    end
{%- endmacro %}


{#- Phone to E.164. International input ("+..." or "00...") keeps its country code; national input
    gets `calling_code` and loses its trunk prefix. The caller joins seed country_calling_codes on the
    record's country (or var default_phone_country) to supply both. Anything that does not end up
    with 8..15 digits is null. -#}
{% macro normalize_phone(column, calling_code, trunk_prefix) -%}
    {{ return(adapter.dispatch('normalize_phone', 'cdp')(column, calling_code, trunk_prefix)) }}
{%- endmacro %}

{% macro default__normalize_phone(column, calling_code, trunk_prefix) -%}
    {%- set digits = "regexp_replace(" ~ column ~ ", '[^0-9]', '', 'g')" -%}
    {%- set international_digits -%}
        case
            when trim({{ column }}) like '+%' then {{ digits }}
            when {{ digits }} like '00%' then substr({{ digits }}, 3)
            when {{ calling_code }} = '1' and length({{ digits }}) = 11 and {{ digits }} like '1%' then {{ digits }}
            when {{ trunk_prefix }} is not null and {{ digits }} like {{ trunk_prefix }} || '%'
                then {{ calling_code }} || substr({{ digits }}, length({{ trunk_prefix }}) + 1)
            else {{ calling_code }} || {{ digits }}
        end
    {%- endset -%}
    case when length({{ international_digits }}) between 8 and 15 then '+' || {{ international_digits }} end
{%- endmacro %}


{#- Name for matching: lower case, accents folded, inner whitespace collapsed. -#}
{% macro normalize_name(column) -%}
    {{ return(adapter.dispatch('normalize_name', 'cdp')(column)) }}
{%- endmacro %}

{% macro default__normalize_name(column) -%}
    nullif(regexp_replace(lower(trim({{ column }})), '\s+', ' ', 'g'), '')
{%- endmacro %}

{% macro duckdb__normalize_name(column) -%}
    nullif(regexp_replace(lower(strip_accents(trim({{ column }}))), '\s+', ' ', 'g'), '')
{%- endmacro %}


{#- SHA-256 hex of a normalized value (what ad platforms expect for hashed emails and phones). -#}
{% macro sha256_hex(column) -%}
    {{ return(adapter.dispatch('sha256_hex', 'cdp')(column)) }}
{%- endmacro %}

{% macro default__sha256_hex(column) -%}
    lower(to_hex(sha256({{ column }})))
{%- endmacro %}

{% macro duckdb__sha256_hex(column) -%}
    sha256({{ column }})
{%- endmacro %}


{#- True when `value` contains a match of the regular expression `pattern`. -#}
{% macro regex_search(value, pattern) -%}
    {{ return(adapter.dispatch('regex_search', 'cdp')(value, pattern)) }}
{%- endmacro %}

{% macro default__regex_search(value, pattern) -%}
    regexp_like({{ value }}, {{ pattern }})
{%- endmacro %}

{% macro duckdb__regex_search(value, pattern) -%}
    regexp_matches({{ value }}, {{ pattern }})
{%- endmacro %}


{#- Aggregate: the value of `column` on the row with the greatest `order_by`, ignoring nulls
    (so a null never overwrites a known value). -#}
{% macro latest_non_null(column, order_by) -%}
    {{ return(adapter.dispatch('latest_non_null', 'cdp')(column, order_by)) }}
{%- endmacro %}

{% macro default__latest_non_null(column, order_by) -%}
    max_by({{ column }}, {{ order_by }}) filter (where {{ column }} is not null)
{%- endmacro %}

{% macro duckdb__latest_non_null(column, order_by) -%}
    arg_max({{ column }}, {{ order_by }}) filter (where {{ column }} is not null)
{%- endmacro %}


{#- Similarity of two names, 0..1 (1: equal). DuckDB: Jaro-Winkler; elsewhere one minus the edit
    distance over the longer length. -#}
{% macro name_similarity(left, right) -%}
    {{ return(adapter.dispatch('name_similarity', 'cdp')(left, right)) }}
{%- endmacro %}

{% macro default__name_similarity(left, right) -%}
    1.0 - levenshtein({{ left }}, {{ right }}) / greatest(length({{ left }}), length({{ right }}), 1)
{%- endmacro %}

{% macro duckdb__name_similarity(left, right) -%}
    jaro_winkler_similarity({{ left }}, {{ right }})
{%- endmacro %}
