-- name: price_dispersion
-- Detects prices that are not one price for everyone: lines of the same cell (product x day x currency x
-- controls) charged at different prices to different customers. Two rules:
--   list_price_dispersion: a list price other than the cell's most common one (taken as the published
--     price; ties count the same whichever is taken), over the lines with a list price;
--   paid_price_dispersion: a line in a cell whose paid unit prices differ by more than the tolerance
--     ($price_tolerance: rounding, half a cent by default), over every line; its amount is what the line
--     paid above the cell's lowest price. With list prices, discounts make paid prices differ too.
-- Each cell's prices are aggregated once and joined back to its lines (no window over the lines).
-- Input: temp table `audit_lines`. Output grain: one row per line and rule (see price_arithmetic.sql).
-- params: $price_tolerance
with

lines as (
    select rowid as line, * from audit_lines
),

list_prices as (
    select cell_key, list_price, count(*) as n_at_price
    from lines
    where list_price is not null
    group by all
),

published as (
    -- the cell's most common list price (of tied ones, the lowest)
    select cell_key, arg_min(list_price, (-n_at_price, list_price)) as published_price
    from list_prices
    group by cell_key
),

list_rule as (
    select 'list_price_dispersion' as metric, l.line,
           l.list_price <> p.published_price as is_breach,
           abs(l.list_price - p.published_price) * l.quantity as amount,
           l.unit_price * l.quantity as revenue
    from lines as l
    join published as p using (cell_key)
    where l.list_price is not null
),

paid_range as (
    select cell_key, min(unit_price) as cell_low, max(unit_price) as cell_high
    from lines
    group by cell_key
),

paid_rule as (
    select 'paid_price_dispersion' as metric, l.line,
           r.cell_high - r.cell_low > $price_tolerance as is_breach,
           (l.unit_price - r.cell_low) * l.quantity as amount,
           l.unit_price * l.quantity as revenue
    from lines as l
    join paid_range as r using (cell_key)
),

final as (
    select * from list_rule
    union all
    select * from paid_rule
)

select * from final
