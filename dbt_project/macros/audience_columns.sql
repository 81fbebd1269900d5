{#- The contact columns every audience model exposes (what syncs map from), taken from `profiles`. -#}
{% macro audience_columns(profiles_relation='profiles') -%}
        {{ profiles_relation }}.profile_id,
        {{ profiles_relation }}.email,
        {{ profiles_relation }}.phone,
        {{ profiles_relation }}.first_name,
        {{ profiles_relation }}.last_name
{%- endmacro %}
