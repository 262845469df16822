-- name: breach_cells
-- The worst cells of a dispersion rule, for review: each cell (product x day x currency x controls) with a
-- breaching line, its lowest and highest price, the spread (highest / lowest), its lines and distinct
-- prices. Never a customer column. Output grain: one row per cell, widest spread first.
-- params: $metric, $top
-- identifiers: price, controls
with

hit as (
    select distinct l.cell_key
    from breaches as b
    join audit_lines as l on l.rowid = b.line
    where b.is_breach and b.metric = $metric
),

cells as (
    select
        l.product_id, l.day, l.currency,
        {% for c in controls %}cast(l.{{ c }} as varchar) as {{ c }}, {% endfor %}
        min(l.{{ price }}) as low, max(l.{{ price }}) as high,
        count(*) as lines, count(distinct l.{{ price }}) as prices
    from audit_lines as l
    join hit using (cell_key)
    group by all
),

final as (
    select *, high / nullif(low, 0) as spread from cells
)

select * from final
order by spread desc nulls last, lines desc, product_id, day
limit $top
