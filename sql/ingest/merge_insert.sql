-- name: merge_insert
-- The merge's writes: every accepted row of the batch except those the table already holds unchanged
-- (new keys, and the replaced rows merge_delete.sql removed), with the batch's id.
-- Output grain: inserts into the warehouse table.
-- params: $source, $batch_id
-- identifiers: table, keys, columns, with_source
insert into {{ table }} ({{ columns | csv }}{% if with_source %}, source{% endif %}, batch_id)
with

accepted as (
    select {{ columns | csv }}{% if with_source %}, $source as source{% endif %}
    from staged
    where len(reasons) = 0 and not is_repeat
)

select {{ columns | csv }}{% if with_source %}, source{% endif %}, $batch_id
from accepted as t
where not exists (
    select 1 from matched as m
    where m.is_same and {% for key in keys %}{% if not loop.first %} and {% endif %}m.{{ key }} = t.{{ key }}{% endfor %}
)
