-- name: breach_top
-- Where one rule's breaches concentrate: the values of one column (product, code, channel, day) with the
-- most breaching lines, then the largest amount. Never a customer column. Output grain: one row per value.
-- params: $metric, $top
-- identifiers: column
with

breaching as (
    select line, amount from breaches
    where is_breach and metric = $metric
),

by_value as (
    select cast(l.{{ column }} as varchar) as value, count(*) as lines, sum(b.amount) as amount
    from breaching as b
    join audit_lines as l on l.rowid = b.line
    group by 1
),

final as (
    select * from by_value
    where value is not null
)

select * from final
order by lines desc, amount desc, value
limit $top
