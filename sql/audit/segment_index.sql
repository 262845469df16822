-- name: segment_index
-- A segment column that is not nested in the cells (a customer attribute, say): comparisons within one
-- of its values compare within cell x value, so the coded lines get a dense index of (base, segment
-- code) pairs, `key`: the cell's (or fixed effect's) index within the segment value. Rewrites `target`
-- with the new column, in the coded lines' order. Output grain: one row per coded line.
-- identifiers: target, base, segment, key, order
create or replace temp table pp_segment_index as
with

pairs as (
    select distinct {{ base }}, {{ segment }} from {{ target }}
),

final as (
    select {{ base }}, {{ segment }}, (row_number() over (order by {{ base }}, {{ segment }}) - 1)::integer as {{ key }}
    from pairs
)

select * from final;

create or replace temp table {{ target }} as
select l.*, i.{{ key }}
from {{ target }} as l
join pp_segment_index as i using ({{ base }}, {{ segment }})
order by {% for k in order %}{% if not loop.first %}, {% endif %}{{ k }}{% endfor %}
