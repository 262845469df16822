-- name: staged
-- A batch's rows typed into the canonical columns (audits/staging.py builds each column's conversion
-- from its source type, and the reasons' texts of the required and numeric columns), with every reason
-- a row is bad: one 'column: what is wrong' per rule it breaks, none for a good row. Nothing is dropped:
-- a value that does not convert is a reason. A column the source lacks has its documented meaning
-- (staging.py), so no rule checks it. Duplicates within the batch are marked next (mark_duplicates.sql).
-- Output grain: one row per source row (temp table `staged`).
-- params: $latest, $earliest, $currencies, $derived_failures
-- identifiers: transactions, rows, row_id, typed, flags, watermark, failed, columns, required, numbers, allow_above_list
create or replace temp table staged as
with

typed as (
    select
        s.{{ row_id }} as source_row
        {% for value, column in typed %}
        , {{ value }} as {{ column }}
        {% endfor %}
        {% for present, flag in flags %}
        , {{ present }} as {{ flag }}
        {% endfor %}
        {% if transactions %}
        , {{ watermark }} as watermark_value
        {% endif %}
        {% for column in failed %}
        , s.{{ column }}
        {% endfor %}
    from {{ rows }} as s
),

final as (
    select
        source_row, {{ columns | csv }},
        {% if transactions %}
        watermark_value, hash(transaction_id) as id_hash,
        {% endif %}
        list_filter([
            -- a required column the source has must hold a value of its kind on every row
            {% for column, flag, missing, invalid in required %}
            case when not {{ flag }} then {{ missing }} when {{ column }} is null then {{ invalid }} end,
            {% endfor %}
            -- an optional one may be empty, but not hold what is not a value of its kind
            {% for column, flag, invalid in numbers %}
            case when {{ flag }} and {{ column }} is null then {{ invalid }} end,
            {% endfor %}
            -- a derived column whose expression failed on the row ($derived_failures: 'name: derived expression failed')
            {% for column in failed %}
            case when {{ column }} then $derived_failures[{{ loop.index }}] end,
            {% endfor %}
            {% if transactions %}
            case when quantity <= 0 then 'quantity: zero or negative (a return or cancellation?)' end,
            case when unit_price < 0 then 'unit_price: negative' when unit_price = 0 then 'unit_price: zero' end,
            case when list_price < 0 then 'list_price: negative' end,
            case when "timestamp" > $latest then 'timestamp: in the future'
                 when "timestamp" < $earliest then 'timestamp: implausibly early' end,
            case when currency is not null and not list_contains($currencies, currency) then 'currency: unknown code' end,
            {% if not allow_above_list %}
            case when unit_price > list_price then 'unit_price: above list_price' end,
            {% endif %}
            {% else %}
            case when not has_id then 'customer_id: missing' end,
            case when has_since and customer_since is null then 'customer_since: not a valid date' end,
            {% endif %}
        ], lambda r: r is not null) as reasons,
        false as is_repeat,
        hash({{ columns | csv }}) as row_hash
    from typed
)

select * from final
