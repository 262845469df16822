-- name: pass_lines
-- The measured lines of one range of customers (dense indexes ci in [$low, $high)), with the columns a
-- pass of the disparity engine reads. The lines are stored sorted by customer (coded_lines.sql), so a
-- range reads only its own row groups.
-- Output grain: one row per measured line of the range.
-- params: $low, $high
-- identifiers: columns, relation
with

lines as (
    select {% for column in columns %}{% if not loop.first %}, {% endif %}{{ column }}{% endfor %}
    from {{ relation }}
),

final as (
    select * from lines
    where ci >= $low and ci < $high
)

select * from final
