-- name: price_dispersion
-- Detects prices that are not one price for everyone: lines of the same cell (product x day x currency x
-- controls) charged at different prices to different customers. Two rules:
--   list_price_dispersion: a list price other than the cell's most common one (taken as the published
--     price; ties count the same whichever is taken), over the lines with a list price;
--   paid_price_dispersion: a line in a cell whose paid unit prices differ by more than the tolerance
--     ($price_tolerance: rounding, half a cent by default), over every line; its amount is what the line
--     paid above the cell's lowest price. With list prices, discounts make paid prices differ too.
-- Input: temp table `audit_lines`. Output grain: one row per line and rule (see price_arithmetic.sql).
-- params: $price_tolerance
with

lines as (
    select rowid as line, * from audit_lines
),

listed as (
    select line, cell_key, list_price, quantity, unit_price, count(*) over (partition by cell_key, list_price) as n_at_price
    from lines
    where list_price is not null
),

published as (
    -- the cell's most common list price (of tied ones, the lowest)
    select *, first_value(list_price) over (partition by cell_key order by n_at_price desc, list_price)
              as published_price
    from listed
),

list_rule as (
    select 'list_price_dispersion' as metric, line,
           list_price <> published_price as is_breach,
           abs(list_price - published_price) * quantity as amount,
           unit_price * quantity as revenue
    from published
),

paid as (
    select line, unit_price, quantity,
           min(unit_price) over (partition by cell_key) as cell_low,
           max(unit_price) over (partition by cell_key) as cell_high
    from lines
),

paid_rule as (
    select 'paid_price_dispersion' as metric, line,
           cell_high - cell_low > $price_tolerance as is_breach,
           (unit_price - cell_low) * quantity as amount,
           unit_price * quantity as revenue
    from paid
),

final as (
    select * from list_rule
    union all
    select * from paid_rule
)

select * from final
