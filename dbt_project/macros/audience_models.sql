{#- generated from audiences/*.yml and models/segments/**/seg_*.sql by `cdp segments compile`; do not edit.
    Every audience: segment_memberships, segment_membership_history and segment_sizes collect them. -#}
{% macro audience_models() -%}
    {{ return([
        {'name': 'at_risk', 'model': 'seg_at_risk', 'has_splits': false},
        {'name': 'dress_campaign', 'model': 'seg_dress_campaign', 'has_splits': true},
        {'name': 'email_offer_test', 'model': 'seg_email_offer_test', 'has_splits': true},
        {'name': 'high_value', 'model': 'seg_high_value', 'has_splits': false},
        {'name': 'high_value_sms', 'model': 'seg_high_value_sms', 'has_splits': false},
        {'name': 'lapsed_buyers', 'model': 'seg_lapsed_buyers', 'has_splits': false},
        {'name': 'likely_buyers', 'model': 'seg_likely_buyers', 'has_splits': false},
        {'name': 'lookalike_high_value', 'model': 'seg_lookalike_high_value', 'has_splits': false},
        {'name': 'new_email_subscribers', 'model': 'seg_new_email_subscribers', 'has_splits': false},
        {'name': 'red_dress_buyers', 'model': 'seg_red_dress_buyers', 'has_splits': false},
        {'name': 'rfm_champions', 'model': 'seg_rfm_champions', 'has_splits': false},
        {'name': 'sms_reminder_test', 'model': 'seg_sms_reminder_test', 'has_splits': true},
        {'name': 'top_customers', 'model': 'seg_top_customers', 'has_splits': false},
    ]) }}
{%- endmacro %}
