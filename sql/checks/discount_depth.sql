-- name: discount_depth
-- Detects groups whose discounts are shallower than their reference's on the same product, day and
-- controls. Measurement: the discount percentage (1 - unit price / list price, a fraction) of each
-- discounted line; undiscounted lines take no part, so how often a group is discounted is left to
-- discount_incidence. The within-cell difference (group minus reference) is reported in percentage
-- points; a negative difference at least thresholds.min_discount_depth deep is adverse.
-- Input: temp view `audit_dim`. Output grain: one row per discounted line x dimension (see price_gap.sql).
with

lines as (
    select * from audit_dim
),

discounted as (
    select * from lines
    where is_discounted and discount_pct is not null
),

final as (
    select dim_id, segment_value, cell_key, fe_key, control_levels, group_parts, customer_id, group_value,
           discount_pct as y
    from discounted
)

select * from final
