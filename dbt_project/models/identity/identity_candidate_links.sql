-- Every link the linking rules consider: identity_edges (identifiers that share a source record)
-- and, when probabilistic matching is on, one link per pair of identifiers that matched records join
-- (the records' anchors, or their primary identifiers for a duplicate record; the best-scoring match
-- is its example). Pairs the household rules rejected are not links (identity_probabilistic_links
-- keeps them, with the rule, for `cdp profile explain`).
{{ config(materialized='view') }}

with

edges as (
    select * from {{ ref('identity_edges') }}
),

matches as (
    select * from {{ ref('identity_probabilistic_links') }}
),

identifiers as (
    select * from {{ ref('identity_identifiers') }}
),

-- Each match as a pair of anchors in one orientation (the smaller key left).
oriented_matches as (
    select
        least(left_identity_key, right_identity_key) as left_identity_key,
        greatest(left_identity_key, right_identity_key) as right_identity_key,
        left_record_id,
        right_record_id,
        match_probability,
        link_type,
        first_seen_at,
        last_seen_at
    from matches
    where decision = 'match'
),

ranked_matches as (
    select
        *,
        count(*) over anchor_pair as record_count,
        min(first_seen_at) over anchor_pair as pair_first_seen_at,
        max(last_seen_at) over anchor_pair as pair_last_seen_at,
        row_number() over (anchor_pair order by match_probability desc, left_record_id, right_record_id) as match_rank
    from oriented_matches
    window anchor_pair as (partition by left_identity_key, right_identity_key, link_type)
),

probabilistic as (
    select
        ranked_matches.left_identity_key,
        ranked_matches.right_identity_key,
        left_identifiers.identity_id as left_identity_id,
        right_identifiers.identity_id as right_identity_id,
        ranked_matches.record_count,
        ranked_matches.left_record_id as example_record_id,
        ranked_matches.pair_first_seen_at as first_seen_at,
        ranked_matches.pair_last_seen_at as last_seen_at,
        ranked_matches.link_type,
        ranked_matches.right_record_id as matched_record_id,
        ranked_matches.match_probability
    from ranked_matches
    inner join identifiers as left_identifiers
        on left_identifiers.identity_key = ranked_matches.left_identity_key
    inner join identifiers as right_identifiers
        on right_identifiers.identity_key = ranked_matches.right_identity_key
    where ranked_matches.match_rank = 1
),

deterministic as (
    select
        left_identity_key,
        right_identity_key,
        left_identity_id,
        right_identity_id,
        record_count,
        example_record_id,
        first_seen_at,
        last_seen_at,
        'deterministic' as link_type,
        cast(null as varchar) as matched_record_id,
        cast(null as double) as match_probability
    from edges
),

final as (
    select * from deterministic
    union all
    select * from probabilistic
)

select * from final
