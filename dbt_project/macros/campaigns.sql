{#- Campaign analytics (models/analytics): the campaigns of dbt_project/campaigns/*.yml come from the
    generated macro campaign_catalogue() (cdp/campaigns/definition.py); these macros turn it into SQL. -#}

{#- The revenue of a purchase in the reporting currency (var reporting_currency): the converted amount of
    profile_events, never the mixed original amounts. Revenue per member and goals with `of: revenue` use it. -#}
{% macro campaign_revenue(relation) -%}
    {{ relation }}.commerce_order_price_total_reporting
{%- endmacro %}


{#- One row per campaign: name, start (timestamp, or null), end (exclusive: the day after ends_at, or
    null), goal window in days and description. A typed empty relation when there is no campaign. -#}
{% macro campaign_definition_rows(campaigns) -%}
    {%- set rows = [] -%}
    {%- for campaign in campaigns -%}
        {%- do rows.append([
            trait_literal(campaign.name), trait_literal(campaign.description), trait_literal(campaign.audience),
            trait_literal(campaign.syncs | join(', ')), campaign_timestamp(campaign.starts_at, 0),
            campaign_timestamp(campaign.ends_at, 1), trait_literal(campaign.goal.window_days),
            trait_literal(campaign.goal.aggregate), trait_literal(campaign.goal.description)
        ]) -%}
    {%- endfor -%}
    {{ literal_rows([
        ['campaign_name', dbt.type_string()], ['description', dbt.type_string()],
        ['audience_name', dbt.type_string()], ['sync_names', dbt.type_string()],
        ['starts_at', dbt.type_timestamp()], ['ends_before', dbt.type_timestamp()],
        ['goal_window_days', dbt.type_int()], ['goal_aggregate', dbt.type_string()],
        ['goal_description', dbt.type_string()]
    ], rows) }}
{%- endmacro %}


{#- A relation of literal rows: `columns` a list of [name, type], `rows` a list of lists of SQL expressions
    in that order, each cast to its column's type; no rows give the typed empty relation. -#}
{% macro literal_rows(columns, rows) -%}
    {%- for row in rows %}
    select
        {%- for column in columns %}
        cast({{ row[loop.index0] }} as {{ column[1] }}) as {{ column[0] }}{{ ',' if not loop.last }}
        {%- endfor %}
    {% if not loop.last %}union all{% endif %}
    {%- else %}
    select
        {%- for column in columns %}
        cast(null as {{ column[1] }}) as {{ column[0] }}{{ ',' if not loop.last }}
        {%- endfor %}
    where 1 = 0
    {%- endfor %}
{%- endmacro %}


{% macro campaign_timestamp(day, days_after) -%}
    {%- if day is none -%}null
    {%- else -%}{{ dbt.dateadd('day', days_after, "cast('" ~ day ~ "' as timestamp)") }}
    {%- endif -%}
{%- endmacro %}


{#- One row per campaign and sync that sends it. -#}
{% macro campaign_sync_rows(campaigns) -%}
    {%- set rows = [] -%}
    {%- for campaign in campaigns -%}
        {%- for sync_name in campaign.syncs -%}
            {%- do rows.append([trait_literal(campaign.name), trait_literal(sync_name)]) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ literal_rows([['campaign_name', dbt.type_string()], ['sync_name', dbt.type_string()]], rows) }}
{%- endmacro %}


{#- One row per campaign and split, with the split's expected share of the members (the audience's percent). -#}
{% macro campaign_split_rows(campaigns) -%}
    {%- set rows = [] -%}
    {%- for campaign in campaigns -%}
        {%- for split in campaign.splits -%}
            {%- do rows.append([
                trait_literal(campaign.name), trait_literal(split.name), trait_literal(split.holdout),
                'cast(' ~ split.percent ~ ' as double) / 100'
            ]) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ literal_rows([
        ['campaign_name', dbt.type_string()], ['split_name', dbt.type_string()],
        ['is_holdout', dbt.type_boolean()], ['expected_share', 'double']
    ], rows) }}
{%- endmacro %}


{#- Per event row of `relation` (profile_events): true when it counts toward the goal of the member's
    campaign (column campaign_name of `member`). -#}
{% macro campaign_goal_filter(campaigns, relation, member) -%}
    {%- if not campaigns -%}false{%- else -%}
    case {{ member }}.campaign_name
        {%- for campaign in campaigns %}
        when {{ trait_literal(campaign.name) }} then
            {%- for column, values in campaign.goal.where.items() %}
            {{ 'and ' if not loop.first }}coalesce({{ relation }}.{{ campaign_identifier(campaign.name, column, 'goal.where') }} in (
                {%- for value in values %}{{ trait_literal(value) }}{{ ', ' if not loop.last }}{% endfor -%}
            ), false)
            {%- endfor %}
        {%- endfor %}
        else false
    end
    {%- endif -%}
{%- endmacro %}


{#- Per event row: what it adds to the goal value of the member's campaign (1 for count goals). -#}
{% macro campaign_goal_value(campaigns, relation, member) -%}
    {%- if not campaigns -%}cast(null as double){%- else -%}
    case {{ member }}.campaign_name
        {%- for campaign in campaigns %}
        when {{ trait_literal(campaign.name) }} then
            {%- if campaign.goal.aggregate == 'count' %} cast(1 as double)
            {%- elif campaign.goal.measure %} coalesce({{ json_number(relation ~ '.event_measures', campaign_identifier(campaign.name, campaign.goal.measure, 'goal.measure')) }}, 0)
            {%- elif campaign.goal.of == 'revenue' %} coalesce(cast({{ campaign_revenue(relation) }} as double), 0)
            {%- else %} coalesce(cast({{ relation }}.{{ campaign_identifier(campaign.name, campaign.goal.of, 'goal.of') }} as double), 0)
            {%- endif %}
        {%- endfor %}
    end
    {%- endif -%}
{%- endmacro %}


{#- A column name from the catalogue, checked again here (cdp/campaigns checks it first): never an expression. -#}
{% macro campaign_identifier(campaign_name, value, what) -%}
    {%- if value is not string or not modules.re.match('^[a-z_][a-z0-9_]*$', value) -%}
        {{ exceptions.raise_compiler_error(
            "campaign " ~ campaign_name ~ " (dbt_project/campaigns/" ~ campaign_name ~ ".yml): " ~ what
            ~ " must be a lower-case column name, found " ~ value ~ ". Run `cdp campaigns list` to check it.") }}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}
