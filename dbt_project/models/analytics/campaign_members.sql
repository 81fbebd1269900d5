-- One row per campaign and member: the member's group, taken from the sync run that first decided
-- about them (sent: exposed, the treatment; held out: the holdout), when, and what they did within the
-- goal window that starts then. Exposure = the run that first sent the member (activation ledger),
-- timed by the run's as-of instant when it had one (CDP_AS_OF), else by its start. Ids the ledger holds
-- that a merge absorbed since are followed to the profile that absorbed them (profile_id_history).
{%- set campaigns = campaign_catalogue() %}
{%- set merge_levels = 4 %}

with

ledger as (
    select * from {{ source('activation', 'sync_ledger') }}
),

sync_runs as (
    select * from {{ source('activation', 'sync_runs') }}
),

profile_id_history as (
    select * from {{ ref('profile_id_history') }}
),

events as (
    select * from {{ ref('profile_events') }}
),

campaign_definitions as (
    {{ campaign_definition_rows(campaigns) }}
),

campaign_syncs as (
    {{ campaign_sync_rows(campaigns) }}
),

decisions as (
    select
        campaign_syncs.campaign_name,
        ledger.record_key as profile_id,
        ledger.status,
        ledger.split_name,
        ledger.run_id,
        ledger.sync_name,
        coalesce(sync_runs.as_of, sync_runs.started_at) as decided_at
    from ledger
    inner join campaign_syncs
        on campaign_syncs.sync_name = ledger.sync_name
    inner join sync_runs
        on sync_runs.run_id = ledger.run_id
        and sync_runs.sync_name = ledger.sync_name
    where ledger.record_key is not null
        and (
            ledger.status = 'held_out'
            or (ledger.status = 'sent' and ledger.change_kind in ('added', 'changed'))
        )
),

absorbed_ids as (
    -- An absorbed id belongs to one profile from then on.
    select
        previous_profile_id,
        min(current_profile_id) as current_profile_id
    from profile_id_history
    where change_type = 'merge'
    group by previous_profile_id
),

resolved_0 as (
    select * from decisions
),

{% for level in range(merge_levels) %}
resolved_{{ level + 1 }} as (
    -- Merge chains up to {{ merge_levels }} deep: each step follows one merge.
    select
        resolved.campaign_name,
        coalesce(absorbed_ids.current_profile_id, resolved.profile_id) as profile_id,
        resolved.status,
        resolved.split_name,
        resolved.run_id,
        resolved.sync_name,
        resolved.decided_at
    from resolved_{{ level }} as resolved
    left join absorbed_ids
        on absorbed_ids.previous_profile_id = resolved.profile_id
),
{% endfor %}

ordered_decisions as (
    select
        *,
        row_number() over (
            partition by campaign_name, profile_id
            order by decided_at, status desc, run_id, sync_name
        ) as decision_number
    from resolved_{{ merge_levels }}
),

member_groups as (
    select
        campaign_name,
        profile_id,
        min(case when status = 'sent' then decided_at end) as exposed_at,
        -- Both exposed and held out (profiles of two groups merged, or the split percentages changed):
        -- in neither group's figures.
        max(case when status = 'sent' then 1 else 0 end) = 1
        and max(case when status = 'held_out' then 1 else 0 end) = 1 as is_crossover
    from ordered_decisions
    group by campaign_name, profile_id
),

first_decisions as (
    select
        ordered_decisions.campaign_name,
        ordered_decisions.profile_id,
        ordered_decisions.split_name,
        ordered_decisions.status = 'held_out' as is_holdout,
        ordered_decisions.decided_at as assigned_at,
        ordered_decisions.sync_name as first_sync_name,
        ordered_decisions.run_id as first_run_id,
        member_groups.exposed_at,
        member_groups.is_crossover
    from ordered_decisions
    inner join member_groups
        on member_groups.campaign_name = ordered_decisions.campaign_name
        and member_groups.profile_id = ordered_decisions.profile_id
    where ordered_decisions.decision_number = 1
),

members as (
    -- A member first decided about within the campaign's dates (sent or held out before its start:
    -- not a member of this campaign). A run as of a day (CDP_AS_OF) decides at that day's end, the next
    -- midnight, which belongs to the day: hence after the start and up to the end inclusive.
    select
        first_decisions.*,
        {{ dbt.dateadd('day', 'campaign_definitions.goal_window_days', 'first_decisions.assigned_at') }}
            as window_ends_at
    from first_decisions
    inner join campaign_definitions
        on campaign_definitions.campaign_name = first_decisions.campaign_name
    where (campaign_definitions.starts_at is null or first_decisions.assigned_at > campaign_definitions.starts_at)
        and (campaign_definitions.ends_before is null or first_decisions.assigned_at <= campaign_definitions.ends_before)
),

window_events as (
    -- Events from the member's assignment to the end of the goal window (or the as-of instant).
    select
        members.campaign_name,
        members.profile_id,
        events.occurred_at,
        {{ campaign_goal_filter(campaigns, 'events', 'members') }} as is_goal_event,
        {{ campaign_goal_value(campaigns, 'events', 'members') }} as goal_value,
        coalesce(events.event_type = 'commerce.purchases' and events.commerce_order_status = 'completed', false)
            as is_purchase,
        cast({{ campaign_revenue('events') }} as double) as revenue
    from members
    inner join events
        on events.profile_id = members.profile_id
        and events.occurred_at >= members.assigned_at
        and events.occurred_at < members.window_ends_at
        and events.occurred_at < {{ as_of_timestamp() }}
),

outcomes as (
    select
        campaign_name,
        profile_id,
        min(case when is_goal_event then occurred_at end) as converted_at,
        count(case when is_goal_event then 1 end) as goal_events,
        sum(case when is_goal_event then goal_value else 0 end) as goal_value,
        count(case when is_purchase then 1 end) as purchases,
        sum(case when is_purchase then coalesce(revenue, 0) else 0 end) as revenue
    from window_events
    group by campaign_name, profile_id
),

final as (
    select
        members.campaign_name,
        members.profile_id,
        members.split_name,
        members.is_holdout,
        members.assigned_at,
        members.exposed_at,
        members.first_sync_name,
        members.first_run_id,
        members.window_ends_at,
        members.window_ends_at <= {{ as_of_timestamp() }} as is_window_complete,
        members.is_crossover,
        members.window_ends_at <= {{ as_of_timestamp() }} and not members.is_crossover as is_counted,
        coalesce(outcomes.goal_events, 0) > 0 as is_converted,
        outcomes.converted_at,
        coalesce(outcomes.goal_events, 0) as goal_events,
        cast(coalesce(outcomes.goal_value, 0) as double) as goal_value,
        coalesce(outcomes.purchases, 0) as purchases,
        cast(coalesce(outcomes.revenue, 0) as decimal(18, 2)) as revenue
    from members
    left join outcomes
        on outcomes.campaign_name = members.campaign_name
        and outcomes.profile_id = members.profile_id
)

select * from final
