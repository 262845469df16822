-- name: pass_size
-- How many measured lines a pass of the disparity engine reads, and the highest customer index among
-- them (indexes are dense from 0, so the customers are that plus one).
-- Output grain: one row.
-- identifiers: relation
with

final as (
    select count(*) as lines, coalesce(max(ci), -1) as max_customer
    from {{ relation }}
)

select * from final
