with

source as (
    select * from {{ source('pos', 'transactions') }}
),

latest_versions as (
    {{ deduplicate('source', 'transaction_id', '_loaded_at desc, _source_file desc, _row_number desc') }}
),

renamed as (
    select
        transaction_id,
        store_id,
        nullif(trim(loyalty_id), '') as loyalty_id,
        transacted_at,
        cast(total_amount as decimal(18, 2)) as transaction_total,
        upper(currency) as currency_code,
        lower(nullif(trim(payment_method), '')) as payment_method,
        _loaded_at as loaded_at
    from latest_versions
)

select * from renamed
