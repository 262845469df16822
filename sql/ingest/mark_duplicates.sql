-- name: mark_duplicates
-- Among the staged rows sharing a key, the last one read is kept; each earlier one is a repeat (value
-- for value the same as the last: counted, not loaded twice) or gets $reason (quarantined). Only the
-- rows whose key occurs more than once are ranked, so a batch without duplicates pays for one hash
-- aggregate instead of sorting every row.
-- Output grain: updates temp table `staged` in place.
-- params: $reason
-- identifiers: key
update staged as s
set reasons = case when d.last_hash <> s.row_hash then list_append(s.reasons, $reason) else s.reasons end,
    is_repeat = d.last_hash = s.row_hash and len(s.reasons) = 0
from (
    select source_row, row_number() over latest_first as occurrence,
           first_value(row_hash) over latest_first as last_hash
    from staged
    where {{ key }} in (select {{ key }} from staged where {{ key }} is not null group by all having count(*) > 1)
    window latest_first as (partition by {{ key }} order by source_row desc)
) as d
where s.source_row = d.source_row and d.occurrence > 1
