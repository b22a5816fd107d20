{{ config(materialized='view', bind=False) }}

-- A late-binding view: it outlives dbt's rebuilds of the customers table under it.
select customer_id, customer_lifetime_value
from {{ ref('customers') }}
where customer_lifetime_value is not null
