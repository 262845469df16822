-- name: fe_scores
-- Customer-clustered variance of the fixed-effects regressions of sql/stats/fe_normal_equations.sql.
-- Given each test's coefficients beta and h = (X~'X~)^- e_D (the column of a generalised inverse for
-- D), the estimate's clustered variance is sum over customers c of (sum_{i in c} z_i e_i)^2 with
-- z_i = h'x~_i and e_i the residual (audits/adjusted.py). For a line in fixed effect a:
--   z_i   = h_D (D_i - n1_a / n_a) + h(levels_i) - mean over a's lines of h(levels)
--   e_i   = y_i - y_bar_a - beta_D (D_i - n1_a / n_a) - beta(levels_i) + mean over a's lines of beta(levels)
-- where h(levels) sums h over the line's covariate dummies. Fixed effects with a single line carry no
-- information and are left out (also from the count of customers). Besides the plain (CR1) sums, the
-- sums the audit uses scale each residual by sqrt(n_a/(n_a-1)), undoing the shrinkage of demeaning
-- within a fixed effect of n_a lines (its leverage 1/n_a, as in HC2).
-- Input: temp tables `fe_input`, `fe_linesets`, `fe_tests` (see fe_normal_equations.sql) and
--        `fe_coefficients` (test_id, u, beta, h); a regressor without a row has coefficient 0.
-- Output grain: one row per test: customers, customers in the group, lines, the adjusted sandwich's
-- two parts (sums of squared customer scores over the group's customers and over the others) and
-- the plain sandwich.
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

coefficients as (
    select * from fe_coefficients
),

lineset_lines as (
    select s.lineset_id, m.fe_key, m.levels, m.group_value, m.customer_id, m.y
    from linesets as s
    join m using (dim_id, segment_value)
    where s.tested is null or m.group_value = s.tested or m.group_value = s.reference
),

fe_totals as (
    select lineset_id, fe_key, count(*) as n, avg(y) as y_bar
    from lineset_lines
    group by all
    having count(*) > 1
),

combos as (
    select lineset_id, levels, fe_key, count(*) as n
    from lineset_lines
    group by all
),

-- every test's h(levels) and beta(levels) for each combination of covariate levels in its line set
combo_coefficients as (
    select t.test_id, c.levels,
           coalesce(sum(k.h), 0) as h_levels, coalesce(sum(k.beta), 0) as beta_levels
    from tests as t
    join (select distinct lineset_id, levels from combos) as c using (lineset_id)
    left join range(1, len(c.levels) + 1) as r(j) on true
    left join coefficients as k on k.test_id = t.test_id and k.u = r.j || ':' || c.levels[r.j]
    group by all
),

test_fe as (
    select t.test_id, f.fe_key, any_value(f.n) as n, any_value(f.y_bar) as y_bar,
           sum(c.n * cc.h_levels) / any_value(f.n) as h_bar,
           sum(c.n * cc.beta_levels) / any_value(f.n) as beta_bar
    from tests as t
    join fe_totals as f using (lineset_id)
    join combos as c on c.lineset_id = t.lineset_id and c.fe_key = f.fe_key
    join combo_coefficients as cc on cc.test_id = t.test_id and cc.levels = c.levels
    group by t.test_id, f.fe_key
),

group_fe as (
    select t.test_id, l.fe_key, count(*) / any_value(f.n) as d_bar
    from tests as t
    join lineset_lines as l on l.lineset_id = t.lineset_id and l.group_value = t.tested
    join fe_totals as f on f.lineset_id = l.lineset_id and f.fe_key = l.fe_key
    group by t.test_id, l.fe_key
),

test_treated as (
    select t.test_id, k.h as h_d, k.beta as beta_d
    from tests as t
    join coefficients as k on k.test_id = t.test_id and k.u = 'D'
),

line_terms as (
    select
        t.test_id, l.customer_id, l.group_value = t.tested as in_group,
        d.h_d * ((l.group_value = t.tested)::int - coalesce(g.d_bar, 0)) + cc.h_levels - e.h_bar as z,
        l.y - e.y_bar - d.beta_d * ((l.group_value = t.tested)::int - coalesce(g.d_bar, 0))
            - cc.beta_levels + e.beta_bar as residual,
        sqrt(e.n / (e.n - 1)) as k
    from tests as t
    join test_treated as d using (test_id)
    join lineset_lines as l on l.lineset_id = t.lineset_id
    join test_fe as e on e.test_id = t.test_id and e.fe_key = l.fe_key
    join combo_coefficients as cc on cc.test_id = t.test_id and cc.levels = l.levels
    left join group_fe as g on g.test_id = t.test_id and g.fe_key = l.fe_key
),

per_customer as (
    select test_id, customer_id, sum(z * residual) as plain_score, sum(k * z * residual) as score,
           bool_or(in_group) as in_group, count(*) as n_lines
    from line_terms
    group by all
),

final as (
    select
        test_id,
        count(*) as n_clusters,
        count(*) filter (where in_group) as n_group_clusters,
        sum(n_lines) as n_lines,
        coalesce(sum(score * score) filter (where in_group), 0) as meat_group,
        coalesce(sum(score * score) filter (where not in_group), 0) as meat_reference,
        sum(plain_score * plain_score) as meat_plain
    from per_customer
    group by all
)

select * from final
order by test_id
