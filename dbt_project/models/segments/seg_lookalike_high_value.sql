-- Look-alikes of seg_high_value: the non-members most similar to its members, as many as the seed
-- audience has (or var lookalike_size).
with

seed as (
    select count(*) as seed_size from {{ ref('seg_high_value') }}
),

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
    cross join seed
    where lookalikes.similarity_rank <= {{ var('lookalike_size', 'seed.seed_size') }}
)

select * from final
