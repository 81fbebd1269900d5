-- Predictive traits per known profile, as scored by the latest trained models (cdp/predictive):
-- usable in audiences like any other trait. A score that could not be computed is null, and
-- null_reasons (JSON object: column -> why) says why.
with

scores as (
    select * from {{ source('predictions', 'profile_scores') }}
),

final as (
    select
        profile_id,
        cast(scored_as_of as timestamp) as scored_as_of,
        cast(p_alive as double) as p_alive,
        cast(expected_purchases_90d as double) as expected_purchases_90d,
        cast(repurchase_probability_90d as double) as repurchase_probability_90d,
        cast(predicted_clv_90d as decimal(18, 2)) as predicted_clv_90d,
        churn_risk_grade,
        clv_model,
        cast(purchase_probability as double) as purchase_probability_30d,
        cast(purchase_percentile as integer) as purchase_percentile_30d,
        purchase_top_factors as purchase_top_factors_30d,
        cast(churn_probability as double) as churn_probability_90d,
        cast(churn_percentile as integer) as churn_percentile_90d,
        churn_top_factors as churn_top_factors_90d,
        null_reasons
    from scores
)

select * from final
