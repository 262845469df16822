-- name: segment_counts
-- Whether a segment column is nested in the cells and in the fixed effects (every cell has one value of
-- it): the number of distinct (cell, value) and (fixed effect, value) pairs of the coded lines, to be
-- compared with the numbers of cells and fixed effects.
-- Output grain: one row.
-- identifiers: source, cell, fixed_effect, segment
with

final as (
    select
        count(distinct ({{ cell }}, {{ segment }})) as cells,
        count(distinct ({{ fixed_effect }}, {{ segment }})) as fixed_effects
    from {{ source }}
)

select * from final
