-- name: line_summary
-- What the audited lines are, for the run's record and for deciding which checks can run: their
-- customers and lines, a fingerprint of their content (the run's data hash), the one currency they
-- share (null: several) and, for each column whose presence on any line decides a check, how many
-- lines have it. The distinct customers are counted in a subquery of their own: beside the other
-- aggregates DuckDB's distinct count is much slower.
-- Output grain: one row.
-- identifiers: presence
with

final as (
    select
        (select count(distinct customer_id) from audit_lines) as customers,
        count(*) as lines,
        coalesce(sum(hash(customer_id, product_id, day, unit_price, list_price, quantity))::varchar, '0') as fingerprint,
        case when min(currency) = max(currency) then any_value(currency) end as currency
        {% for column in presence %}
        , count({{ column }}) as {{ column }}
        {% endfor %}
    from audit_lines
)

select * from final
