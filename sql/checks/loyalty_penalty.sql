-- name: loyalty_penalty
-- Detects existing customers (tenure over audit.tenure_days, each tenure band, or renewals) paying more
-- than new customers (new business) within the same cell and controls: the renewal/new-business
-- comparison. The runner plans one dimension, `tenure`, with every group tested against the reference
-- `new`, for the whole population and within each segment; lines whose tenure is unknown (null) take no
-- part. Measurement: the outcome as price_gap measures it.
-- Input: temp view `coded_lines`. Output grain: one row per measured line (see price_gap.sql).
with

lines as (
    select * from coded_lines
),

final as (
    select *, outcome_y as y
    from lines
    where outcome_y is not null
)

select * from final
