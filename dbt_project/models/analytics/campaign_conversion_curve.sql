-- Cumulative conversions per campaign, split and day since assignment (exposure, for the treated):
-- of the members whose goal window is complete, how many had converted by the end of each day.
{%- set campaigns = campaign_catalogue() %}
{%- set max_window = campaigns | map(attribute='goal') | map(attribute='window_days') | max if campaigns else 1 %}

with

members as (
    select * from {{ ref('campaign_members') }}
),

campaign_definitions as (
    {{ campaign_definition_rows(campaigns) }}
),

campaign_splits as (
    {{ campaign_split_rows(campaigns) }}
),

days as (
    select cast(generated_number as integer) as day_number
    from ({{ dbt.generate_series(max_window) }}) as series
),

grid as (
    select
        campaign_splits.campaign_name,
        campaign_splits.split_name,
        campaign_splits.is_holdout,
        days.day_number
    from campaign_splits
    inner join campaign_definitions
        on campaign_definitions.campaign_name = campaign_splits.campaign_name
    inner join days
        on days.day_number <= campaign_definitions.goal_window_days
),

counted as (
    select * from members
    where is_counted
),

final as (
    select
        grid.campaign_name,
        grid.split_name,
        grid.is_holdout,
        grid.day_number as days_since_assignment,
        count(counted.profile_id) as members,
        count(
            case when counted.converted_at < {{ dbt.dateadd('day', 'grid.day_number', 'counted.assigned_at') }}
                then 1 end
        ) as converted_members,
        cast(count(
            case when counted.converted_at < {{ dbt.dateadd('day', 'grid.day_number', 'counted.assigned_at') }}
                then 1 end
        ) as double) / nullif(count(counted.profile_id), 0) as cumulative_conversion_rate
    from grid
    left join counted
        on counted.campaign_name = grid.campaign_name
        and counted.split_name = grid.split_name
    group by grid.campaign_name, grid.split_name, grid.is_holdout, grid.day_number
)

select * from final
