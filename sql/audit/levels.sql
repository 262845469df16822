-- name: levels
-- The values of one column of the audited lines, sorted: a value's position is its code (so the same
-- data always gets the same codes). A control's missing value is a level of its own ($missing).
-- Output grain: one row per distinct value.
-- params: $missing
-- identifiers: source, column, with_missing
with

values_found as (
    select distinct
        {% if with_missing %}coalesce(cast({{ column }} as varchar), $missing){% else %}cast({{ column }} as varchar){% endif %} as v
    from {{ source }}
),

final as (
    select v from values_found where v is not null
)

select * from final
order by v
