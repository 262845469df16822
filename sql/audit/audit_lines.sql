-- name: audit_lines
-- The audited lines of a period: one row per transaction line in [start, end), joined to its customer,
-- with what every check reads: the canonical columns, whether and how deeply the line was discounted,
-- the customer's tenure (existing / new), the quantity band, every configured attribute as text, and
-- two keys: the fixed effect every comparison shares (product x day x currency) and the within-cell
-- comparison's cell (that and every control). Output grain: one row per audited line (temp table).
-- params: $start, $end, $tenure_days, $quantity_bands, $filter_values, $excluded_products
-- identifiers: attributes, filters, band_indexes, controls, exclude
create or replace temp table audit_lines as
with

first_purchase as (
    select customer_id, min(timestamp)::date as first_day
    from transactions
    group by customer_id
),

data_start as (
    select min(timestamp)::date as first_day
    from transactions
),

lines as (
    select
        t.transaction_id, t.customer_id, t.product_id, t.timestamp::date as day, t.currency,
        t.category, t.channel, t.quantity, t.list_price, t.unit_price, t.discount_amount,
        t.line_total, t.discount_code,
        coalesce(t.unit_price < t.list_price, false) or coalesce(t.discount_amount > 0, false) as is_discounted,
        -- the discount as a fraction of the list price, from the unit price or from a line discount
        -- amount when the unit price was recorded before the discount
        case when t.list_price > 0 then greatest(1 - t.unit_price / t.list_price,
            coalesce(t.discount_amount / (t.list_price * t.quantity), 0)) end as discount_pct,
        -- without customer_since, tenure comes from the first purchase in the warehouse, which says
        -- nothing about customers seen within tenure_days of the data's start: unknown (null)
        case when c.customer_since is null
                  and date_diff('day', s.first_day, t.timestamp::date) <= $tenure_days then null
             when date_diff('day', coalesce(c.customer_since, f.first_day), t.timestamp::date)
                  > $tenure_days then 'existing'
             else 'new' end as tenure,
        -- the highest band at or below the quantity, '≥<band>' (a CASE: a lambda over the list of bands
        -- costs 8 times as much)
        {% if band_indexes %}
        case
            {% for i in band_indexes %}
            when t.quantity >= $quantity_bands[{{ i }}] then '≥' || cast($quantity_bands[{{ i }}] as varchar)
            {% endfor %}
            else 'other' end as quantity_band
        {% else %}
        'other' as quantity_band
        {% endif %}
        {% for source, name in attributes %}
        , cast({{ source }} as varchar) as {{ name }}
        {% endfor %}
    from transactions as t
    left join customers as c using (customer_id)
    left join first_purchase as f using (customer_id)
    cross join data_start as s
    where t.timestamp >= $start and t.timestamp < $end
    {% for source in filters %}
        and cast({{ source }} as varchar) = $filter_values[{{ loop.index }}]
    {% endfor %}
    {% if exclude %}
        -- non-product lines (postage, fees, manual adjustments) priced per order, not per product
        and not list_contains($excluded_products, t.product_id)
    {% endif %}
),

final as (
    select
        *,
        hash(product_id, day, currency) as fe_key,
        hash(product_id, day, currency{% for c in controls %}, {{ c }}{% endfor %}) as cell_key
    from lines
)

select * from final
