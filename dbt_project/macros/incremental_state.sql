{#- State an incremental model keeps beside its table (issue 20): what its last build read, so the next
    build takes only what changed since. One row per model in <target schema>.incremental_state (outside
    the labelled and published schemas: it holds no person data), written by the model's post-hooks in the
    transaction of its build, so the table and its state commit together. -#}

{% macro incremental_state_relation() -%}
    {{- return(api.Relation.create(database=this.database, schema=target.schema, identifier='incremental_state')) -}}
{%- endmacro %}


{#- The state the model's last build stored, {high_water_mark, inputs_fingerprint} as text, or none when
    there is none (first build, a warehouse from before the state existed, or not executing). -#}
{% macro incremental_state(model_name) -%}
    {%- if not execute -%}{{ return(none) }}{%- endif -%}
    {%- set relation = load_relation(incremental_state_relation()) -%}
    {%- if relation is none -%}{{ return(none) }}{%- endif -%}
    {%- set found = run_query(
        "select cast(high_water_mark as " ~ dbt.type_string() ~ "), inputs_fingerprint from " ~ relation
        ~ " where model_name = '" ~ model_name ~ "'") -%}
    {%- if found.rows | length == 0 -%}{{ return(none) }}{%- endif -%}
    {{- return({'high_water_mark': found.rows[0][0], 'inputs_fingerprint': found.rows[0][1]}) -}}
{%- endmacro %}


{#- The value of a one-row, one-column query now (at compile time), as text; none when not executing. -#}
{% macro query_value(sql) -%}
    {%- if not execute -%}{{ return(none) }}{%- endif -%}
    {%- set found = run_query(sql) -%}
    {{- return(found.rows[0][0] if found.rows | length else none) -}}
{%- endmacro %}


{#- Post-hooks storing the model's state: the high-water mark (a query's value, e.g. max(loaded_at) of
    what it read) and the fingerprint of its other inputs (a query's value). -#}
{% macro store_incremental_state(model_name, high_water_mark_sql, inputs_fingerprint_sql) -%}
    {%- set relation = incremental_state_relation() -%}
    create table if not exists {{ relation }} (
        model_name {{ dbt.type_string() }},
        high_water_mark {{ dbt.type_timestamp() }},
        inputs_fingerprint {{ dbt.type_string() }}
    );
    delete from {{ relation }} where model_name = '{{ model_name }}';
    insert into {{ relation }} (model_name, high_water_mark, inputs_fingerprint)
    select '{{ model_name }}', ({{ high_water_mark_sql }}), ({{ inputs_fingerprint_sql }})
{%- endmacro %}


{#- A text fingerprint of a query's rows (order-independent), e.g. a seed's, to tell whether they changed. -#}
{% macro rows_fingerprint(sql, columns) -%}
    {{- return(adapter.dispatch('rows_fingerprint', 'cdp')(sql, columns)) -}}
{%- endmacro %}

{% macro default__rows_fingerprint(sql, columns) -%}
    {%- set row_text -%}
        {%- for column in columns -%}coalesce(cast({{ column }} as {{ dbt.type_string() }}), '~'){% if not loop.last %} || '|' || {% endif %}{%- endfor -%}
    {%- endset -%}
    select md5({{ dbt.listagg(row_text, "','", 'order by ' ~ row_text) }}) from ({{ sql }}) as fingerprinted
{%- endmacro %}

{% macro duckdb__rows_fingerprint(sql, columns) -%}
    {#- One hash per row, combined without a sort (bit_xor; a count beside it, as equal rows cancel). -#}
    select cast(count(*) as varchar) || ':' || cast(coalesce(bit_xor(hash({{ columns | join(', ') }})), 0) as varchar)
    from ({{ sql }}) as fingerprinted
{%- endmacro %}


{#- Delete the rows of `relation` whose `key` is not among the keys `kept_sql` selects (as `kept_key`):
    what an incremental build's delete+insert cannot remove (records erased, rejected or no longer
    resolved to a profile). -#}
{% macro delete_rows_not_in(relation, key, kept_sql, kept_key) -%}
    {{- return(adapter.dispatch('delete_rows_not_in', 'cdp')(relation, key, kept_sql, kept_key)) -}}
{%- endmacro %}

{% macro default__delete_rows_not_in(relation, key, kept_sql, kept_key) -%}
    delete from {{ relation }}
    where {{ key }} not in (select kept.{{ kept_key }} from ({{ kept_sql }}) as kept where kept.{{ kept_key }} is not null)
{%- endmacro %}

{% macro duckdb__delete_rows_not_in(relation, key, kept_sql, kept_key) -%}
    delete from {{ relation }}
    using (
        select built.{{ key }} as vanished_key
        from {{ relation }} as built
        anti join ({{ kept_sql }}) as kept
            on kept.{{ kept_key }} = built.{{ key }}
    ) as vanished
    where {{ relation }}.{{ key }} = vanished.vanished_key
{%- endmacro %}


{#- profile_events: the event records resolved to a profile (the events it holds after a build), and the
    fingerprint of its inputs besides the events (incremental builds take every event again when it changes). -#}
{% macro profile_events_resolved_record_ids() -%}
    select record_profiles.record_id
    from {{ ref('record_profiles') }} as record_profiles
    where record_profiles.record_id in (select events.record_id from {{ ref('xdm_experience_events') }} as events)
{%- endmacro %}

{% macro profile_events_inputs_fingerprint() -%}
    {{- exchange_rates_fingerprint() -}}
{%- endmacro %}
