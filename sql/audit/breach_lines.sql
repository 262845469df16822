-- name: breach_lines
-- One rule's breaching lines for breaches.csv, largest amount first: what a reviewer needs to find each
-- line (transaction id, product, day, channel, code) and its amounts. Never a customer id.
-- Only the lines at or above the $max_rows-th largest amount are joined to the audited lines (a rule may
-- have millions of breaching lines; the list keeps $max_rows).
-- Output grain: one row per breaching line.
-- params: $check, $metric, $max_rows
with

breaching as (
    select line, amount from breaches
    where metric = $metric
),

cut as (
    select min(amount) as amount
    from (select amount from breaching order by amount desc nulls last limit $max_rows)
),

listed as (
    -- null amounts sort last: they are listed only when the rule has fewer other lines than $max_rows
    select b.* from breaching as b, cut
    where b.amount >= cut.amount or b.amount is null or cut.amount is null
),

final as (
    select
        $check as check, $metric as rule, l.transaction_id, l.product_id, l.day, l.channel, l.discount_code,
        l.currency, l.quantity, l.list_price, l.unit_price, l.line_total, l.discount_amount, b.amount
    from listed as b
    join audit_lines as l on l.rowid = b.line
)

select * from final
order by amount desc, transaction_id
limit $max_rows
