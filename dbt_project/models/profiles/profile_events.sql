-- The unified activity timeline: every experience event attributed to a profile. Purchase amounts keep
-- their original value and currency and are also converted to the reporting currency (var
-- reporting_currency) at the reference rate of their day (macros/exchange_rates.sql).
-- Incremental (issue 20), equal to a full refresh: a build replaces (delete+insert on event_id) the events
-- loaded since its last build (the high-water mark of xdm_experience_events.loaded_at it stored), the
-- events whose record now belongs to another profile (identities merged or split) and those resolved for
-- the first time; a post-hook deletes the events whose record is no longer resolved (erased, rejected, or
-- left with only a hub identifier). Changed rates (seed exchange_rates) or reporting currency, or a table
-- lacking a column, take every event again.
{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
    post_hook=[
        "{{ delete_rows_not_in(this, 'event_id', profile_events_resolved_record_ids(), 'record_id') }}",
        "{{ store_incremental_state('profile_events', 'select max(loaded_at) from ' ~ ref('xdm_experience_events'), profile_events_inputs_fingerprint()) }}",
    ],
) }}

{%- set state = incremental_state('profile_events') if is_incremental() else none %}
{%- set takes_changes = state is not none
    and state.high_water_mark is not none
    and state.inputs_fingerprint == query_value(profile_events_inputs_fingerprint())
    and xdm_adds_to_table(model.columns.keys() | list) %}

with

events as (
    select * from {{ ref('xdm_experience_events') }}
),

record_profiles as (
    select * from {{ ref('record_profiles') }}
),

{% if takes_changes %}
built as (
    select event_id, profile_id from {{ this }}
),
{% endif %}

resolved_events as (
    -- Every resolved event in a full build; in an incremental one, those loaded since the last build,
    -- resolved for the first time, or now of another profile.
    select
        events.*,
        record_profiles.profile_id
    from events
    inner join record_profiles
        on record_profiles.record_id = events.record_id
    {%- if takes_changes %}
    left join built
        on built.event_id = events.record_id
    where
        events.loaded_at > cast('{{ state.high_water_mark }}' as {{ dbt.type_timestamp() }})
        or built.event_id is null
        or built.profile_id <> record_profiles.profile_id
    {%- endif %}
),

exchange_rates as (
    {{ reporting_rates_by_day('resolved_events', 'commerce_order_currency_code', 'occurred_at', 'commerce_order_price_total') }}
),

final as (
    select
        resolved_events.record_id as event_id,
        resolved_events.profile_id,
        resolved_events.event_type,
        resolved_events.occurred_at,
        resolved_events.channel,
        resolved_events.source_table,
        resolved_events.commerce_order_purchase_id,
        resolved_events.commerce_order_price_total,
        resolved_events.commerce_order_currency_code,
        cast(
            resolved_events.commerce_order_price_total
            * {{ rate_to_reporting('exchange_rates', 'resolved_events.commerce_order_currency_code') }} as decimal(18, 2)
        ) as commerce_order_price_total_reporting,
        case
            when resolved_events.commerce_order_price_total is not null
                then {{ rate_to_reporting('exchange_rates', 'resolved_events.commerce_order_currency_code') }}
        end as exchange_rate_to_reporting,
        resolved_events.commerce_order_status,
        resolved_events.marketing_campaign_id,
        resolved_events.event_measures
    from resolved_events
    -- Equality conditions only (the rates hold only the days of amounts; an event without one uses no
    -- rate): a condition on one side's column made DuckDB join by nested loop (130 s of CPU at 100k people).
    left join exchange_rates
        on {{ exchange_rate_applies('exchange_rates', 'resolved_events.commerce_order_currency_code', 'resolved_events.occurred_at') }}
)

select * from final
