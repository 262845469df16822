-- name: within_cell_contrast
-- Phase 2 of 2: per-customer sums for the fixed-effects estimate of a group-minus-reference
-- difference and its customer-clustered variance (see audits/stats.py): plain (CR1) sums, and sums
-- whose residuals are scaled by sqrt(n/(n-1)) for the cell's n lines, which undoes the shrinkage
-- demeaning within small cells inflicts on residuals (the cell mean's leverage 1/n, as in HC2).
-- Input: temp table `measurements` (dim_id, segment_value, cell_key, customer_id, group_value, y)
--        and temp table `contrast_tests` (the output of sql/stats/within_cell_tests.sql).
-- Only customers with hash(customer_id) % $partitions = $partition are summed: every output sum is
-- additive over disjoint sets of customers, so partitions computed apart add up to the whole.
-- Output grain: one row per dim_id x segment_value x tested group.
-- params: $partitions, $partition
with

m as (
    select * from measurements
    where hash(customer_id) % $partitions = $partition
),

tests as (
    select * from contrast_tests
),

-- each line once per test it takes part in, demeaned within its cell (Frisch-Waugh-Lovell)
pairs as (
    select
        t.dim_id, t.segment_value, t.tested, m.customer_id,
        (m.group_value = t.tested)::int as g,
        (m.group_value = t.tested)::double - t.n1 / (t.n1 + t.n0) as x,
        m.y - (t.sy1 + t.sy0) / (t.n1 + t.n0) as y_demeaned,
        sqrt((t.n1 + t.n0) / (t.n1 + t.n0 - 1)) as k,
        m.y
    from tests as t
    join m using (dim_id, segment_value, cell_key)
    where (m.group_value = t.tested or t.reference is null or m.group_value = t.reference)
),

per_customer as (
    select
        dim_id, segment_value, tested, customer_id,
        max(g) as in_group,
        sum(x * y_demeaned) as a,
        sum(x * x) as b,
        sum(k * x * y_demeaned) as ak,
        sum(k * x * x) as bk,
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
        sum(v * v) as ref_vv, sum(v * w) as ref_vw, sum(w * w) as ref_ww,
        sum(ak * ak) as saa_adj, sum(ak * bk) as sab_adj, sum(bk * bk) as sbb_adj,
        -- the group's own part of the (adjusted) sandwich, for the Welch-Satterthwaite degrees of freedom
        coalesce(sum(ak * ak) filter (where in_group = 1), 0) as saa_group,
        coalesce(sum(ak * bk) filter (where in_group = 1), 0) as sab_group,
        coalesce(sum(bk * bk) filter (where in_group = 1), 0) as sbb_group
    from per_customer
    group by all
)

select * from final
order by dim_id, segment_value, group_value
