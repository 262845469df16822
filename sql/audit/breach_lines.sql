-- name: breach_lines
-- One rule's breaching lines for breaches.csv, largest amount first: what a reviewer needs to find each
-- line (transaction id, product, day, channel, code) and its amounts. Never a customer id.
-- Output grain: one row per breaching line.
-- params: $check, $metric, $max_rows
with

breaching as (
    select line, amount from breaches
    where is_breach and metric = $metric
),

final as (
    select
        $check as check, $metric as rule, l.transaction_id, l.product_id, l.day, l.channel, l.discount_code,
        l.currency, l.quantity, l.list_price, l.unit_price, l.line_total, l.discount_amount, b.amount
    from breaching as b
    join audit_lines as l on l.rowid = b.line
)

select * from final
order by amount desc, transaction_id
limit $max_rows
