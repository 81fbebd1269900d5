{#- Statistics for campaign lift, in portable SQL (no engine has a normal CDF built in). -#}

{#- The two-sided 95% quantile of the standard normal distribution. -#}
{% macro z_95() -%}1.959963984540054{%- endmacro %}


{#- The standard normal CDF of a SQL expression, via erf (Abramowitz and Stegun 7.1.26: absolute error
    below 1.5e-7, plenty for p-values reported to 4 digits). -#}
{% macro normal_cdf(x) -%}
    {{ return(adapter.dispatch('normal_cdf', 'cdp')(x)) }}
{%- endmacro %}

{% macro default__normal_cdf(x) -%}
    {%- set t = '(1.0 / (1.0 + 0.3275911 * abs(' ~ x ~ ') / sqrt(2.0)))' -%}
    (0.5 * (1.0 + sign({{ x }}) * (1.0 - (
        0.254829592 * {{ t }} - 0.284496736 * power({{ t }}, 2) + 1.421413741 * power({{ t }}, 3)
        - 1.453152027 * power({{ t }}, 4) + 1.061405429 * power({{ t }}, 5)
    ) * exp(-({{ x }}) * ({{ x }}) / 2.0))))
{%- endmacro %}


{#- Wilson score bound of a proportion (successes x of n), `side` -1 for the lower, +1 for the upper;
    null when n is 0. -#}
{% macro wilson_bound(x, n, side) -%}
    case when {{ n }} > 0 then (
        (cast({{ x }} as double) / {{ n }} + {{ z_95() }} * {{ z_95() }} / (2.0 * {{ n }})
         {{ '-' if side < 0 else '+' }} {{ z_95() }} * sqrt(
             (cast({{ x }} as double) / {{ n }}) * (1 - cast({{ x }} as double) / {{ n }}) / {{ n }}
             + {{ z_95() }} * {{ z_95() }} / (4.0 * {{ n }} * {{ n }})))
        / (1 + {{ z_95() }} * {{ z_95() }} / {{ n }})
    ) end
{%- endmacro %}


{#- Upper-tail probability of a chi-square statistic with `df` degrees of freedom: exact for df = 1
    (through the normal CDF), the Wilson-Hilferty approximation above (within about 0.001 of the exact
    tail from df 2 on: enough for a sample-ratio-mismatch flag at 0.001). -#}
{% macro chi_square_p_value(statistic, df) -%}
    case
        when {{ df }} < 1 or {{ statistic }} is null then null
        when {{ df }} = 1 then 2 * (1 - {{ normal_cdf('sqrt(' ~ statistic ~ ')') }})
        else 1 - {{ normal_cdf(
            '((power(' ~ statistic ~ ' / ' ~ df ~ ', 1.0 / 3) - (1 - 2.0 / (9 * ' ~ df ~ '))) / sqrt(2.0 / (9 * ' ~ df ~ ')))'
        ) }}
    end
{%- endmacro %}
