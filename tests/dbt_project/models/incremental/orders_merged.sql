{{ config(materialized='incremental', incremental_strategy='merge', unique_key='order_id',
          merge_update_columns=['status', 'updated_at'],
          grants={'select': ['user:' ~ env_var('DBT_READER_USER'), 'group:' ~ env_var('DBT_READER_GROUP')]}) }}

select order_id, customer_id, order_date, status, updated_at, current_timestamp::timestamp as loaded_at
from {{ ref('stg_orders') }}
{% if is_incremental() %}
where updated_at > (select max(updated_at) from {{ this }})
{% endif %}
