-- name: discount_policy
-- Detects discounts beyond policy: a unit price more than policy.max_discount_pct below the list price.
-- Tolerance: half a cent on the unit price, so a price rounded to the cent after a 40% discount
-- (2.49 x 0.6 = 1.494 -> 1.49) is not a breach.
-- Prices above list are quarantined at ingest unless policy.allow_above_list, so no rule here.
-- Codes used outside their rules need the rules themselves, which the warehouse does not hold.
-- Input: temp table `audit_lines`. Output grain: one row per line with a list price: the rule, the line,
-- whether it breaches, the discount beyond the policy's deepest (the amount given away) and its revenue.
-- params: $max_discount_pct
with

lines as (
    select rowid as line, * from audit_lines
    where list_price > 0
),

final as (
    select
        'discount_above_policy' as metric, line,
        unit_price < list_price * (1 - $max_discount_pct) - 0.005 as is_breach,
        greatest(list_price * (1 - $max_discount_pct) - unit_price, 0) * quantity as amount,
        unit_price * quantity as revenue
    from lines
)

select * from final
