-- name: price_gap
-- Detects groups paying more than their reference for the same product, day and controls.
-- Measurement: log of the unit price paid, per line; lines with a zero price are left out
-- (a log needs a positive price; zero prices are quarantined at ingest).
-- Input: temp view `coded_lines` (audits/coding.py: one row per audited line, with its codes).
-- Output grain: one row per measured line: its codes and y, estimated by audits/contrasts.py
-- (exp(beta) is the price ratio; also the regression-adjusted model).
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
