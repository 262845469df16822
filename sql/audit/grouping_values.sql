-- name: grouping_values
-- How many values each grouping column takes in the audited lines, and how many customers there are
-- (both approximate: enough to refuse a column that identifies customers or has too many groups before
-- anything is computed).
-- Output grain: one row.
-- identifiers: columns
with

final as (
    select
        approx_count_distinct(customer_id) as customers
        {% for column in columns %}
        , approx_count_distinct({{ column }})
        {% endfor %}
    from audit_lines
)

select * from final
