-- name: breach_cells
-- The worst cells of a dispersion rule, for review: the cells (product x day x currency x controls) whose
-- compared price differs by more than the rule's tolerance, which are the cells with a breaching line (the
-- list price: any two list prices, tolerance 0; the paid price: more than $price_tolerance apart). Each with
-- its lowest and highest price, the spread (highest / lowest), its lines and distinct prices. Read from the
-- audited lines per cell, not from the breaching lines (at 10M most lines breach the paid-price rule).
-- Never a customer column. Output grain: one row per cell, widest spread first.
-- params: $tolerance, $top
-- identifiers: price, controls
with

cells as (
    select cell_key, min({{ price }}) as low, max({{ price }}) as high, count(*) as lines
    from audit_lines
    group by cell_key
),

breaching as (
    select *, high / nullif(low, 0) as spread
    from cells
    where high - low > $tolerance
),

ranked as (
    -- the first $top by spread and lines, with any tied with the last of them (product and day break ties)
    select * from breaching
    qualify rank() over (order by spread desc nulls last, lines desc) <= $top
),

described as (
    select
        min(l.product_id) as product_id, min(l.day) as day, any_value(l.currency) as currency,
        {% for c in controls %}any_value(cast(l.{{ c }} as varchar)) as {{ c }}, {% endfor %}
        any_value(r.low) as low, any_value(r.high) as high, any_value(r.spread) as spread,
        any_value(r.lines) as lines, count(distinct l.{{ price }}) as prices
    from audit_lines as l
    join ranked as r using (cell_key)
    group by l.cell_key
),

final as (
    select * from described
)

select * from final
order by spread desc nulls last, lines desc, product_id, day
limit $top
