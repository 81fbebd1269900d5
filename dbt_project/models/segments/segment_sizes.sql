-- Audience sizes per dbt run, for trends: members after the run, and how many entered and exited
-- in it. Every audience of audience_models() gets a row per run, also when it is empty. Append-only.
{{
    config(
        materialized='incremental',
        full_refresh=false,
        on_schema_change='fail',
    )
}}
{%- set audiences = audience_models() %}

with

history as (
    select * from {{ ref('segment_membership_history') }}
    where run_id = '{{ invocation_id }}'
),

audiences as (
    {%- for audience in audiences %}
    select cast('{{ audience.name }}' as varchar) as segment_name
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

this_run as (
    select
        cast('{{ invocation_id }}' as varchar) as run_id,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp) as evaluated_at
),

counted as (
    select
        segment_name,
        sum(case when membership_status in ('realized', 'existing') then 1 else 0 end) as members,
        sum(case when membership_status = 'realized' then 1 else 0 end) as realized,
        sum(case when membership_status = 'exited' then 1 else 0 end) as exited
    from history
    group by segment_name
),

final as (
    select
        this_run.run_id,
        this_run.evaluated_at,
        audiences.segment_name,
        cast(coalesce(counted.members, 0) as bigint) as members,
        cast(coalesce(counted.realized, 0) as bigint) as realized,
        cast(coalesce(counted.exited, 0) as bigint) as exited
    from audiences
    cross join this_run
    left join counted
        on counted.segment_name = audiences.segment_name
)

select * from final
