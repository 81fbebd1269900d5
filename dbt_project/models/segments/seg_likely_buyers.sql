-- Likely buyers: the top decile of the 30-day purchase propensity among known profiles who agreed
-- to marketing email; a predictive trait used like any other.
with

predictions as (
    select * from {{ ref('profile_predictions') }}
),

profiles as (
    select * from {{ ref('profiles') }}
),

email_consent as (
    select profile_id from {{ ref('profile_consents') }}
    where consent_purpose = 'marketing_email' and consent_value = 'y'
),

final as (
    select
        {{ audience_columns('profiles') }},
        predictions.purchase_probability_30d,
        predictions.purchase_percentile_30d
    from predictions
    inner join profiles
        on profiles.profile_id = predictions.profile_id
    inner join email_consent
        on email_consent.profile_id = predictions.profile_id
    where profiles.is_known
        and predictions.purchase_percentile_30d >= 90
)

select * from final
