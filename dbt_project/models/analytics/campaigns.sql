-- One row per campaign of dbt_project/campaigns/*.yml: what it sends, its dates and goal, how many
-- members each state holds, and whether it is planned, running or ended (as of the as-of instant).
{%- set campaigns = campaign_catalogue() %}

with

members as (
    select * from {{ ref('campaign_members') }}
),

campaign_definitions as (
    {{ campaign_definition_rows(campaigns) }}
),

member_counts as (
    select
        campaign_name,
        count(*) as members_assigned,
        cast(sum(case when is_counted then 1 else 0 end) as bigint) as members_counted,
        cast(sum(case when not is_window_complete and not is_crossover then 1 else 0 end) as bigint) as members_pending,
        cast(sum(case when is_crossover then 1 else 0 end) as bigint) as crossover_members,
        min(assigned_at) as first_assigned_at,
        max(assigned_at) as last_assigned_at
    from members
    group by campaign_name
),

final as (
    select
        campaign_definitions.campaign_name,
        campaign_definitions.description,
        campaign_definitions.audience_name,
        campaign_definitions.sync_names,
        cast(campaign_definitions.starts_at as date) as starts_on,
        cast({{ dbt.dateadd('day', -1, 'campaign_definitions.ends_before') }} as date) as ends_on,
        campaign_definitions.goal_description,
        campaign_definitions.goal_aggregate,
        campaign_definitions.goal_window_days,
        coalesce(member_counts.members_assigned, 0) as members_assigned,
        coalesce(member_counts.members_counted, 0) as members_counted,
        coalesce(member_counts.members_pending, 0) as members_pending,
        coalesce(member_counts.crossover_members, 0) as crossover_members,
        member_counts.first_assigned_at,
        member_counts.last_assigned_at,
        case
            when member_counts.first_assigned_at is null
                and coalesce(campaign_definitions.starts_at > {{ as_of_timestamp() }}, true) then 'planned'
            when campaign_definitions.ends_before <= {{ as_of_timestamp() }} then 'ended'
            else 'running'
        end as campaign_status
    from campaign_definitions
    left join member_counts
        on member_counts.campaign_name = campaign_definitions.campaign_name
)

select * from final
