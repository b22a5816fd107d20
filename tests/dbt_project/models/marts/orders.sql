{{ config(dist='order_id', sort=['order_date', 'order_id'], sort_type='compound') }}

select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.status,
    coalesce(p.credit_card_amount, 0) as credit_card_amount,
    coalesce(p.coupon_amount, 0) as coupon_amount,
    coalesce(p.total_amount, 0) as amount
from {{ ref('stg_orders') }} o
left join {{ ref('order_payments') }} p using (order_id)
