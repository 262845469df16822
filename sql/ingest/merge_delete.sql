-- name: merge_delete
-- The merge's replaced rows: the table's rows whose key the batch brings with other values go, to be
-- written again by merge_insert.sql (in the batch's transaction).
-- Output grain: deletes from the warehouse table.
-- identifiers: table, keys
delete from {{ table }} as t
using matched as m
where not m.is_same and {% for key in keys %}{% if not loop.first %} and {% endif %}m.{{ key }} = t.{{ key }}{% endfor %}
