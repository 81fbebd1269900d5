-- Per campaign and split: members whose goal window is complete, conversions, conversion rate, goal
-- value and revenue per member, and for each treated split the lift over the holdout with 95%
-- confidence intervals; the sample-ratio-mismatch check compares the members each split got with the
-- audience's percentages.
--   absolute lift of the conversion rate: Newcombe's hybrid score interval (Wilson intervals of each rate);
--   relative lift: ratio of the rates minus 1, Katz's log interval;
--   revenue and goal value per member: difference of means, normal interval (Welch's standard error);
--   p-value: two-proportion z-test (pooled); SRM: chi-square goodness of fit, flagged below p 0.001.
{%- set campaigns = campaign_catalogue() %}
{%- set z = z_95() %}

with

members as (
    select * from {{ ref('campaign_members') }}
),

campaign_splits as (
    {{ campaign_split_rows(campaigns) }}
),

assigned as (
    -- Every member of a group (pending windows included) for the sample-ratio check.
    select
        campaign_name,
        split_name,
        count(*) as members_assigned
    from members
    where not is_crossover
    group by campaign_name, split_name
),

counted as (
    select
        campaign_name,
        split_name,
        count(*) as members,
        cast(sum(case when is_converted then 1 else 0 end) as bigint) as conversions,
        avg(goal_value) as goal_value_per_member,
        coalesce(var_samp(goal_value), 0) as goal_value_variance,
        avg(cast(revenue as double)) as revenue_per_member,
        coalesce(var_samp(cast(revenue as double)), 0) as revenue_variance,
        sum(revenue) as revenue
    from members
    where is_counted
    group by campaign_name, split_name
),

pending as (
    select
        campaign_name,
        split_name,
        count(*) as members_pending
    from members
    where not is_window_complete and not is_crossover
    group by campaign_name, split_name
),

splits as (
    select
        campaign_splits.campaign_name,
        campaign_splits.split_name,
        campaign_splits.is_holdout,
        campaign_splits.expected_share,
        coalesce(assigned.members_assigned, 0) as members_assigned,
        coalesce(counted.members, 0) as members,
        coalesce(pending.members_pending, 0) as members_pending,
        coalesce(counted.conversions, 0) as conversions,
        counted.goal_value_per_member,
        counted.goal_value_variance,
        counted.revenue_per_member,
        counted.revenue_variance,
        coalesce(counted.revenue, 0) as revenue
    from campaign_splits
    left join assigned
        on assigned.campaign_name = campaign_splits.campaign_name
        and assigned.split_name = campaign_splits.split_name
    left join counted
        on counted.campaign_name = campaign_splits.campaign_name
        and counted.split_name = campaign_splits.split_name
    left join pending
        on pending.campaign_name = campaign_splits.campaign_name
        and pending.split_name = campaign_splits.split_name
),

holdouts as (
    -- The reference group: every holdout split of the campaign, pooled.
    select
        campaign_name,
        cast(sum(members) as bigint) as members,
        cast(sum(conversions) as bigint) as conversions,
        sum(goal_value_per_member * members) / nullif(sum(members), 0) as goal_value_per_member,
        sum(revenue) / nullif(sum(members), 0) as revenue_per_member
    from splits
    where is_holdout
    group by campaign_name
),

holdout_variances as (
    -- Variances of the pooled holdout, from its members.
    select
        members.campaign_name,
        coalesce(var_samp(members.goal_value), 0) as goal_value_variance,
        coalesce(var_samp(cast(members.revenue as double)), 0) as revenue_variance
    from members
    inner join campaign_splits
        on campaign_splits.campaign_name = members.campaign_name
        and campaign_splits.split_name = members.split_name
    where members.is_counted and campaign_splits.is_holdout
    group by members.campaign_name
),

sample_ratio as (
    select
        campaign_name,
        cast(sum(members_assigned) as bigint) as members_assigned,
        count(*) - 1 as degrees_of_freedom,
        sum(
            power(members_assigned - expected_share * total_assigned, 2) / nullif(expected_share * total_assigned, 0)
        ) as chi_square
    from (
        select
            *,
            sum(members_assigned) over (partition by campaign_name) as total_assigned
        from splits
    ) as with_totals
    group by campaign_name
),

compared as (
    select
        splits.*,
        cast(splits.conversions as double) / nullif(splits.members, 0) as conversion_rate,
        holdouts.members as holdout_members,
        holdouts.conversions as holdout_conversions,
        cast(holdouts.conversions as double) / nullif(holdouts.members, 0) as holdout_conversion_rate,
        holdouts.goal_value_per_member as holdout_goal_value_per_member,
        holdouts.revenue_per_member as holdout_revenue_per_member,
        holdout_variances.goal_value_variance as holdout_goal_value_variance,
        holdout_variances.revenue_variance as holdout_revenue_variance,
        sample_ratio.chi_square,
        sample_ratio.degrees_of_freedom,
        sample_ratio.members_assigned as campaign_members_assigned
    from splits
    left join holdouts
        on holdouts.campaign_name = splits.campaign_name
    left join holdout_variances
        on holdout_variances.campaign_name = splits.campaign_name
    left join sample_ratio
        on sample_ratio.campaign_name = splits.campaign_name
),

bounds as (
    select
        *,
        {{ wilson_bound('conversions', 'members', -1) }} as rate_low,
        {{ wilson_bound('conversions', 'members', 1) }} as rate_high,
        {{ wilson_bound('holdout_conversions', 'holdout_members', -1) }} as holdout_rate_low,
        {{ wilson_bound('holdout_conversions', 'holdout_members', 1) }} as holdout_rate_high,
        cast(conversions + holdout_conversions as double) / nullif(members + holdout_members, 0) as pooled_rate
    from compared
),

lifts as (
    select
        *,
        case when not is_holdout and members > 0 and holdout_members > 0
            then conversion_rate - holdout_conversion_rate end as absolute_lift,
        case when not is_holdout and members > 0 and holdout_members > 0 then
            conversion_rate - holdout_conversion_rate
            - sqrt(power(conversion_rate - rate_low, 2) + power(holdout_rate_high - holdout_conversion_rate, 2))
        end as absolute_lift_low,
        case when not is_holdout and members > 0 and holdout_members > 0 then
            conversion_rate - holdout_conversion_rate
            + sqrt(power(rate_high - conversion_rate, 2) + power(holdout_conversion_rate - holdout_rate_low, 2))
        end as absolute_lift_high,
        case when not is_holdout and holdout_conversions > 0 and members > 0
            then conversion_rate / holdout_conversion_rate - 1 end as relative_lift,
        case when not is_holdout and conversions > 0 and holdout_conversions > 0 then
            sqrt(1.0 / conversions - 1.0 / members + 1.0 / holdout_conversions - 1.0 / holdout_members)
        end as log_ratio_error,
        case when not is_holdout and members > 0 and holdout_members > 0 and pooled_rate > 0 and pooled_rate < 1 then
            (conversion_rate - holdout_conversion_rate)
            / sqrt(pooled_rate * (1 - pooled_rate) * (1.0 / members + 1.0 / holdout_members))
        end as z_statistic,
        case when not is_holdout and members > 1 and holdout_members > 1 then
            sqrt(revenue_variance / members + holdout_revenue_variance / holdout_members)
        end as revenue_lift_error,
        case when not is_holdout and members > 1 and holdout_members > 1 then
            sqrt(goal_value_variance / members + holdout_goal_value_variance / holdout_members)
        end as goal_value_lift_error
    from bounds
),

final as (
    select
        campaign_name,
        split_name,
        is_holdout,
        members_assigned,
        members,
        members_pending,
        conversions,
        conversion_rate,
        rate_low as conversion_rate_low,
        rate_high as conversion_rate_high,
        goal_value_per_member,
        cast(revenue as decimal(18, 2)) as revenue,
        revenue_per_member,
        holdout_members,
        holdout_conversion_rate,
        absolute_lift,
        absolute_lift_low,
        absolute_lift_high,
        relative_lift,
        case when log_ratio_error is not null
            then exp(ln(conversion_rate / holdout_conversion_rate) - {{ z }} * log_ratio_error) - 1 end
            as relative_lift_low,
        case when log_ratio_error is not null
            then exp(ln(conversion_rate / holdout_conversion_rate) + {{ z }} * log_ratio_error) - 1 end
            as relative_lift_high,
        case when z_statistic is not null then 2 * (1 - {{ normal_cdf('abs(z_statistic)') }}) end as p_value,
        coalesce(absolute_lift_low > 0 or absolute_lift_high < 0, false) as is_significant,
        case when not is_holdout then revenue_per_member - holdout_revenue_per_member end as revenue_lift,
        revenue_per_member - holdout_revenue_per_member - {{ z }} * revenue_lift_error as revenue_lift_low,
        revenue_per_member - holdout_revenue_per_member + {{ z }} * revenue_lift_error as revenue_lift_high,
        case when not is_holdout and holdout_revenue_per_member > 0
            then revenue_per_member / holdout_revenue_per_member - 1 end as relative_revenue_lift,
        case when not is_holdout then goal_value_per_member - holdout_goal_value_per_member end as goal_value_lift,
        goal_value_per_member - holdout_goal_value_per_member - {{ z }} * goal_value_lift_error as goal_value_lift_low,
        goal_value_per_member - holdout_goal_value_per_member + {{ z }} * goal_value_lift_error as goal_value_lift_high,
        expected_share,
        cast(members_assigned as double) / nullif(campaign_members_assigned, 0) as observed_share,
        {{ chi_square_p_value('chi_square', 'degrees_of_freedom') }} as sample_ratio_p_value,
        coalesce({{ chi_square_p_value('chi_square', 'degrees_of_freedom') }} < 0.001, false) as has_sample_ratio_mismatch
    from lifts
)

select * from final
