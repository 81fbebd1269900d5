-- Computed traits per profile, compiled from the trait catalogue (the columns of _profile_traits.yml
-- with meta.trait) by the macros in macros/traits.sql: aggregates over the profile's events and purchased items, traits
-- derived from them, quantile scores; then the named RFM group of the recency and frequency scores.
{%- set traits = trait_definitions() %}

with

profiles as (
    select * from {{ ref('profiles') }}
),

events as (
    select
        profile_id,
        event_type,
        channel,
        occurred_at,
        extract(hour from occurred_at) as occurred_hour,
        commerce_order_status,
        commerce_order_price_total_reporting,
        marketing_campaign_id
        {%- for measure in trait_measures(traits) %},
        {{ json_number('event_measures', measure) }} as measure__{{ measure }}
        {%- endfor %}
    from {{ ref('profile_events') }}
),

purchase_items as (
    select * from {{ ref('profile_purchase_items') }}
),

rfm_groups as (
    select * from {{ ref('rfm_groups') }}
),

{{ trait_aggregate_ctes(traits) }}

aggregated as (
    select
        profiles.profile_id
        {{- trait_columns(traits, 'aggregate') }}
    from profiles
    {{- trait_aggregate_joins(traits) }}
),

derived as (
    select
        aggregated.*
        {{- trait_columns(traits, 'derived') }}
    from aggregated
    inner join profiles
        on profiles.profile_id = aggregated.profile_id
),

{{ trait_score_ctes(traits) }}

scored as (
    select
        derived.*
        {{- trait_columns(traits, 'score') }}
    from derived
    {{- trait_score_joins(traits) }}
),

final as (
    select
        scored.*,
        rfm_groups.rfm_group
    from scored
    left join rfm_groups
        on rfm_groups.recency_score = scored.rfm_recency_score
        and rfm_groups.frequency_score = scored.rfm_frequency_score
)

select * from final
