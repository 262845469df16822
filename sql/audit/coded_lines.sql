-- name: coded_lines
-- The audited lines with the integer codes the disparity engine groups by: the customer, the cell and
-- the fixed effect as dense indexes (temp tables pp_customers, pp_cells, pp_fe), each segment column's,
-- grouping's and control's code (a grouping of several columns, an intersection, is the mixed-radix
-- number of its columns' codes; a missing value is -1), and the columns the checks measure. Sorted by
-- customer, then segment codes: the order the engine reads ranges of customers in.
-- Output grain: one row per audited line (temp table).
-- params: $missing
-- identifiers: target, source, joins, segments, groupings, controls, measured, order
create or replace temp table {{ target }} as
with

lines as (
    select * from {{ source }}
),

final as (
    select
        c.ci, x.xi, f.fi
        {% for key, alias in segments %}
        , coalesce({{ alias }}.code, -1)::integer as {{ key }}
        {% endfor %}
        {% for key, parts in groupings %}
        , coalesce({% for alias, stride in parts %}{% if not loop.first %} + {% endif %}{{ alias }}.code * {{ stride }}{% endfor %}, -1)::integer as {{ key }}
        {% endfor %}
        {% for key, alias in controls %}
        , {{ alias }}.code as {{ key }}
        {% endfor %}
        {% for column in measured %}
        , l.{{ column }}
        {% endfor %}
    from lines as l
    join pp_customers as c using (customer_id)
    join pp_cells as x using (cell_key)
    join pp_fe as f using (fe_key)
    {% for alias, table, column, with_missing in joins %}
    left join {{ table }} as {{ alias }}
        on {{ alias }}.v = {% if with_missing %}coalesce(cast(l.{{ column }} as varchar), $missing){% else %}cast(l.{{ column }} as varchar){% endif %}
    {% endfor %}
)

select * from final
order by {% for key in order %}{% if not loop.first %}, {% endif %}{{ key }}{% endfor %}
