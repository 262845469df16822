-- name: dearer_price
-- Detects groups charged the dearer price of dispersed cells more often than their reference: within the
-- cells (product x day x currency x controls) whose paid unit prices differ by more than the tolerance,
-- whether a line was charged above the cell's lowest price. Run on data without list prices (the catalogue
-- skips it otherwise). The runner turns the within-cell difference into a rate ratio (group's rate /
-- reference's), flagged above thresholds.max_dearer_ratio.
-- Input: temp table `coded_lines`. Output grain: one row per line of a dispersed cell (see price_gap.sql).
-- params: $price_tolerance
with

lines as (
    select *, unit_price as price from coded_lines
),

cells as (
    select *, min(price) over (partition by xi) as cell_low, max(price) over (partition by xi) as cell_high
    from lines
    where price > 0
),

final as (
    select *, (price > cell_low + $price_tolerance)::double as y
    from cells
    where cell_high - cell_low > $price_tolerance
)

select * from final
