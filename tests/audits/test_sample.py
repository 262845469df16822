"""The synthetic market: shape of the source files, determinism, and that what is planted is there.

Markets here are small (5,000 customers, four weeks) so the whole file runs in a few seconds; the
planted effects are still large enough to read off the raw rows with a few lines of SQL.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import duckdb
import pyarrow as pa
import pytest

from audits.sample import (
    BLOCK_CUSTOMERS,
    CUSTOMERS_SCHEMA,
    DEFAULT_EFFECTS,
    NO_EFFECTS,
    REGIONS,
    TRANSACTIONS_SCHEMA,
    MarketSpec,
    PlantedEffect,
    generate_market,
    iter_transaction_chunks,
    write_sample_market,
)

SMALL = MarketSpec(n_customers=5_000, days=28, n_products=60, seed=11)


@pytest.fixture(scope="module")
def market():
    return generate_market(SMALL)


def sql(query: str, **tables: pa.Table) -> list[tuple]:
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    return con.sql(query).fetchall()


def one(query: str, **tables: pa.Table):
    (row,) = sql(query, **tables)
    return row[0] if len(row) == 1 else row


# --- shape ---------------------------------------------------------------------------------------

def test_schemas_are_exactly_the_source_contract(market):
    assert market.transactions.schema == TRANSACTIONS_SCHEMA
    assert market.customers.schema == CUSTOMERS_SCHEMA
    assert [f.name for f in TRANSACTIONS_SCHEMA] == [
        "order_line_id", "sold_at", "client_ref", "sku", "category", "channel", "qty", "list_price",
        "paid_unit_price", "discount_amount", "line_total", "promo_code", "currency"]
    assert str(TRANSACTIONS_SCHEMA.field("list_price").type) == "decimal128(12, 2)"
    assert str(TRANSACTIONS_SCHEMA.field("sold_at").type) == "timestamp[us]"


def test_values_are_in_their_domains(market):
    tx, customers = market.transactions, market.customers
    assert sql("select distinct channel from tx order by 1", tx=tx) == [("app",), ("online",), ("store",)]
    assert {c for (c,) in sql("select distinct category from tx", tx=tx)} == {
        "grocery", "personal_care", "apparel", "electronics", "subscriptions"}
    assert sql("select distinct currency from tx", tx=tx) == [("EUR",)]
    assert one("select min(qty), max(qty), avg((qty = 1)::int) from tx", tx=tx)[:2] == (1, 5)
    assert one("select avg((qty = 1)::int) from tx", tx=tx) > 0.7
    first, last = one("select min(sold_at)::date, max(sold_at)::date from tx", tx=tx)
    assert first >= SMALL.start and last <= SMALL.end
    assert one("select count(*) from tx where channel = 'store' and hour(sold_at) not between 8 and 20", tx=tx) == 0
    assert one("select count(*) from tx where not regexp_full_match(client_ref, 'C[0-9]{6}')", tx=tx) == 0
    assert one("""select count(*) from tx where promo_code is not null
                  and not regexp_full_match(promo_code, '(PROMO-W[0-9]{2}-[0-9]{2}|CPN-[0-9]{10}|STAFF-50)')""",
               tx=tx) == 0
    assert {g for (g,) in sql("select distinct gender from c", c=customers)} == {"F", "M", "X"}
    assert 0.015 < one("select avg((gender = 'X')::int) from c", c=customers) < 0.045
    assert {r for (r,) in sql("select distinct region from c", c=customers)} == set(REGIONS)
    assert {"Capital", "North-East"} <= set(REGIONS) and len(REGIONS) == 8
    # a good share of purchases come from customers of more than a year, and some from newer ones
    existing = one("""select avg((sold_at::date - customer_since > 365)::int)
                      from tx join c using (client_ref)""", tx=tx, c=customers)
    assert 0.4 < existing < 0.85


def test_ids_are_unique_and_every_line_has_a_known_customer(market):
    tx, customers = market.transactions, market.customers
    assert one("select count(distinct order_line_id) = count(*) from tx", tx=tx)
    assert customers.num_rows == SMALL.n_customers
    assert one("select count(distinct client_ref) from c", c=customers) == SMALL.n_customers
    assert one("select count(*) from tx anti join c using (client_ref)", tx=tx, c=customers) == 0


# --- determinism and chunking ----------------------------------------------------------------------

def test_same_seed_gives_the_same_market_and_another_seed_another(market):
    again = generate_market(SMALL)
    assert again.transactions.equals(market.transactions)
    assert again.customers.equals(market.customers)
    other = generate_market(replace(SMALL, seed=12))
    assert not other.transactions.slice(0, 100).equals(market.transactions.slice(0, 100))


@pytest.mark.parametrize("chunk_customers", [BLOCK_CUSTOMERS, 3_000])
def test_chunks_concatenate_to_the_in_memory_market(market, chunk_customers):
    chunks = list(iter_transaction_chunks(SMALL, chunk_customers=chunk_customers))
    assert len(chunks) > 1
    assert pa.concat_tables(chunks).equals(market.transactions)


def test_effects_change_prices_but_not_which_purchases_happen(market):
    fair = generate_market(replace(SMALL, effects=NO_EFFECTS)).transactions
    columns = ["order_line_id", "sold_at", "client_ref", "sku", "channel", "qty"]
    assert fair.select(columns).equals(market.transactions.select(columns))


# --- consistency breaches ----------------------------------------------------------------------------

def test_arithmetic_holds_except_for_the_planted_breaches(market):
    tx = market.transactions
    assert market.planted_breaches == {"price_arithmetic": 36, "discount_policy": 24}
    assert one("select count(*) from tx where discount_amount <> (list_price - paid_unit_price) * qty", tx=tx) == 0
    assert one("select count(*) from tx where line_total <> paid_unit_price * qty", tx=tx) == 36
    assert one("select count(*) from tx where discount_amount > 0.40 * list_price * qty", tx=tx) == 24
    assert one("select count(*) from tx where promo_code = 'STAFF-50'", tx=tx) == 24
    assert one("select count(*) from tx where paid_unit_price <= 0 or line_total <= 0", tx=tx) == 0
    # a discount always comes with a code
    assert one("select count(*) from tx where discount_amount > 0 and promo_code is null", tx=tx) == 0


def test_breaches_can_be_switched_off():
    clean = generate_market(replace(SMALL, n_customers=1_000, consistency_breaches=False))
    tx = clean.transactions
    assert clean.planted_breaches == {"price_arithmetic": 0, "discount_policy": 0}
    assert one("""select count(*) from tx where line_total <> paid_unit_price * qty
                  or discount_amount > 0.40 * list_price * qty""", tx=tx) == 0


# --- planted effects ---------------------------------------------------------------------------------

CELL_RATIO = """
    with lines as (
        select tx.*, c.*, (sold_at::date - customer_since > 365) as is_existing
        from tx join c using (client_ref) where {segment}),
    cells as (
        select sku, sold_at::date as day, channel,
               avg(list_price::double) filter (where {group}) as group_price,
               avg(list_price::double) filter (where not ({group})) as rest_price
        from lines group by all)
    select avg(group_price / rest_price), count(*) from cells where group_price is not null and rest_price is not null
