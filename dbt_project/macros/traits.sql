{#- Declarative traits: the catalogue is the columns of profile_traits (models/profiles/_profile_traits.yml):
    each column with meta.trait is a trait, its data_type the type it is cast to. Three kinds, computed
    in order:

    aggregate  aggregate (count, sum, avg, min, max, distinct_count, days_since_last, first, last,
               most_frequent) of column `of`, or of the numeric event measure `measure`
               (cdp.event.measures, read from event_measures), over the rows of `from`
               (events | purchase_items) that match `where` ({column: value or [values]}) within
               `window_days` of the as-of instant; `default` replaces "no matching row" (0 for counts).
    derived    `expression` (SQL) over profile columns and the aggregates above.
    score      1..`buckets` quantile score of trait `of` among profiles where `among` holds (trait_score_cte):
               equal values share a score, and a large group of equal values never leaves a band empty;
               `higher_is_better: false` for recency-like traits.

    A definition the macros do not understand fails compilation with the trait's name, what was found
    and what is allowed. -#}


{#- The traits of profile_traits: the generated macro trait_catalogue() (cdp/traits.py renders the
    columns of models/profiles/_profile_traits.yml that carry meta.trait). When the graph is there (a
    build, not a unit test, which compiles without it) the declared columns are checked against it. -#}
{% macro trait_definitions() -%}
    {%- set traits = trait_catalogue() -%}
    {%- set node = graph.get('nodes', {}).get('model.' ~ project_name ~ '.profile_traits') if execute else none -%}
    {%- if node is not none -%}
        {%- set declared = [] -%}
        {%- for name, column in node.columns.items() -%}
            {%- set definition = (column.config or {}).get('meta', {}).get('trait') or (column.meta or {}).get('trait') -%}
            {%- if definition is not none -%}
                {%- set trait = {'name': name, 'data_type': column.data_type} -%}
                {%- do trait.update(definition) -%}
                {%- do declared.append(trait) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if declared != traits -%}
            {{ exceptions.raise_compiler_error(
                "profile_traits: the trait columns of models/profiles/_profile_traits.yml differ from the generated "
                ~ "macros/trait_catalogue.sql; run `cdp sources check` (every cdp command refreshes it), then build again.") }}
        {%- endif -%}
    {%- endif -%}
    {{- return(traits) -}}
{%- endmacro %}


{#- The event measures the traits aggregate: profile_traits reads each from event_measures as measure__<name>. -#}
{% macro trait_measures(traits) -%}
    {%- set measures = [] -%}
    {%- for trait in traits if trait.get('measure') is not none and trait.measure not in measures -%}
        {%- do measures.append(trait_identifier(trait, trait.measure, 'measure')) -%}
    {%- endfor -%}
    {{- return(measures) -}}
{%- endmacro %}


{#- The column an aggregate trait folds: `of`, or measure__<measure>. -#}
{% macro trait_of(trait) -%}
    {%- if trait.get('measure') is not none and trait.get('of') is not none -%}
        {{ trait_fail(trait, "give `of` (a column) or `measure` (an event measure), not both") }}
    {%- endif -%}
    {%- if trait.get('measure') is not none -%}
        {%- if trait.get('from', 'events') != 'events' -%}
            {{ trait_fail(trait, "measures are read from events; found from: " ~ trait.get('from')) }}
        {%- endif -%}
        {{- return('measure__' ~ trait_identifier(trait, trait.measure, 'measure')) -}}
    {%- endif -%}
    {%- if trait.get('of') is none -%}
        {{ trait_fail(trait, "aggregate " ~ trait.aggregate ~ " needs `of` (the column it aggregates) or `measure`") }}
    {%- endif -%}
    {{- return(trait_identifier(trait, trait.of, 'of')) -}}
{%- endmacro %}

{% macro trait_sources() %}{{ return(['events', 'purchase_items']) }}{% endmacro %}
{% macro trait_aggregates() %}{{ return(['count', 'sum', 'avg', 'min', 'max', 'distinct_count', 'days_since_last',
                                         'first', 'last', 'most_frequent']) }}{% endmacro %}
{#- Aggregates that pick one row per profile rather than fold them. -#}
{% macro ranked_aggregates() %}{{ return(['first', 'last', 'most_frequent']) }}{% endmacro %}


{% macro trait_fail(trait, problem) -%}
    {{ exceptions.raise_compiler_error(
        "trait " ~ (trait.get('name') if trait is mapping else trait) ~ " (models/profiles/_profile_traits.yml): " ~ problem) }}
{%- endmacro %}


{#- A SQL identifier from the catalogue, checked: a plain column or trait name, never an expression. -#}
{% macro trait_identifier(trait, value, what) -%}
    {%- if value is not string or not modules.re.match('^[a-z_][a-z0-9_]*$', value) -%}
        {{ trait_fail(trait, what ~ " must be a lower-case column name, found " ~ value) }}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}


{% macro trait_literal(value) -%}
    {%- if value is none -%}null
    {%- elif value is boolean -%}{{ 'true' if value else 'false' }}
    {%- elif value is number -%}{{ value }}
    {%- else -%}'{{ (value | string).replace("'", "''") }}'
    {%- endif -%}
{%- endmacro %}


{#- The rows of the trait's source that count: its `where` filter and its lookback window (nothing after
    the as-of instant, so a trait computed "as of D" ignores later events). -#}
{% macro trait_condition(trait) -%}
    {%- set conditions = ['occurred_at < ' ~ as_of_timestamp()] -%}
    {%- if trait.get('window_days') is not none -%}
        {%- if trait.window_days is not number or trait.window_days <= 0 -%}
            {{ trait_fail(trait, "window_days must be a positive number of days, found " ~ trait.window_days) }}
        {%- endif -%}
        {%- do conditions.append('occurred_at >= ' ~ dbt.dateadd('day', -trait.window_days, as_of_timestamp())) -%}
    {%- endif -%}
    {%- for column, value in (trait.get('where') or {}).items() -%}
        {%- set column_sql = trait_identifier(trait, column, 'a where key') -%}
        {%- if value is string or value is number or value is boolean -%}
            {%- do conditions.append(column_sql ~ ' = ' ~ trait_literal(value)) -%}
        {%- elif value is sequence and value | length > 0 -%}
            {%- set literals = [] -%}
            {%- for item in value -%}{%- do literals.append(trait_literal(item)) -%}{%- endfor -%}
            {%- do conditions.append(column_sql ~ ' in (' ~ literals | join(', ') ~ ')') -%}
        {%- else -%}
            {{ trait_fail(trait, "where." ~ column ~ " must be a value or a non-empty list of values, found " ~ value) }}
        {%- endif -%}
    {%- endfor -%}
    {{- conditions | join(' and ') -}}
{%- endmacro %}


{% macro trait_kind(trait) -%}
    {%- if trait is not mapping or not trait.get('name') -%}
        {{ trait_fail(trait, "every trait is a mapping with a name") }}
    {%- endif -%}
    {%- set allowed = ['name', 'data_type', 'aggregate', 'of', 'measure', 'from', 'where',
                       'window_days', 'default', 'expression', 'score'] -%}
    {%- for key in trait if key not in allowed -%}
        {{ trait_fail(trait, "unknown key " ~ key ~ " in meta.trait; allowed: " ~ allowed[2:] | join(', ')
                             ~ " (quote an expression that holds a comma)") }}
    {%- endfor -%}
    {%- set kinds = [] -%}
    {%- for key in ['aggregate', 'expression', 'score'] -%}
        {%- if trait.get(key) is not none -%}{%- do kinds.append(key) -%}{%- endif -%}
    {%- endfor -%}
    {%- if kinds | length != 1 -%}
        {{ trait_fail(trait, "give exactly one of aggregate, expression or score; found " ~ (kinds | join(', ') or 'none')) }}
    {%- endif -%}
    {{ return({'aggregate': 'aggregate', 'expression': 'derived', 'score': 'score'}[kinds[0]]) }}
{%- endmacro %}


{#- The aggregate expression of a plain (unranked) aggregate trait, over its source's rows. -#}
{% macro trait_aggregate_sql(trait) -%}
    {%- set aggregate = trait.aggregate -%}
    {%- if aggregate not in trait_aggregates() -%}
        {{ trait_fail(trait, "aggregate is " ~ aggregate ~ "; allowed: " ~ trait_aggregates() | join(', ')) }}
    {%- endif -%}
    {%- set condition = trait_condition(trait) -%}
    {%- if aggregate == 'count' -%}
        count(case when {{ condition }} then 1 end)
    {%- elif aggregate == 'days_since_last' -%}
        {{ dbt.datediff('max(case when ' ~ condition ~ ' then occurred_at end)', as_of_timestamp(), 'day') }}
    {%- else -%}
        {%- set column = trait_of(trait) -%}
        {%- if aggregate == 'distinct_count' -%}
            count(distinct case when {{ condition }} then {{ column }} end)
        {%- else -%}
            {{ aggregate }}(case when {{ condition }} then {{ column }} end)
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- first / last / most_frequent: one row per profile picked by rank, ties broken by the latest
    occurrence and then the value, so reruns give the same answer. -#}
{% macro trait_ranked_cte(trait) -%}
    {%- set column = trait_of(trait) -%}
    {%- set source = trait_identifier(trait, trait.get('from', 'events'), 'from') -%}
    {%- if trait.aggregate == 'most_frequent' -%}
        {%- set candidates -%}
            select profile_id, {{ column }} as trait_value, count(*) as occurrences, max(occurred_at) as latest_at
            from {{ source }}
            where {{ trait_condition(trait) }} and {{ column }} is not null
            group by profile_id, {{ column }}
        {%- endset -%}
        {%- set order = 'occurrences desc, latest_at desc, trait_value' -%}
    {%- else -%}
        {%- set candidates -%}
            select profile_id, {{ column }} as trait_value, occurred_at
            from {{ source }}
            where {{ trait_condition(trait) }} and {{ column }} is not null
        {%- endset -%}
        {%- set order = ('occurred_at' if trait.aggregate == 'first' else 'occurred_at desc') ~ ', trait_value' -%}
    {%- endif -%}
    trait__{{ trait.name }} as (
        select profile_id, trait_value as {{ trait.name }}
        from (
            select candidates.*, row_number() over (partition by profile_id order by {{ order }}) as trait_rank
            from ({{ candidates }}) as candidates
        ) as ranked
        where trait_rank = 1
    ),
{%- endmacro %}


{#- The CTEs of every aggregate trait: one grouped scan per source for the plain aggregates, one CTE per
    ranked trait. Ends with a comma: place it in a WITH list. -#}
{% macro trait_aggregate_ctes(traits) -%}
    {%- for source in trait_sources() %}
        {%- set plain = [] -%}
        {%- for trait in traits if trait_kind(trait) == 'aggregate' and trait.get('from', 'events') == source
                                   and trait.aggregate not in ranked_aggregates() -%}
            {%- do plain.append(trait) -%}
        {%- endfor -%}
        {%- if plain %}
    trait__{{ source }} as (
        select
            profile_id,
            {%- for trait in plain %}
            {{ trait_aggregate_sql(trait) }} as {{ trait_identifier(trait, trait.name, 'name') }}{{ ',' if not loop.last }}
            {%- endfor %}
        from {{ source }}
        group by profile_id
    ),
        {%- endif %}
    {%- endfor %}
    {%- for trait in traits if trait_kind(trait) == 'aggregate' %}
        {%- if trait.get('from', 'events') not in trait_sources() -%}
            {{ trait_fail(trait, "from is " ~ trait.get('from') ~ "; allowed: " ~ trait_sources() | join(', ')) }}
        {%- endif -%}
        {%- if trait.aggregate in ranked_aggregates() %}
    {{ trait_ranked_cte(trait) }}
        {%- endif %}
    {%- endfor %}
{%- endmacro %}


{#- Joins of the aggregate CTEs to `profiles`. -#}
{% macro trait_aggregate_joins(traits) -%}
    {%- set joined = [] -%}
    {%- for trait in traits if trait_kind(trait) == 'aggregate' -%}
        {%- set cte = 'trait__' ~ (trait.name if trait.aggregate in ranked_aggregates() else trait.get('from', 'events')) -%}
        {%- if cte not in joined %}
    left join {{ cte }}
        on {{ cte }}.profile_id = profiles.profile_id
            {%- do joined.append(cte) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}


{#- The column a trait of each kind adds, in the select list of its stage. -#}
{% macro trait_column(trait) -%}
    {%- set kind = trait_kind(trait) -%}
    {%- set name = trait_identifier(trait, trait.name, 'name') -%}
    {%- if kind == 'aggregate' -%}
        {%- set value = name if trait.aggregate in ranked_aggregates() else 'trait__' ~ trait.get('from', 'events') ~ '.' ~ name -%}
        {#- A profile without matching rows counted nothing: 0, not null (its CTE row is missing). -#}
        {%- set default = trait.get('default', 0 if trait.aggregate in ['count', 'distinct_count'] else none) -%}
        {%- if default is not none -%}{%- set value = 'coalesce(' ~ value ~ ', ' ~ trait_literal(default) ~ ')' -%}{%- endif -%}
    {%- elif kind == 'derived' -%}
        {%- set value = trait.expression -%}
    {%- else -%}
        {%- set value = 'case when ' ~ trait_score_among(trait) ~ ' then score__' ~ name ~ '.score end' -%}
    {%- endif -%}
    {%- set value = 'cast(' ~ value ~ ' as ' ~ trait.data_type ~ ')' -%}
    {{- value }} as {{ name -}}
{%- endmacro %}


{#- The select-list entries of the traits of one kind ('aggregate', 'derived' or 'score'), each with a
    leading comma. -#}
{% macro trait_columns(traits, kind) -%}
    {%- for trait in traits if trait_kind(trait) == kind %}
            , {{ trait_column(trait) }}
    {%- endfor -%}
{%- endmacro %}


{% macro trait_score_among(trait) -%}
    {%- set score = trait.score -%}
    {%- set measure = trait_identifier(trait, score.get('of'), 'score.of') -%}
    {{- '(' ~ score.get('among', 'true') ~ ') and ' ~ measure ~ ' is not null' -}}
{%- endmacro %}


{#- The score of each distinct value of a score trait's `of`, among the profiles where `among` holds.
    The quantile score of a value is 1 + floor(buckets x the share of profiles ranked strictly below it)
    (capped at buckets), the same for tied values. On skewed data a big tie (most buyers bought once)
    makes that jump bands: one-time buyers score 1 and two-time buyers 3, so band 2 is always empty.
    With at least `buckets` distinct values every band is used instead: a value scores at most one band
    above the next lower value, and at least high enough to leave a band for each higher value
    (buckets - the number of distinct values above it); with fewer distinct values, the plain quantile
    score. Ends with a comma: place it in a WITH list. -#}
{% macro trait_score_cte(trait) -%}
    {%- set score = trait.score -%}
    {%- set buckets = score.get('buckets', 5) -%}
    {%- if buckets is not number or buckets < 2 -%}
        {{ trait_fail(trait, "score.buckets must be a whole number of at least 2, found " ~ buckets) }}
    {%- endif -%}
    {%- set measure = trait_identifier(trait, score.get('of'), 'score.of') -%}
    {%- set direction = 'asc' if score.get('higher_is_better', true) else 'desc' %}
    score__{{ trait.name }} as (
        select
            score_value,
            case
                when distinct_values >= {{ buckets }} then greatest(
                    value_rank + min(quantile_score - value_rank) over (
                        order by value_rank rows between unbounded preceding and current row),
                    {{ buckets }} - (distinct_values - value_rank))
                else quantile_score
            end as score
        from (
            select
                score_value,
                row_number() over (order by score_value {{ direction }}) as value_rank,
                count(*) over () as distinct_values,
                least({{ buckets }}, 1 + cast(floor({{ buckets }} * 1.0 * coalesce(sum(value_rows) over (
                    order by score_value {{ direction }} rows between unbounded preceding and 1 preceding), 0)
                    / greatest(sum(value_rows) over () - 1, 1)) as integer)) as quantile_score
            from (
                select {{ measure }} as score_value, count(*) as value_rows
                from derived
                where {{ trait_score_among(trait) }}
                group by {{ measure }}
            ) as value_counts
        ) as value_scores
    ),
{%- endmacro %}


{% macro trait_score_ctes(traits) -%}
    {%- for trait in traits if trait_kind(trait) == 'score' %}
    {{ trait_score_cte(trait) }}
    {%- endfor %}
{%- endmacro %}


{#- Joins of the score CTEs to `derived`, by value. -#}
{% macro trait_score_joins(traits) -%}
    {%- for trait in traits if trait_kind(trait) == 'score' %}
    left join score__{{ trait.name }}
        on score__{{ trait.name }}.score_value = derived.{{ trait_identifier(trait, trait.score.get('of'), 'score.of') }}
    {%- endfor -%}
{%- endmacro %}
