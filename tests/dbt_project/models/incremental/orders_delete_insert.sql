{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='order_id',
          dist='customer_id', sort='updated_at') }}

select order_id, customer_id, order_date, status, updated_at
from {{ ref('stg_orders') }}
{% if is_incremental() %}
where updated_at > (select max(updated_at) from {{ this }})
{% endif %}
