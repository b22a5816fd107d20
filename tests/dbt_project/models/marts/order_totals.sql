{{ config(
    materialized='materialized_view',
    dist='customer_id',
    sort=['customer_id'],
    backup=False,
    auto_refresh=var('order_totals_auto_refresh', false),
    grants={'select': ['user:' ~ env_var('DBT_READER_USER')]}
) }}

-- A materialized view over the raw seeds (Redshift's read base tables): each run after the first
-- refreshes it, or alters it when auto_refresh changes.
select o.user_id as customer_id, count(distinct o.id) as number_of_orders, sum(p.amount) as amount_cents
from {{ ref('raw_orders') }} o
join {{ ref('raw_payments') }} p on p.order_id = o.id
group by o.user_id
