-- name: bad_rows
-- Each bad row of a batch as the quarantine keeps it: the batch, the source, the file and the row's
-- number within it (from 1), its reasons joined by '; ', and its values as read (JSON). The raw rows
-- are read only when some row is bad ($any_bad).
-- Output grain: one row per staged row with a reason (temp table `bad_rows`).
-- params: $batch_id, $source, $any_bad
-- identifiers: rows, row_id, file_column, columns
create or replace temp table bad_rows as
with

bad as (
    select source_row, reasons
    from staged
    where len(reasons) > 0
),

raw_rows as (
    select {{ row_id }} as raw_row, *
    from {{ rows }}
    where $any_bad
),

first_rows as (
    select {{ file_column }} as source_file, min(raw_row) as first_row
    from raw_rows
    group by all
),

final as (
    select
        $batch_id::bigint as batch_id,
        $source as source,
        s.{{ file_column }} as source_file,
        bad.source_row - coalesce(f.first_row, 0) + 1 as source_row,
        array_to_string(bad.reasons, '; ') as reason,
        to_json(struct_pack({% for column in columns %}{% if not loop.first %}, {% endif %}{{ column }} := s.{{ column }}{% endfor %}))::varchar as raw
    from bad
    join raw_rows as s on s.raw_row = bad.source_row
    left join first_rows as f on f.source_file = s.{{ file_column }}
)

select * from final
