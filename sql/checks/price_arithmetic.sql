-- name: price_arithmetic
-- Detects paid amounts that do not add up. Two rules, each over the lines that carry its columns:
--   line_total_mismatch: line_total differs from unit_price x quantity;
--   discount_mismatch:   discount_amount differs from (list_price - unit_price) x quantity.
-- Tolerance: the rounding the stored precisions allow and no more: half a cent for the rounded
-- amount, plus 0.00005 per unit for each 4-decimal unit price (so 300 units at 0.3333 may total 100.00).
-- Input: temp view `audit_lines`. Output grain: one row per rule (metric, count, total); a rule whose
-- columns the data does not have has total 0 and is not reported.
with

lines as (
    select * from audit_lines
),

line_totals as (
    select
        'line_total_mismatch' as metric,
        count(*) filter (where abs(line_total - unit_price * quantity) > 0.005 + 0.00005 * abs(quantity)) as count,
        count(*) as total
    from lines
    where line_total is not null
),

discounts as (
    select
        'discount_mismatch' as metric,
        count(*) filter (
            where abs(discount_amount - (list_price - unit_price) * quantity) > 0.005 + 0.0001 * abs(quantity)
        ) as count,
        count(*) as total
    from lines
    where discount_amount is not null and list_price is not null
),

final as (
    select * from line_totals
    union all
    select * from discounts
)

select * from final
