-- name: within_cell_contrast
-- Phase 2 of 2: per-customer sums for the fixed-effects estimate of a group-minus-reference
-- difference and its customer-clustered (CR1) variance (see audits/stats.py).
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