"""


def cell_ratio(market, *, segment: str, group: str) -> float:
    ratio, n_cells = one(CELL_RATIO.format(segment=segment, group=group),
                         tx=market.transactions, c=market.customers)
    assert n_cells > 50
    return ratio


def test_women_pay_five_percent_more_for_the_same_personal_care_product(market):
    assert cell_ratio(market, segment="category = 'personal_care'", group="gender = 'F'") == pytest.approx(
        1.05, abs=0.003)
    assert cell_ratio(market, segment="category = 'grocery'", group="gender = 'F'") == 1.0


def test_north_east_pays_three_percent_more_for_electronics(market):
    ratio = cell_ratio(market, segment="category = 'electronics'", group="region = 'North-East'")
    assert ratio == pytest.approx(1.03, abs=0.002)


def test_existing_customers_pay_six_percent_more_for_the_same_subscription(market):
    ratio = cell_ratio(market, segment="category = 'subscriptions'", group="is_existing")
    assert ratio == pytest.approx(1.06, abs=0.003)


COUPONS_BY_GROUP = """
    select {group} as in_group,
           avg(coalesce(promo_code like 'CPN-%', false)::int) as coupon_rate,
           avg(discount_amount::double / (list_price::double * qty)) filter (where promo_code like 'CPN-%')
               as coupon_depth
    from tx join c using (client_ref)
    where promo_code is null or promo_code not like 'PROMO-%'
    group by all order by in_group
