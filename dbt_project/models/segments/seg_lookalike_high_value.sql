-- Look-alikes of seg_high_value: the non-members at least as seed-like as var lookalike_min_similarity of
-- the held-out seed members (cdp/predictive/lookalike.py; the reach curve gives the size per threshold).
-- Empty while the seed is too small to learn from.
with

lookalikes as (
    select * from {{ source('predictions', 'lookalike_high_value') }}
),

profiles as (
    select * from {{ ref('profiles') }}
),

final as (
    select
        {{ audience_columns('profiles') }},
        cast(lookalikes.similarity as double) as similarity,
        cast(lookalikes.similarity_rank as bigint) as similarity_rank
    from lookalikes
    inner join profiles
        on profiles.profile_id = lookalikes.profile_id
    where lookalikes.similarity >= {{ var('lookalike_min_similarity') }}
)

select * from final
