-- name: price_gap
-- Detects groups paying more than their reference for the same product, day and controls.
-- Measurement: log of the unit price paid, per line; lines with a zero price are left out
-- (a log needs a positive price; zero prices are quarantined at ingest).
-- Input: temp view `audit_dim` (one row per line x audited dimension).
-- Output grain: one row per line x dimension: (dim_id, segment_value, cell_key, fe_key, control_levels,
-- group_parts, customer_id, group_value, y), summarised by sql/stats/within_cell_contrast.sql
-- (exp(beta) is the price ratio) and by the regression-adjusted model of audits/adjusted.py.
with

lines as (
    select * from audit_dim
),

final as (
    select dim_id, segment_value, cell_key, fe_key, control_levels, group_parts, customer_id, group_value,
           ln(unit_price) as y
    from lines
    where unit_price > 0
)

select * from final
