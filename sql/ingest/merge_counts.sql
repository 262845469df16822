-- name: merge_counts
-- The merge's counts: the batch's accepted rows (no reason, not a repeat), and among those whose key the
-- table holds (merge_matched.sql), the changed ones (replaced) and the identical ones (left as they are);
-- the rest are new.
-- Output grain: one row.
with

final as (
    select
        (select count(*) from staged where len(reasons) = 0 and not is_repeat) as accepted,
        count(*) filter (not is_same) as changed,
        count(*) filter (is_same) as identical
    from matched
)

select * from final
