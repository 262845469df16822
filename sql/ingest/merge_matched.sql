-- name: merge_matched
-- The merge's first step: the batch's accepted rows (no reason, not a repeat) whose key is already in
-- the warehouse table, and whether each is value for value the same (left as it is) or changed
-- (replaced). New keys are not set apart: merge_insert.sql writes them straight from `staged`.
-- Output grain: one row per accepted row whose key is in the table (temp table `matched`).
-- params: $source
-- identifiers: table, keys, columns, with_source
create or replace temp table matched as
with

accepted as (
    select {{ columns | csv }}{% if with_source %}, $source as source{% endif %}
    from staged
    where len(reasons) = 0 and not is_repeat
),

final as (
    select
        {{ keys | csv('s.') }},
        {% for column in columns %}{% if not loop.first %} and {% endif %}s.{{ column }} is not distinct from t.{{ column }}{% endfor %} as is_same
    from accepted as s
    join {{ table }} as t on {% for key in keys %}{% if not loop.first %} and {% endif %}s.{{ key }} = t.{{ key }}{% endfor %}
)

select * from final
