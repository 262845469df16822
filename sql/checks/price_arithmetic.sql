-- name: price_arithmetic
-- Detects paid amounts that do not add up. Two rules, each over the lines that carry its columns:
--   line_total_mismatch: line_total differs from unit_price x quantity;
--   discount_mismatch:   discount_amount differs from (list_price - unit_price) x quantity.
-- Tolerance: the rounding the stored precisions allow and no more: half a cent for the rounded
-- amount, plus 0.00005 per unit for each 4-decimal unit price (so 300 units at 0.3333 may total 100.00).
-- Input: temp table `audit_lines`. Output grain: one row per line and rule that applies to it: the rule
-- (metric), the line (its rowid), whether it breaches the rule, the amount the breach is about and the line's revenue.
with

lines as (
    select rowid as line, * from audit_lines
),

line_totals as (
    select
        'line_total_mismatch' as metric, line,
        abs(line_total - unit_price * quantity) > 0.005 + 0.00005 * abs(quantity) as is_breach,
        abs(line_total - unit_price * quantity) as amount,
        unit_price * quantity as revenue
    from lines
    where line_total is not null
),

discounts as (
    select
        'discount_mismatch' as metric, line,
        abs(discount_amount - (list_price - unit_price) * quantity) > 0.005 + 0.0001 * abs(quantity) as is_breach,
        abs(discount_amount - (list_price - unit_price) * quantity) as amount,
        unit_price * quantity as revenue
    from lines
    where discount_amount is not null and list_price is not null
),

final as (
    select * from line_totals
    union all
    select * from discounts
)

select * from final
