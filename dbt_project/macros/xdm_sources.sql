{#- The XDM models, generated from the `cdp` meta of the staging models (docs/sources.md, "Declaring a
    source"): xdm_identities from cdp.identifiers, xdm_profile_records from cdp.profile,
    xdm_experience_events from cdp.event. Adding a staging model with that meta extends XDM with no other
    edit. The XDM catalogue (the attribute and field columns, with their types) is the YAML of
    xdm_profile_records and xdm_experience_events: what a source does not fill is a typed null.
    cdp/sources.py checks the same declarations with fuller messages before dbt runs. -#}


{% macro xdm_fail(node, problem) -%}
    {{ exceptions.raise_compiler_error(
        "staging model " ~ node.name ~ " (" ~ node.original_file_path ~ ", meta cdp): " ~ problem
        ~ " See docs/sources.md, \"Declaring a source\".") }}
{%- endmacro %}


{#- The contract a staging model reads: cdp.contract, else its name less `stg_`. -#}
{% macro xdm_contract(node) -%}
    {%- set declaration = node.config.meta.cdp -%}
    {{- return(declaration.get('contract') or modules.re.sub('^stg_', '', node.name)) -}}
{%- endmacro %}


{#- The staging nodes that declare `role` (identifiers | profile | event), by name. At parse time
    (no graph yet) it refs the models macros/xdm_source_models.sql lists, so dbt records the
    dependencies; at run time it reads the graph and checks that list is current. -#}
{% macro xdm_source_nodes(xdm_model, role) -%}
    {%- set listed = xdm_source_models(xdm_model) -%}
    {%- if not execute -%}
        {%- for name in listed -%}{%- do ref(name) -%}{%- endfor -%}
        {{- return([]) -}}
    {%- endif -%}
    {%- set nodes = [] -%}
    {%- for node in graph.nodes.values() | sort(attribute='name')
            if node.resource_type == 'model' and (node.config.meta or {}).get('cdp', {}).get(role) -%}
        {%- do nodes.append(node) -%}
    {%- endfor -%}
    {%- set declared = nodes | map(attribute='name') | list -%}
    {%- if declared != listed -%}
        {{ exceptions.raise_compiler_error(
            xdm_model ~ ": the staging models declaring cdp." ~ role ~ " are [" ~ declared | join(', ')
            ~ "] but macros/xdm_source_models.sql lists [" ~ listed | join(', ')
            ~ "]. That file is generated: run `cdp sources check` (every cdp command refreshes it), then build again.") }}
    {%- endif -%}
    {{- return(nodes) -}}
{%- endmacro %}


{#- The declared columns (name -> data_type) of an XDM model's YAML, less its envelope. -#}
{% macro xdm_catalogue(xdm_model, envelope) -%}
    {%- set node = graph.nodes.get('model.' ~ project_name ~ '.' ~ xdm_model) -%}
    {%- set columns = {} -%}
    {%- for name, column in node.columns.items() if name not in envelope -%}
        {%- if not column.data_type -%}
            {{ exceptions.raise_compiler_error(xdm_model ~ "." ~ name ~ " (models/xdm/_xdm__models.yml) has no data_type") }}
        {%- endif -%}
        {%- do columns.update({name: column.data_type}) -%}
    {%- endfor -%}
    {{- return(columns) -}}
{%- endmacro %}


{#- Fails unless every column the declaration names exists in the built staging relation (not yet built,
    as when compiling a fresh project: nothing to check). -#}
{% macro xdm_check_columns(node, named) -%}
    {%- set relation = load_relation(ref(node.name)) -%}
    {%- if relation is none -%}{{ return('') }}{%- endif -%}
    {%- set present = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
    {%- for column, where in named.items() if column | lower not in present -%}
        {{ xdm_fail(node, where ~ " names column " ~ column ~ ", which " ~ relation ~ " does not have; its columns: "
                          ~ present | join(', ')) }}
    {%- endfor -%}
{%- endmacro %}


{#- The loaded_at of a staging model's rows: its `loaded_at` column (the raw _loaded_at of the version it
    keeps), else the build's start, so a source without one is taken whole by every build (correct, not
    incremental; docs/sources.md). -#}
{% macro xdm_loaded_at(node) -%}
    {%- set relation = load_relation(ref(node.name)) if execute else none -%}
    {%- if relation is none or 'loaded_at' in (adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list) -%}
        {{- return('cast(loaded_at as timestamp)') -}}
    {%- endif -%}
    {{- return("cast('" ~ run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f') ~ "' as timestamp)") -}}
{%- endmacro %}


{#- Whether this build adds to the table rather than rebuilding it: an incremental build of a table that
    already has every column the model now selects. A changed catalogue (an attribute or a source field
    added, on_schema_change: sync_all_columns) takes every row again, so no record keeps a null where a
    full refresh would fill the new column. -#}
{% macro xdm_adds_to_table(columns) -%}
    {%- if not is_incremental() -%}{{ return(false) }}{%- endif -%}
    {%- set present = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {{- return(columns | map('lower') | reject('in', present) | list | length == 0) -}}
{%- endmacro %}


{#- The condition on a staging model's rows that keeps those loaded since this XDM table last took rows
    of the same source (its high-water mark: max(loaded_at) of that source_table in the table itself),
    when `adds` (xdm_adds_to_table); 'true' otherwise. With `versions`, every version of a record with a
    version loaded since (xdm_identities keeps the identifiers of all of them). -#}
{% macro xdm_new_rows(node, contract, key, adds, versions=false) -%}
    {%- set loaded_at = xdm_loaded_at(node) -%}
    {%- if not adds or not loaded_at.startswith('cast(loaded_at') -%}
        {{- return('true') -}}
    {%- endif -%}
    {%- set high_water_mark -%}
        (select coalesce(max(loaded_at), cast('1900-01-01 00:00:00' as timestamp)) from {{ this }} where source_table = '{{ contract }}')
    {%- endset -%}
    {%- if versions -%}
        {{- return(key ~ ' in (select ' ~ key ~ ' from ' ~ ref(node.name) ~ ' where loaded_at > ' ~ high_water_mark ~ ')') -}}
    {%- endif -%}
    {{- return('loaded_at > ' ~ high_water_mark) -}}
{%- endmacro %}


{% macro xdm_column_name(node, value, where) -%}
    {%- if value is not string or not modules.re.match('^[a-z_][a-z0-9_]*$', value) -%}
        {{ xdm_fail(node, where ~ " must name a staging column (lower-case name); found " ~ value) }}
    {%- endif -%}
    {{- return(value) -}}
{%- endmacro %}


{% macro xdm_literal(value) -%}
    {%- if value is none -%}null
    {%- elif value is boolean -%}{{ 'true' if value else 'false' }}
    {%- elif value is number -%}{{ value }}
    {%- else -%}'{{ (value | string).replace("'", "''") }}'
    {%- endif -%}
{%- endmacro %}


{#- The SQL of one declared value: a string is a literal when `literal_by_default` (event type, channel),
    else a column (fields); {value: v} is a literal, {column: c} a column, {column, values, default} a
    column whose values are mapped (unmapped values become `default`, or pass through without one). -#}
{% macro xdm_value_sql(node, spec, where, literal_by_default, named) -%}
    {%- if spec is mapping and 'value' in spec -%}
        {{- xdm_literal(spec.value) -}}
    {%- elif spec is mapping -%}
        {%- set column = xdm_column_name(node, spec.get('column'), where ~ '.column') -%}
        {%- do named.update({column: where}) -%}
        {%- if spec.get('values') -%}
            case {{ column }}
            {%- for source_value, xdm_value in spec['values'].items() %}
                when {{ xdm_literal(source_value) }} then {{ xdm_literal(xdm_value) }}
            {%- endfor %}
                else {{ xdm_literal(spec.default) if spec.get('default') is not none else column }}
            end
        {%- else -%}
            {{- column -}}
        {%- endif -%}
    {%- elif spec is string and literal_by_default -%}
        {{- xdm_literal(spec) -}}
    {%- elif spec is string -%}
        {%- set column = xdm_column_name(node, spec, where) -%}
        {%- do named.update({column: where}) -%}
        {{- column -}}
    {%- else -%}
        {{ xdm_fail(node, where ~ " must be a literal, a column, {value: ...} or {column, values, default}; found " ~ spec) }}
    {%- endif -%}
{%- endmacro %}


{#- xdm_identities: one row per (record, namespace, identifier value); `versions: true` keeps the
    identifiers of every version of a record once, seen_at the latest version that carried it. -#}
{% macro xdm_identities_sql() -%}
{%- set nodes = xdm_source_nodes('xdm_identities', 'identifiers') %}
{%- set adds = xdm_adds_to_table(['record_id', 'source_table', 'namespace', 'identity_value', 'authenticated_state', 'is_primary', 'seen_at', 'loaded_at']) if execute else false %}
with
{% for node in nodes %}
{%- set cdp = node.config.meta.cdp %}
{%- set contract = xdm_contract(node) %}
{%- set key = xdm_column_name(node, cdp.get('record_key'), 'record_key') %}
{%- set seen_at = xdm_column_name(node, cdp.get('updated_at'), 'updated_at') %}
{%- set named = {key: 'record_key', seen_at: 'updated_at'} %}
{%- for identifier in cdp.identifiers %}{% do named.update({identifier.column: 'identifiers (' ~ identifier.namespace ~ ')'}) %}{% endfor %}
{%- do xdm_check_columns(node, named) %}
{{ node.name }} as (
    {%- for identifier in cdp.identifiers %}
    select
        {{ record_id(contract, key) }} as record_id,
        '{{ contract }}' as source_table,
        '{{ identifier.namespace }}' as namespace,
        cast({{ xdm_column_name(node, identifier.column, 'identifiers.column') }} as varchar) as identity_value,
        '{{ identifier.get('authenticated_state', 'ambiguous') }}' as authenticated_state,
        {{ 'true' if identifier.get('primary') else 'false' }} as is_primary,
        {{ 'max(' ~ seen_at ~ ')' if cdp.get('versions') else seen_at }} as seen_at,
        {{ 'max(' ~ xdm_loaded_at(node) ~ ')' if cdp.get('versions') else xdm_loaded_at(node) }} as loaded_at
    from {{ ref(node.name) }}
    where {{ identifier.column }} is not null
        and {{ xdm_new_rows(node, contract, key, adds, cdp.get('versions')) }}
    {%- if cdp.get('versions') %}
    group by 1, 2, 3, 4, 5, 6
    {%- endif %}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),
{% endfor %}
final as (
    {%- for node in nodes %}
    select * from {{ node.name }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
)

select * from final
{%- endmacro %}


{#- xdm_profile_records: every attribute of the catalogue for every record, cast to its type. -#}
{% macro xdm_profile_records_sql() -%}
{%- set nodes = xdm_source_nodes('xdm_profile_records', 'profile') %}
{%- set attributes = xdm_catalogue('xdm_profile_records', ['record_id', 'source_table', 'record_updated_at', 'loaded_at']) if execute else {} %}
{%- set adds = xdm_adds_to_table(['record_id', 'source_table', 'record_updated_at', 'loaded_at'] + attributes.keys() | list) if execute else false %}
with
{% for node in nodes %}
{%- set cdp = node.config.meta.cdp %}
{%- set contract = xdm_contract(node) %}
{%- set key = xdm_column_name(node, cdp.get('record_key'), 'record_key') %}
{%- set updated_at = xdm_column_name(node, cdp.get('updated_at'), 'updated_at') %}
{%- set named = {key: 'record_key', updated_at: 'updated_at'} %}
{%- for attribute, column in cdp.profile.items() %}
    {%- if attribute not in attributes -%}
        {{ xdm_fail(node, "profile." ~ attribute ~ " is not an XDM profile attribute; allowed: " ~ attributes.keys() | join(', ')
                          ~ " (the columns of xdm_profile_records in models/xdm/_xdm__models.yml)") }}
    {%- endif -%}
    {%- do named.update({xdm_column_name(node, column, 'profile.' ~ attribute): 'profile.' ~ attribute}) -%}
{%- endfor %}
{%- do xdm_check_columns(node, named) %}
{{ node.name }} as (
    select
        {{ record_id(contract, key) }} as record_id,
        '{{ contract }}' as source_table,
        {%- for attribute, data_type in attributes.items() %}
        cast({{ cdp.profile.get(attribute) or 'null' }} as {{ data_type }}) as {{ attribute }},
        {%- endfor %}
        cast({{ updated_at }} as timestamp) as record_updated_at,
        {{ xdm_loaded_at(node) }} as loaded_at
    from {{ ref(node.name) }}
    where {{ xdm_new_rows(node, contract, key, adds) }}
),
{% endfor %}
final as (
    {%- for node in nodes %}
    select * from {{ node.name }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
)

select * from final
{%- endmacro %}


{#- xdm_experience_events: one event per staging row, the catalogue's fields cast to their types and
    the numeric measures as one JSON text column. -#}
{% macro xdm_experience_events_sql() -%}
{%- set nodes = xdm_source_nodes('xdm_experience_events', 'event') %}
{%- set fields = xdm_catalogue('xdm_experience_events', ['record_id', 'source_table', 'event_type', 'occurred_at', 'channel', 'event_measures', 'loaded_at']) if execute else {} %}
{%- set adds = xdm_adds_to_table(['record_id', 'source_table', 'event_type', 'occurred_at', 'channel', 'event_measures', 'loaded_at'] + fields.keys() | list) if execute else false %}
with
{% for node in nodes %}
{%- set cdp = node.config.meta.cdp %}
{%- set event = cdp.event %}
{%- set contract = xdm_contract(node) %}
{%- set key = xdm_column_name(node, cdp.get('record_key'), 'record_key') %}
{%- set occurred_at = xdm_column_name(node, event.get('occurred_at'), 'event.occurred_at') %}
{%- set named = {key: 'record_key', occurred_at: 'event.occurred_at'} %}
{%- for field in (event.get('fields') or {}) if field not in fields -%}
    {{ xdm_fail(node, "event.fields." ~ field ~ " is not an XDM event field; allowed: " ~ fields.keys() | join(', ')
                      ~ " (the columns of xdm_experience_events in models/xdm/_xdm__models.yml)") }}
{%- endfor %}
{%- set measures = event.get('measures') or {} %}
{%- if measures is sequence and measures is not mapping and measures is not string %}
    {%- set by_name = {} %}{% for column in measures %}{% do by_name.update({column: column}) %}{% endfor %}
    {%- set measures = by_name %}
{%- endif %}
{%- set measure_sql = [] %}
{%- for name, column in measures | dictsort %}
    {%- do named.update({xdm_column_name(node, column, 'event.measures.' ~ name): 'event.measures.' ~ name}) %}
    {%- do measure_sql.append((xdm_column_name(node, name, 'event.measures (name)'), 'cast(' ~ column ~ ' as double)')) %}
{%- endfor %}
{{ node.name }} as (
    select
        {{ record_id(contract, key) }} as record_id,
        '{{ contract }}' as source_table,
        cast({{ xdm_value_sql(node, event.get('type'), 'event.type', true, named) }} as varchar) as event_type,
        cast({{ occurred_at }} as timestamp) as occurred_at,
        cast({{ xdm_value_sql(node, event.get('channel'), 'event.channel', true, named) }} as varchar) as channel,
        {%- for field, data_type in fields.items() %}
        {%- set spec = (event.get('fields') or {}).get(field) %}
        cast({{ xdm_value_sql(node, spec, 'event.fields.' ~ field, false, named) if spec is not none else 'null' }} as {{ data_type }}) as {{ field }},
        {%- endfor %}
        {{ json_object_text(measure_sql) if measure_sql else 'cast(null as varchar)' }} as event_measures,
        {{ xdm_loaded_at(node) }} as loaded_at
    from {{ ref(node.name) }}
    where {{ xdm_new_rows(node, contract, key, adds) }}
),
{%- do xdm_check_columns(node, named) %}
{% endfor %}
final as (
    {%- for node in nodes %}
    select * from {{ node.name }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
)

select * from final
{%- endmacro %}
