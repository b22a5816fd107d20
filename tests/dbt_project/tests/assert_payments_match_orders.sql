-- Every dollar paid shows up on an order: returns the orders whose amount does not add up.
select o.order_id, o.amount, p.total
from {{ ref('orders') }} o
join (select order_id, sum(amount) as total from {{ ref('stg_payments') }} group by 1) p using (order_id)
where o.amount <> p.total
