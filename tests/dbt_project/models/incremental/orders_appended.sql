{{ config(materialized='incremental', incremental_strategy='append') }}

-- New orders only: an order once loaded is never touched again.
select order_id, customer_id, order_date, status
from {{ ref('stg_orders') }}
{% if is_incremental() %}
where order_id > (select max(order_id) from {{ this }})
{% endif %}
