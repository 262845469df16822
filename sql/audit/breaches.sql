-- name: breaches
-- The breaching lines of the rules given ($metrics) of a consistency check ({{ rules }}: the rows of the
-- check's SQL file), kept for the details that list lines: where the breaches concentrate and breaches.csv.
-- Only the rules that need them: a rule reported but not judged lists no lines.
-- Output grain: one row per breaching line and rule (temp table `breaches`).
-- params: $metrics
-- identifiers: rules
create or replace temp table breaches as
with

final as (
    select metric, line, amount
    from (
        {{ rules }}
    ) as checked  -- on lines of their own: the check's SQL may end in a comment
    where is_breach and list_contains($metrics, metric)
)

select * from final
