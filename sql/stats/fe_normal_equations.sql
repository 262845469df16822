-- name: fe_normal_equations
-- Normal equations of one fixed-effects regression per test (see audits/adjusted.py):
--   y = alpha[fe_key] + sum_j gamma_j[levels[j]] + beta * D + e,   D = 1 on the tested group's lines.
-- alpha is absorbed: every regressor and y is demeaned within its fe_key (Frisch-Waugh-Lovell), so
-- X~'X~ = sum over fe_key of (X'X - n x_bar x_bar') and X~'y~ likewise. The covariates enter as one
-- dummy per level. Lines sharing fe_key, covariate levels and group have identical regressors, so only
-- their counts and sums are needed.
-- The covariate block depends only on the lines a test compares (its line set: all lines of the
-- dimension and segment when the reference is everyone else), so it is computed once per line set;
-- the tested group's row and column only over the fixed effects where the group has lines.
-- Input: temp tables `fe_input` (dim_id, segment_value, fe_key, levels, customer_id, group_value, y),
--        `fe_linesets` (lineset_id, dim_id, segment_value, tested, reference; null tested: every line)
--        and `fe_tests` (test_id, lineset_id, tested).
-- Regressors are named 'D' (the tested group) and '<j>:<level>' (level of covariate j, 1-based).
-- Output grain: one row per owner x regressor pair: owner 'L<lineset_id>' for covariate pairs (u <= v)
-- and covariate x y (v null), owner 'T<test_id>' for D x D, D x covariate and D x y (v null).
with

m as (
    select * from fe_input
),

linesets as (
    select * from fe_linesets
),

tests as (
    select * from fe_tests
),

cells as (
    select dim_id, segment_value, fe_key, levels, group_value, count(*) as n, sum(y) as sy
    from m
    group by all
),

lineset_cells as (
    select s.lineset_id, hash(c.fe_key, c.levels, c.group_value) as cell_id, c.*
    from linesets as s
    join cells as c using (dim_id, segment_value)
    where s.tested is null or c.group_value = s.tested or c.group_value = s.reference
),

-- each cell's covariate dummies, one row per covariate
cell_dummies as (
    select lineset_id, cell_id, fe_key, group_value, n, sy,
           unnest(list_transform(levels, lambda level, j: j || ':' || level)) as u
    from lineset_cells
),

fe_totals as (
    select lineset_id, fe_key, sum(n) as n, sum(sy) as sy
    from lineset_cells
    group by all
),

fe_dummies as (
    select lineset_id, fe_key, u, sum(n) as n_u, sum(sy) as sy_u
    from cell_dummies
    group by all
),

-- lines carrying both dummies u < v (a cell has one level per covariate, so u and v are of two covariates)
raw_pairs as (
    select a.lineset_id, a.u, b.u as v, sum(a.n)::double as s
    from cell_dummies as a
    join cell_dummies as b on b.lineset_id = a.lineset_id and b.cell_id = a.cell_id and a.u < b.u
    group by all
),

covariate_xx as (
    select p.lineset_id, p.u, p.v,
           sum(case when p.u = p.v then p.n_u else 0 end - p.n_u * p.n_v / t.n) as s
    from (
        select a.lineset_id, a.fe_key, a.u, b.u as v, a.n_u, b.n_u as n_v
        from fe_dummies as a
        join fe_dummies as b on b.lineset_id = a.lineset_id and b.fe_key = a.fe_key and a.u <= b.u
    ) as p
    join fe_totals as t using (lineset_id, fe_key)
    group by all
),

lineset_xx as (
    select 'L' || lineset_id as owner, u, v, coalesce(c.s, 0) + coalesce(r.s, 0) as value
    from covariate_xx as c
    full outer join raw_pairs as r using (lineset_id, u, v)
),

lineset_xy as (
    select 'L' || d.lineset_id as owner, d.u, cast(null as varchar) as v, sum(d.sy_u - d.n_u * t.sy / t.n) as value
    from fe_dummies as d
    join fe_totals as t using (lineset_id, fe_key)
    group by all
),

-- the tested group's lines per fixed effect, and per fixed effect and dummy
group_fe as (
    select t.test_id, t.lineset_id, c.fe_key, sum(c.n) as n1, sum(c.sy) as sy1
    from tests as t
    join lineset_cells as c on c.lineset_id = t.lineset_id and c.group_value = t.tested
    group by all
),

group_dummies as (
    select t.test_id, d.u, sum(d.n)::double as n1_u
    from tests as t
    join cell_dummies as d on d.lineset_id = t.lineset_id and d.group_value = t.tested
    group by all
),

test_dd as (
    select 'T' || g.test_id as owner, 'D' as u, 'D' as v, sum(g.n1 - g.n1 * g.n1 / t.n) as value
    from group_fe as g
    join fe_totals as t using (lineset_id, fe_key)
    group by all
),

test_dy as (
    select 'T' || g.test_id as owner, 'D' as u, cast(null as varchar) as v, sum(g.sy1 - g.n1 * t.sy / t.n) as value
    from group_fe as g
    join fe_totals as t using (lineset_id, fe_key)
    group by all
),

test_dx_mean as (
    select g.test_id, d.u, sum(g.n1 * d.n_u / t.n) as s
    from group_fe as g
    join fe_totals as t using (lineset_id, fe_key)
    join fe_dummies as d using (lineset_id, fe_key)
    group by all
),

test_dx as (
    select 'T' || test_id as owner, 'D' as u, dummy as v, coalesce(r.n1_u, 0) - coalesce(m.s, 0) as value
    from (select test_id, u as dummy, s from test_dx_mean) as m
    full outer join (select test_id, u as dummy, n1_u from group_dummies) as r using (test_id, dummy)
),

final as (
    select * from lineset_xx
    union all select * from lineset_xy
    union all select * from test_dd
    union all select * from test_dy
    union all select * from test_dx
)

select * from final
