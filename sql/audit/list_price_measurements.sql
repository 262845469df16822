-- name: list_price_measurements
-- The price_gap comparison on the list price shown (before any discount) instead of the price paid: the
-- evidence for the paid-price echo rule (audits/causes.py, R3). Measurement: log of the list price.
-- Input: temp table `coded_lines`. Output grain: one row per line with a positive list price.
with

lines as (
    select * from coded_lines
),

final as (
    select *, ln(list_price) as y
    from lines
    where list_price > 0
)

select * from final
