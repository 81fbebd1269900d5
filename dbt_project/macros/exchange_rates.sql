{#- Money in one reporting currency (var reporting_currency, default USD). Seed exchange_rates holds
    dated reference rates as units of each currency per euro (the ECB's quotation); the rate from a
    currency to the reporting currency on a day is the cross rate reporting_per_eur / units_per_eur of
    the latest rate date on or before that day (rates are published on business days only). An amount
    already in the reporting currency converts at 1 on any day; one with no rate on or before its day
    stays unconverted (null), and the test assert_purchase_amounts_are_converted warns about it. -#}

{#- The rates as a query: currency_code, valid_from (its rate date), valid_until (the next rate date of
    that currency, null for the latest) and rate_to_reporting. Join amounts through reporting_rates_by_day. -#}
{% macro reporting_exchange_rates() -%}
    {%- set reporting = var('reporting_currency') | upper -%}
    {%- if not modules.re.match('^[A-Z]{3}$', reporting) -%}
        {{ exceptions.raise_compiler_error(
            "var reporting_currency (dbt_project.yml) must be an ISO 4217 code such as USD or EUR; found "
            ~ var('reporting_currency')) }}
    {%- endif -%}
    select
        per_eur.currency_code,
        per_eur.rate_date as valid_from,
        lead(per_eur.rate_date) over (partition by per_eur.currency_code order by per_eur.rate_date) as valid_until,
        reporting_per_eur.units_per_eur / per_eur.units_per_eur as rate_to_reporting
    from (
        select cast(rate_date as date) as rate_date, upper(currency_code) as currency_code, cast(units_per_eur as double) as units_per_eur
        from {{ ref('exchange_rates') }}
        union all
        select distinct cast(rate_date as date) as rate_date, 'EUR' as currency_code, 1.0 as units_per_eur
        from {{ ref('exchange_rates') }}
    ) as per_eur
    inner join (
        select cast(rate_date as date) as rate_date, cast(units_per_eur as double) as units_per_eur
        from {{ ref('exchange_rates') }}
        where upper(currency_code) = '{{ reporting }}'
        union all
        select distinct cast(rate_date as date) as rate_date, 1.0 as units_per_eur
        from {{ ref('exchange_rates') }}
        where '{{ reporting }}' = 'EUR'
    ) as reporting_per_eur
        on reporting_per_eur.rate_date = per_eur.rate_date
{%- endmacro %}


{#- The rate of each (currency, day) that `amounts` (a relation or CTE name) holds an amount in: currency_code
    (upper case), rate_day and rate_to_reporting (null when no rate is on or before that day). The range join
    to the rates runs over the few distinct pairs, not over every amount: a join of each amount to every rate
    of its currency (thousands) cost most of a build at scale; callers join the amounts to it on equality. -#}
{% macro reporting_rates_by_day(amounts, currency_code, occurred_at, amount) -%}
    select
        amount_days.currency_code,
        amount_days.rate_day,
        rates.rate_to_reporting
    from (
        select distinct
            upper({{ currency_code }}) as currency_code,
            cast({{ occurred_at }} as date) as rate_day
        from {{ amounts }}
        where {{ amount }} is not null
    ) as amount_days
    left join ({{ reporting_exchange_rates() }}) as rates
        on
            rates.currency_code = amount_days.currency_code
            and amount_days.rate_day >= rates.valid_from
            and (rates.valid_until is null or amount_days.rate_day < rates.valid_until)
{%- endmacro %}


{#- The join condition of an amount's currency and day to reporting_rates_by_day() aliased `rates`. -#}
{% macro exchange_rate_applies(rates, currency_code, occurred_at) -%}
    {{ rates }}.currency_code = upper({{ currency_code }})
    and {{ rates }}.rate_day = cast({{ occurred_at }} as date)
{%- endmacro %}


{#- The factor from an amount's currency to the reporting currency, given the joined rate. -#}
{% macro rate_to_reporting(rates, currency_code) -%}
    case when upper({{ currency_code }}) = '{{ var("reporting_currency") | upper }}' then 1.0 else {{ rates }}.rate_to_reporting end
{%- endmacro %}


{#- A fingerprint of what conversions depend on besides the amounts: the reporting currency and every row
    of seed exchange_rates (an incremental model converting amounts takes every row again when it changes). -#}
{% macro exchange_rates_fingerprint() -%}
    select '{{ var("reporting_currency") | upper }}:' || ({{ rows_fingerprint(
        'select rate_date, currency_code, units_per_eur from ' ~ ref('exchange_rates'),
        ['rate_date', 'currency_code', 'units_per_eur']) }})
{%- endmacro %}
