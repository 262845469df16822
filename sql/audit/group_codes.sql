-- name: group_codes
-- The codes one grouping takes in the coded lines (coded_lines.sql), sorted: the groups with lines (a
-- missing value, -1, is none). An intersection's code is the mixed-radix number of its columns' codes.
-- Output grain: one row per code found.
-- identifiers: source, key
with

found as (
    select distinct {{ key }} as code
    from {{ source }}
    where {{ key }} >= 0
),

final as (
    select code from found
)

select * from final
order by code
