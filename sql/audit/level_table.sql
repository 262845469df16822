-- name: level_table
-- A temp table of one column's levels and their codes (positions in the sorted list, from 0); the
-- values are bound, never formatted into SQL. Output grain: one row per level.
-- params: $levels
-- identifiers: table
create or replace temp table {{ table }} as
with

final as (
    select unnest($levels) as v, (generate_subscripts($levels, 1) - 1)::integer as code
)

select * from final
