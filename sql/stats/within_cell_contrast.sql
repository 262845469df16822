-- name: within_cell_contrast
-- Compares a measurement y between a tested group and its reference inside cells (product x day x
-- controls), so that product mix and legitimate price factors cannot show up as a difference.
-- Input: temp table `measurements` (dim_id, segment_value, cell_key, customer_id, group_value, y)
--        temp table `audit_dims` (dim_id, reference); a null reference means "all other customers".
-- Output grain: one row per dim_id x segment_value x tested group, holding per-customer sums for
-- the fixed-effects estimate and its customer-clustered (CR1) variance (see audits/stats.py).
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

-- each line once per test it takes part in, demeaned within its cell (Frisch-Waugh-Lovell)
pairs as (
    select
        t.dim_id, t.segment_value, t.tested, m.customer_id,
        (m.group_value = t.tested)::int as g,
        (m.group_value = t.tested)::double - t.n1 / (t.n1 + t.n0) as x,
        m.y - (t.sy1 + t.sy0) / (t.n1 + t.n0) as y_demeaned,
        m.y
    from tests as t
    join m using (dim_id, segment_value, cell_key)
    where t.n0 > 0
      and (m.group_value = t.tested or t.reference is null or m.group_value = t.reference)
),

per_customer as (
    select
        dim_id, segment_value, tested, customer_id,
        max(g) as in_group,
        sum(x * y_demeaned) as a,
        sum(x * x) as b,
        coalesce(sum(-x * y) filter (where g = 0), 0) as v,
        coalesce(sum(-x) filter (where g = 0), 0) as w
    from pairs
    group by all
),

final as (
    select
        dim_id, segment_value, tested as group_value,
        count(*) filter (where in_group = 1) as n_customers_group,
        count(*) filter (where in_group = 0) as n_customers_reference,
        count(*) as n_clusters,
        sum(b) as sxx, sum(a) as sxy, sum(a * a) as saa, sum(a * b) as sab, sum(b * b) as sbb,
        sum(v) as ref_sum, sum(w) as ref_weight,
        sum(v * v) as ref_vv, sum(v * w) as ref_vw, sum(w * w) as ref_ww
    from per_customer
    group by all
)

select * from final
order by dim_id, segment_value, group_value
