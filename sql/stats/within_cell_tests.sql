-- name: within_cell_tests
-- Compares a measurement y between a tested group and its reference inside cells (product x day x
-- controls), so that product mix and legitimate price factors cannot show up as a difference.
-- Input: temp table `measurements` (dim_id, segment_value, cell_key, customer_id, group_value, y)
--        temp table `audit_dims` (dim_id, reference); a null reference means "all other customers".
-- Phase 1 of 2: cell-level statistics over all customers (cheap, one aggregate pass).
-- Output grain: one row per dim_id x segment_value x cell x tested group with n0 > 0, holding the
-- counts and sums needed to demean each line within its cell (sql/stats/within_cell_contrast.sql).
with

m as (
    select * from measurements
),

dims as (
    select * from audit_dims
),

cell_group as (
    select dim_id, segment_value, cell_key, group_value, count(*) as n, sum(y) as sy
    from m
    group by all
),

cell_total as (
    select dim_id, segment_value, cell_key, sum(n) as n, sum(sy) as sy
    from cell_group
    group by all
),

-- one row per cell x tested group, with its comparison set's size and sum in that cell
tests as (
    select
        g.dim_id, g.segment_value, g.cell_key, g.group_value as tested, d.reference,
        g.n as n1, g.sy as sy1,
        case when d.reference is null then t.n - g.n else coalesce(r.n, 0) end as n0,
        case when d.reference is null then t.sy - g.sy else coalesce(r.sy, 0) end as sy0
    from cell_group as g
    join dims as d using (dim_id)
    join cell_total as t using (dim_id, segment_value, cell_key)
    left join cell_group as r
        on r.dim_id = g.dim_id and r.segment_value = g.segment_value
        and r.cell_key = g.cell_key and r.group_value = d.reference
    where d.reference is null or g.group_value <> d.reference
),

final as (
    select * from tests where n0 > 0
)

select * from final
