-- name: breach_top
-- Where one rule's breaches concentrate: for each column (product, code, channel, day) the values with the
-- most breaching lines, then the largest amount. Never a customer column. Output grain: one row per column
-- position and value, at most $top per column.
-- params: $metric, $top
-- identifiers: columns
with

breaching as materialized (
    select b.amount{% for column in columns %}, cast(l.{{ column }} as varchar) as c{{ loop.index0 }}{% endfor %}
    from breaches as b
    join audit_lines as l on l.rowid = b.line
    where b.metric = $metric
),

by_value as (
{% for column in columns %}
    select {{ loop.index0 }} as position, c{{ loop.index0 }} as value, count(*) as lines, sum(amount) as amount
    from breaching
    where c{{ loop.index0 }} is not null
    group by 2
{% if not loop.last %}    union all
{% endif %}{% endfor %}
),

final as (
    select * from by_value
    qualify row_number() over (partition by position order by lines desc, amount desc, value) <= $top
)

select * from final
order by position, lines desc, amount desc, value
