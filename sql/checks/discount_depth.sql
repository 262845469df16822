-- name: discount_depth
-- Detects groups whose discounts are shallower than their reference's on the same product, day and
-- controls. Measurement: the discount percentage (1 - unit price / list price, a fraction) of each
-- discounted line; undiscounted lines take no part, so how often a group is discounted is left to
-- discount_incidence. The within-cell difference (group minus reference) is reported in percentage
-- points; a negative difference at least thresholds.min_discount_depth deep is adverse.
-- Input: temp view `coded_lines`. Output grain: one row per discounted line (see price_gap.sql).
with

lines as (
    select * from coded_lines
),

discounted as (
    select * from lines
    where is_discounted and discount_pct is not null
),

final as (
    select *, discount_pct as y
    from discounted
)

select * from final
