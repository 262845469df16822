-- name: dense_index
-- A temp table giving each distinct value of `key` in `source` a dense index (0, 1, ...) in sorted
-- order, e.g. customers, cells, fixed effects. Output grain: one row per distinct key value.
-- identifiers: table, source, key, index
create or replace temp table {{ table }} as
with

distinct_keys as (
    select distinct {{ key }} from {{ source }}
),

final as (
    select {{ key }}, (row_number() over (order by {{ key }}) - 1)::integer as {{ index }}
    from distinct_keys
)

select * from final
