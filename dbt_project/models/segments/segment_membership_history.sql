-- Membership per dbt run, audience and profile, with Adobe's statuses: realized (entered in this run),
-- existing (still a member), exited (left in this run; one row, then none until the profile
-- re-enters). Append-only: every run adds its rows, and a full refresh never rebuilds it.
{{
    config(
        materialized='incremental',
        full_refresh=false,
        on_schema_change='fail',
    )
}}

with

memberships as (
    select * from {{ ref('segment_memberships') }}
),

{% if is_incremental() %}
history as (
    select * from {{ this }}
    where run_id <> '{{ invocation_id }}'
),

previous_run as (
    select max(evaluated_at) as evaluated_at from history
),

previous_members as (
    select
        history.segment_name,
        history.profile_id,
        history.entered_at
    from history
    inner join previous_run
        on previous_run.evaluated_at = history.evaluated_at
    where history.membership_status in ('realized', 'existing')
),
{% else %}
previous_members as (
    select
        cast(null as varchar) as segment_name,
        cast(null as varchar) as profile_id,
        cast(null as timestamp) as entered_at
    where 1 = 0
),
{% endif %}

this_run as (
    select
        cast('{{ invocation_id }}' as varchar) as run_id,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp) as evaluated_at
),

current_and_previous as (
    select
        coalesce(memberships.segment_name, previous_members.segment_name) as segment_name,
        coalesce(memberships.profile_id, previous_members.profile_id) as profile_id,
        memberships.profile_id is not null as is_member,
        previous_members.profile_id is not null as was_member,
        previous_members.entered_at as previously_entered_at
    from memberships
    full outer join previous_members
        on previous_members.segment_name = memberships.segment_name
        and previous_members.profile_id = memberships.profile_id
),

final as (
    select
        this_run.run_id,
        this_run.evaluated_at,
        current_and_previous.segment_name,
        current_and_previous.profile_id,
        case
            when not current_and_previous.was_member then 'realized'
            when current_and_previous.is_member then 'existing'
            else 'exited'
        end as membership_status,
        coalesce(current_and_previous.previously_entered_at, this_run.evaluated_at) as entered_at,
        case when not current_and_previous.is_member then this_run.evaluated_at end as exited_at
    from current_and_previous
    cross join this_run
)

select * from final
