-- name: loyalty_penalty
-- Detects existing customers (tenure over audit.tenure_days) paying more than new customers for the
-- same product, day and controls: the renewal/new-business comparison. The runner plans one
-- dimension, `tenure`, with `existing` tested against the reference `new`, for the whole population
-- and within each segment; lines whose tenure is unknown (null) take no part.
-- Measurement: log of the unit price paid, per line (as price_gap); exp(beta) is the price ratio.
-- Input: temp view `coded_lines`. Output grain: one row per measured line (see price_gap.sql).
with

lines as (
    select * from coded_lines
),

final as (
    select *, ln(unit_price) as y
    from lines
    where unit_price > 0
)

select * from final
