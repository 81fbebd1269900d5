{#- The trait catalogue: every computed trait of profile_traits, compiled to SQL by macros/traits.sql.
    Add a trait by adding an entry here (and a unit test in models/profiles/_profile_traits.yml):
      aggregate: count | sum | avg | min | max | distinct_count | days_since_last | first | last | most_frequent
                 of: column; from: events (profile_events) | purchase_items (profile_purchase_items);
                 where: {column: value or [values]}; window_days: N (lookback from the as-of instant);
                 default: value when nothing matched; data_type: SQL type to cast to
      expression: SQL over profiles.* and the aggregates above (a derived trait)
      score: {of: trait, buckets: 5, higher_is_better: true, among: SQL condition} (quantile score; ties share)
    Purchases are completed web-shop orders and store transactions.
    YAML in a macro rather than model meta: dbt unit tests compile the model as another node and
    would not see the model's meta. -#}
{% macro trait_catalogue() -%}
{%- set catalogue -%}
x-purchases: &purchases {event_type: commerce.purchases, commerce_order_status: completed}
x-engagement: &engagement
  event_type: [commerce.purchases, commerce.productViews, commerce.productListAdds, web.webpagedetails.pageViews,
               application.launch, userAccount.login, directMarketing.emailOpened, directMarketing.emailClicked,
               directMarketing.smsClicked]
traits:
- name: lifetime_orders
  description: Completed purchases, all time.
  aggregate: count
  where: *purchases
  default: 0
- name: lifetime_revenue
  aggregate: sum
  of: commerce_order_price_total
  where: *purchases
  default: 0
  data_type: decimal(18, 2)
- name: orders_90d
  aggregate: count
  where: *purchases
  window_days: 90
  default: 0
- name: revenue_90d
  aggregate: sum
  of: commerce_order_price_total
  where: *purchases
  window_days: 90
  default: 0
  data_type: decimal(18, 2)
- name: first_purchase_at
  aggregate: min
  of: occurred_at
  where: *purchases
- name: last_purchase_at
  aggregate: max
  of: occurred_at
  where: *purchases
- name: days_since_last_purchase
  aggregate: days_since_last
  where: *purchases
- name: favourite_category
  description: The product category bought most often (order lines of completed web-shop orders).
  aggregate: most_frequent
  of: product_category
  from: purchase_items
  where: {commerce_order_status: completed}
- name: preferred_channel
  description: The channel with the most engagement (purchases, visits, opens, clicks) in 180 days.
  aggregate: most_frequent
  of: channel
  where: *engagement
  window_days: 180
- name: preferred_send_hour
  description: The hour of day (UTC) the profile opens email most often.
  aggregate: most_frequent
  of: occurred_hour
  where: {event_type: directMarketing.emailOpened}
  data_type: integer
- name: emails_received
  description: Email campaigns sent to the profile.
  aggregate: distinct_count
  of: marketing_campaign_id
  where: {event_type: directMarketing.emailSent}
- name: emails_opened
  aggregate: distinct_count
  of: marketing_campaign_id
  where: {event_type: directMarketing.emailOpened}
- name: emails_clicked
  aggregate: distinct_count
  of: marketing_campaign_id
  where: {event_type: directMarketing.emailClicked}
- name: average_order_value
  expression: lifetime_revenue / nullif(lifetime_orders, 0)
  data_type: decimal(18, 2)
- name: email_open_rate
  description: Share of the email campaigns received that were opened.
  expression: emails_opened * 1.0 / nullif(emails_received, 0)
  data_type: double
- name: email_click_rate
  expression: emails_clicked * 1.0 / nullif(emails_received, 0)
  data_type: double
- name: loyalty_tier
  expression: profiles.loyalty_tier
- name: loyalty_points
  expression: profiles.loyalty_points
- name: rfm_recency_score
  description: 1..5 among buyers; 5 = bought most recently.
  score: {of: days_since_last_purchase, higher_is_better: false, among: lifetime_orders > 0}
- name: rfm_frequency_score
  score: {of: lifetime_orders, among: lifetime_orders > 0}
- name: rfm_monetary_score
  score: {of: lifetime_revenue, among: lifetime_orders > 0}
{%- endset -%}
{{ return(fromyaml(catalogue)['traits']) }}
{%- endmacro %}