"""


def test_coupons_are_rarer_for_65_plus_and_shallower_for_18_24(market):
    tables = {"tx": market.transactions, "c": market.customers}
    (_, rest_rate, _), (_, old_rate, _) = sql(COUPONS_BY_GROUP.format(group="age_band = '65+'"), **tables)
    assert old_rate / rest_rate == pytest.approx(0.5, abs=0.08)
    (_, _, rest_depth), (_, _, young_depth) = sql(COUPONS_BY_GROUP.format(group="age_band = '18-24'"), **tables)
    assert young_depth - rest_depth == pytest.approx(-0.08, abs=0.012)


def test_without_effects_every_customer_sees_one_list_price_per_product_day_and_channel():
    fair = generate_market(replace(SMALL, effects=NO_EFFECTS))
    tx = fair.transactions
    assert one("""select max(n) from (select count(distinct list_price) as n from tx
                  group by sku, sold_at::date, channel)""", tx=tx) == 1
    assert fair.planted["effects"] == []


def test_any_effect_can_be_planted():
    effects = (
        PlantedEffect("price_gap", "age_band", "25-34", {"channel": "app"}, 0.10, "25-34 pay 10% more in the app."),
        PlantedEffect("discount_incidence", "gender", "M", {"category": "apparel"}, 0.0, "Men get no apparel coupons."),
    )
    custom = generate_market(replace(SMALL, effects=effects))
    ratio = cell_ratio(custom, segment="channel = 'app'", group="age_band = '25-34'")
    assert ratio == pytest.approx(1.10, abs=0.003)
    assert one("""select count(*) from tx join c using (client_ref)
                  where gender = 'M' and category = 'apparel' and promo_code like 'CPN-%'""",
               tx=custom.transactions, c=custom.customers) == 0
    assert [e["realised_raw"]["lines_group"] > 0 for e in custom.planted["effects"]] == [True, True]


@pytest.mark.parametrize("kwargs", [
    {"check": "price_gap", "attribute": "shoe_size", "group": "42"},
    {"check": "price_gap", "attribute": "gender", "group": "Q"},
    {"check": "price_gap", "attribute": "gender", "group": "F", "segment": {"category": "toys"}},
    {"check": "loyalty_penalty", "attribute": "gender", "group": "F"},
    {"check": "discount_incidence", "attribute": "gender", "group": "F", "size": -0.5},
    {"check": "price_hike", "attribute": "gender", "group": "F"},
])
def test_impossible_effects_are_refused(kwargs):
    with pytest.raises(ValueError, match="PlantedEffect"):
        PlantedEffect(**({"segment": None, "size": 0.05, "description": "x"} | kwargs))


def test_impossible_specs_are_refused():
    with pytest.raises(ValueError, match="n_products"):
        MarketSpec(n_products=3)


# --- confounders -------------------------------------------------------------------------------------

def test_confounders_mislead_a_naive_comparison_only(market):
    tables = {"tx": market.transactions, "c": market.customers}
    naive = one("""select avg(list_price::double) filter (where region = 'Capital')
                        / avg(list_price::double) filter (where region <> 'Capital')
                   from tx join c using (client_ref)""", **tables)
    assert naive > 1.1  # yet no effect targets the Capital: within cells its prices are everyone's
    untargeted = "category in ('grocery', 'apparel')"  # no default effect reaches these
    assert cell_ratio(market, segment=untargeted, group="region = 'Capital'") == 1.0
    store = dict(sql("""select age_band, avg((channel = 'store')::int) from tx join c using (client_ref)
                        where age_band in ('18-24', '65+') group by all""", **tables))
    assert store["65+"] > 0.7 and store["18-24"] < 0.2
    assert {c["name"] for c in market.planted["confounders"]} == {
        "premium_mix", "channel_mix", "promotion_exposure"}


def test_without_confounders_channel_mix_is_the_same_for_every_age():
    plain = generate_market(replace(SMALL, n_customers=2_000, confounders=False))
    store = dict(sql("""select age_band, avg((channel = 'store')::int) from tx join c using (client_ref)
                        where age_band in ('18-24', '65+') group by all""",
                     tx=plain.transactions, c=plain.customers))
    assert store["65+"] == pytest.approx(store["18-24"], abs=0.05)
    assert plain.planted["confounders"] == []


# --- files -------------------------------------------------------------------------------------------

def test_write_sample_market_writes_sources_and_the_planted_record(tmp_path, market):
    out = write_sample_market(tmp_path / "sample", spec=SMALL)
    assert sorted(p.name for p in out.iterdir()) == [
        "PLANTED.md", "customers.parquet", "planted.json", "transactions.parquet"]
    assert duckdb.read_parquet(str(out / "transactions.parquet")).arrow().read_all().equals(
        market.transactions.combine_chunks())
    planted = json.loads((out / "planted.json").read_text())
    assert planted["files"] == {"transactions": "transactions.parquet", "customers": "customers.parquet"}
    assert planted["totals"]["transactions"] == market.transactions.num_rows
    assert [(e["check"], e["attribute"], e["group"], e["segment"], e["size"]) for e in planted["effects"]] == [
        (e.check, e.attribute, e.group, e.segment, e.size) for e in DEFAULT_EFFECTS]
    assert {b["check"]: b["count"] for b in planted["consistency_breaches"]} == market.planted_breaches
    assert len(planted["confounders"]) == 3
    text = (out / "PLANTED.md").read_text()
    assert "should be flagged" in text and "should not be flagged" in text
    assert "STAFF-50" in text and "North-East" in text and "Capital" in text


def test_large_markets_are_written_in_parts_replacing_a_previous_single_file(tmp_path, market):
    out = tmp_path / "sample"
    write_sample_market(out, spec=SMALL)
    write_sample_market(out, spec=SMALL, max_rows_per_file=25_000)
    assert not (out / "transactions.parquet").exists()
    parts = sorted((out / "transactions").glob("part-*.parquet"))
    assert [p.name for p in parts[:2]] == ["part-0000.parquet", "part-0001.parquet"]
    written = pa.concat_tables(duckdb.read_parquet(str(p)).arrow().read_all() for p in parts)
    assert written.equals(market.transactions)
    assert json.loads((out / "planted.json").read_text())["files"]["transactions"] == "transactions/part-*.parquet"


def test_default_spec_matches_the_demo_contract():
    spec = MarketSpec()
    assert (spec.n_customers, spec.days, spec.start, spec.n_products) == (20_000, 90, date(2026, 8, 1), 300)
    assert {(e.check, e.attribute, e.group, e.size) for e in DEFAULT_EFFECTS} == {
        ("price_gap", "gender", "F", 0.05), ("price_gap", "region", "North-East", 0.03),
        ("discount_incidence", "age_band", "65+", 0.5), ("discount_depth", "age_band", "18-24", -0.08),
        ("loyalty_penalty", "tenure", "existing", 0.06)}
