-- name: audit_lines
-- The audited lines of a period: one row per transaction line in [start, end) (a snapshot source's rows,
-- which have no timestamp, are in every period), joined to its customer, with what every check reads:
-- the canonical columns, the outcome compared (the price paid, or a configured column, over a benchmark
-- column) and its measured scale (log for ratios, as is for points), whether and how deeply the line was
-- discounted, the tenure group, the quantity band, every configured attribute as text (numeric ones cut
-- into ordered bands), the cell's time grains, and two keys: the fixed effect every comparison shares
-- (the cell columns x currency) and the within-cell comparison's cell (that and every control).
-- Output grain: one row per audited line (temp table).
-- params: $start, $end, $tenure_days, $quantity_bands, $filter_values, $excluded_products, $bands, $tenure_bands
-- identifiers: attributes, filters, band_indexes, cell, controls, exclude, outcome, per, log_scale, grains, tenure_value, tenure_scale, tenure_steps, renewal
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

joined as (
    select
        t.*,
        c.customer_since,
        f.first_day,
        s.first_day as data_first_day
        {% for source, name, alias, band, steps in attributes %}
        , {% if band %}case
            {% for i in steps %}
            when try_cast({{ source }} as double) >= $bands[{{ band }}].bounds[{{ i }}] then $bands[{{ band }}].labels[{{ i }}]
            {% endfor %}
            end{% else %}cast({{ source }} as varchar){% endif %} as {{ alias }}
        {% endfor %}
        {% if tenure_value %}, try_cast({{ tenure_value }} as double) as pp_tenure_value{% endif %}
        {% if renewal %}, lower(trim(cast({{ renewal }} as varchar))) as pp_renewal{% endif %}
        {% if outcome %}, try_cast({{ outcome }} as double){% if per %} / nullif(try_cast({{ per }} as double), 0){% endif %} as pp_outcome{% endif %}
    from transactions as t
    left join customers as c using (customer_id)
    left join first_purchase as f using (customer_id)
    cross join data_start as s
    where (t.timestamp is null or (t.timestamp >= $start and t.timestamp < $end))
    {% for source in filters %}
        and cast({{ source }} as varchar) = $filter_values[{{ loop.index }}]
    {% endfor %}
    {% if exclude %}
        -- non-product lines (postage, fees, manual adjustments) priced per order, not per product
        and not list_contains($excluded_products, t.product_id)
    {% endif %}
),

lines as (
    select
        transaction_id, customer_id, product_id, timestamp::date as day, currency,
        {% for unit, name in grains %}date_trunc({{ unit }}, timestamp)::date as {{ name }}, {% endfor %}
        category, channel, quantity, list_price, unit_price, discount_amount, line_total, discount_code,
        -- unknown (null) when the line has neither a list price nor a discount amount, not 'no discount'
        case when list_price is not null or discount_amount is not null then
            coalesce(unit_price < list_price, false) or coalesce(discount_amount > 0, false) end as is_discounted,
        -- the discount as a fraction of the list price, from the unit price or from a line discount
        -- amount when the unit price was recorded before the discount
        case when list_price > 0 then greatest(1 - unit_price / list_price,
            coalesce(discount_amount / (list_price * quantity), 0)) end as discount_pct,
        {% if outcome %}pp_outcome{% else %}unit_price::double{% endif %} as outcome,
        {% if renewal %}
        -- a renewal column: new business against renewals (by tenure band, when banded)
        case when pp_renewal in ('false', '0', 'no', 'n', 'new') then 'new'
             when pp_renewal in ('true', '1', 'yes', 'y', 'renewal') then
                 {% if tenure_steps %}case
                     {% for i in tenure_steps %}
                     when pp_tenure_value >= $tenure_bands.bounds[{{ i }}] then $tenure_bands.labels[{{ i }}]
                     {% endfor %}
                     end{% else %}'existing'{% endif %}
        end as tenure,
        {% elif tenure_value %}
        -- a tenure column (in days or years): its bands, the first being new customers, or new and
        -- existing split at tenure_days
        {% if tenure_steps %}case
            {% for i in tenure_steps %}
            when pp_tenure_value >= $tenure_bands.bounds[{{ i }}] then $tenure_bands.labels[{{ i }}]
            {% endfor %}
            end{% else %}case when pp_tenure_value * {{ tenure_scale }} > $tenure_days then 'existing'
                              when pp_tenure_value >= 0 then 'new' end{% endif %} as tenure,
        {% else %}
        -- without customer_since, tenure comes from the first purchase in the warehouse, which says
        -- nothing about customers seen within tenure_days of the data's start: unknown (null)
        case when customer_since is null
                  and date_diff('day', data_first_day, timestamp::date) <= $tenure_days then null
             when date_diff('day', coalesce(customer_since, first_day), timestamp::date)
                  > $tenure_days then 'existing'
             else 'new' end as tenure,
        {% endif %}
        -- the highest band at or below the quantity, '≥<band>' (a CASE: a lambda over the list of bands
        -- costs 8 times as much)
        {% if band_indexes %}
        case
            {% for i in band_indexes %}
            when quantity >= $quantity_bands[{{ i }}] then '≥' || cast($quantity_bands[{{ i }}] as varchar)
            {% endfor %}
            else 'other' end as quantity_band
        {% else %}
        'other' as quantity_band
        {% endif %}
        {% for source, name, alias, band, steps in attributes %}
        , {{ alias }} as {{ name }}
        {% endfor %}
    from joined
),

final as (
    select
        *,
        -- what the measured checks compare: the outcome's log on the ratio scale, the outcome on the points scale
        {% if log_scale %}case when outcome > 0 then ln(outcome) end{% else %}outcome{% endif %} as outcome_y,
        hash({% for c in cell %}{{ c }}, {% endfor %}currency) as fe_key,
        hash({% for c in cell %}{{ c }}, {% endfor %}currency{% for c in controls %}, {{ c }}{% endfor %}) as cell_key
    from lines
)

select * from final
