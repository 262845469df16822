-- name: discount_incidence
-- Detects groups receiving discounts less often than their reference on the same product, day
-- and controls. Measurement: 1 when the line was discounted (paid below list price or carried a
-- discount amount), else 0. The runner turns the within-cell difference into an adverse impact
-- ratio (group rate / reference rate) judged against the four-fifths rule.
-- Input: temp view `coded_lines`. Output grain: one row per measured line (see price_gap.sql).
with

lines as (
    select * from coded_lines
),

final as (
    select *, is_discounted::double as y
    from lines
    where is_discounted is not null  -- unknown without a list price or discount amount (audit_lines.sql)
)

select * from final
