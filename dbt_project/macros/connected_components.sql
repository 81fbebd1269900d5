{#-
    Connected components in plain SQL, for engines without Python models (DuckDB uses the scipy
    model identity_components). Large-star / small-star alternation (Kiveris et al. 2014, "Connected
    Components in MapReduce and Beyond"): each round keeps the graph's connectivity and moves every
    node's edges towards the smallest node of its component, until each component is a star around
    its smallest node. Rounds run as separate statements until the edge set stops changing
    (O(log^2 n) rounds in theory, far fewer in practice); max_rounds bounds a pathological input.

    Returns a select of (node, component): component is the smallest node of the node's component.
    Work tables are named after the model and dropped by the caller's post-hook
    (drop_connected_components_work_tables).
-#}
{% macro connected_components(edges, left_column, right_column, nodes, node_column, max_rounds=40) -%}
    {{ return(adapter.dispatch('connected_components', 'cdp')(edges, left_column, right_column, nodes, node_column, max_rounds)) }}
{%- endmacro %}

{% macro connected_components_work_table(step) -%}
    {{ this.schema }}.{{ this.identifier }}__cc_{{ step }}
{%- endmacro %}

{% macro connected_components_create(relation, sql) -%}
    {%- do run_query("drop table if exists " ~ relation) -%}
    {%- do run_query("create table " ~ relation ~ " as " ~ sql) -%}
{%- endmacro %}

{% macro default__connected_components(edges, left_column, right_column, nodes, node_column, max_rounds) -%}
    {%- set final = connected_components_work_table('final') -%}
    {%- if execute -%}
        {%- set state = namespace(current=connected_components_work_table(0), converged=false, rounds=0) -%}
        {#- Undirected edges, each once as (smaller, larger). -#}
        {%- do connected_components_create(state.current,
            "select distinct "
            ~ "case when " ~ left_column ~ " < " ~ right_column ~ " then " ~ left_column ~ " else " ~ right_column ~ " end as a, "
            ~ "case when " ~ left_column ~ " < " ~ right_column ~ " then " ~ right_column ~ " else " ~ left_column ~ " end as b "
            ~ "from " ~ edges ~ " where " ~ left_column ~ " <> " ~ right_column) -%}
        {%- for round in range(1, max_rounds + 1) if not state.converged -%}
            {%- set large = connected_components_work_table(round ~ '_large') -%}
            {%- set small = connected_components_work_table(round) -%}
            {#- Large star: each node u links every larger neighbour v to m(u), the smallest of u and its neighbours. -#}
            {%- do connected_components_create(large,
                "with neighbours as (select a as u, b as v from " ~ state.current
                ~ " union all select b as u, a as v from " ~ state.current ~ "), "
                ~ "smallest as (select u, min(v) as m from neighbours group by u) "
                ~ "select distinct neighbours.v as a, case when smallest.m < neighbours.u then smallest.m else neighbours.u end as b "
                ~ "from neighbours inner join smallest on smallest.u = neighbours.u where neighbours.v > neighbours.u") -%}
            {#- Small star: each node u links itself and every smaller neighbour v to the smallest of them. -#}
            {%- do connected_components_create(small,
                "with smaller as (select case when a > b then a else b end as u, case when a > b then b else a end as v from " ~ large ~ "), "
                ~ "smallest as (select u, min(v) as m from smaller group by u), "
                ~ "star as (select smaller.v as a, smallest.m as b from smaller inner join smallest on smallest.u = smaller.u "
                ~ "union select u as a, m as b from smallest) "
                ~ "select distinct case when a < b then a else b end as a, case when a < b then b else a end as b "
                ~ "from star where a <> b") -%}
            {%- set changed = run_query(
                "select count(*) from ((select a, b from " ~ small ~ " except select a, b from " ~ state.current
                ~ ") union all (select a, b from " ~ state.current ~ " except select a, b from " ~ small ~ ")) as difference"
            ).columns[0].values()[0] -%}
            {%- do run_query("drop table " ~ large) -%}
            {%- do run_query("drop table " ~ state.current) -%}
            {%- set state.current = small -%}
            {%- set state.rounds = round -%}
            {%- set state.converged = changed == 0 -%}
        {%- endfor -%}
        {%- if not state.converged -%}
            {{ exceptions.raise_compiler_error(
                "connected_components: the edges of " ~ edges ~ " did not converge in " ~ max_rounds
                ~ " large-star/small-star rounds; pass a larger max_rounds") }}
        {%- endif -%}
        {%- do connected_components_create(final, "select a, b from " ~ state.current) -%}
        {%- do run_query("drop table " ~ state.current) -%}
        {{ log("connected_components: " ~ edges ~ " converged after " ~ state.rounds ~ " rounds", info=true) }}
    {%- endif %}
    select
        nodes.{{ node_column }} as node,
        coalesce(labels.component, nodes.{{ node_column }}) as component
    from {{ nodes }} as nodes
    left join (
        -- the graph is now a star per component: its centre is the smallest node, every leaf links to it
        select a as node, a as component from {{ final }}
        union
        select b as node, a as component from {{ final }}
    ) as labels
        on labels.node = nodes.{{ node_column }}
{%- endmacro %}

{% macro drop_connected_components_work_tables() -%}
    drop table if exists {{ connected_components_work_table('final') }}
{%- endmacro %}
