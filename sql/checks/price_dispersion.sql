-- name: price_dispersion
-- Detects list prices that are not one price for everyone: the same product on the same day, in the
-- same currency and with the same controls (channel, quantity band, ...), shown at different list
-- prices to different customers. Each cell's most common list price is taken as the published one;
-- a line shown any other list price counts (ties count the same whichever price is taken).
-- Input: temp view `audit_lines` (cell_key = product x day x currency x controls).
-- Output grain: one row (metric, count of lines off their cell's list price, lines with a list price).
with

lines as (
    select * from audit_lines
    where list_price is not null
),

cell_prices as (
    select cell_key, list_price, count(*) as n
    from lines
    group by all
),

published as (
    select cell_key, max(n) as n_published, sum(n) as n_lines
    from cell_prices
    group by all
),

final as (
    select
        'list_price_dispersion' as metric,
        coalesce(sum(n_lines - n_published), 0) as count,
        coalesce(sum(n_lines), 0) as total
    from published
)

select * from final
