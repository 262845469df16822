-- name: breach_summary
-- A consistency check's rules, each summed over the lines it applies to ({{ rules }}: the rows of the
-- check's SQL file, one per line and rule): breaching lines, lines checked, the amount at stake and the
-- revenue of the breaching lines and of all lines checked. Output grain: one row per rule (metric).
-- identifiers: rules
with

rules as (
    select
        metric,
        count(*) filter (where is_breach) as count,
        count(*) as total,
        coalesce(sum(amount) filter (where is_breach), 0) as amount,
        coalesce(sum(revenue) filter (where is_breach), 0) as revenue,
        coalesce(sum(revenue), 0) as revenue_total
    from (
        {{ rules }}
    ) as checked  -- on lines of their own: the check's SQL may end in a comment
    group by metric
),

final as (
    select * from rules
)

select * from final
order by metric
