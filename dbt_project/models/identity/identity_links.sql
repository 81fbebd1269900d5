-- Every candidate link with the linking rules' decision: kept, or dropped with the rule and the
-- values it would have joined (identity_link_decisions lists only the dropped ones).
{{ config(materialized='view') }}

with

candidates as (
    select * from {{ ref('identity_candidate_links') }}
),

decisions as (
    select * from {{ ref('identity_link_decisions') }}
),

final as (
    select
        candidates.*,
        decisions.drop_rule is null as is_kept,
        decisions.drop_rule,
        decisions.drop_detail
    from candidates
    left join decisions
        on decisions.left_identity_id = candidates.left_identity_id
        and decisions.right_identity_id = candidates.right_identity_id
)

select * from final
