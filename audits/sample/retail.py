"""Synthetic retail market with planted unfairness: the demo data and the auditor's test bench.

A market is generated from a `MarketSpec`. It contains unfair treatment planted on purpose
(`PlantedEffect`, listed in `DEFAULT_EFFECTS`), legitimate patterns that a naive tool mistakes for
unfairness (confounders) and a few rows that break the price list (consistency breaches). An audit
is right when it flags the first and the last and stays quiet about the confounders.

Market mechanics
----------------
- Customers: gender (F, M, and X for about 3%), age band, one of eight regions, and `customer_since`
  spread over seven years before the period, so about two thirds of purchases come from customers with
  more than a year of tenure. Each customer's number of lines is Poisson around
  `lines_per_customer` times a gamma-distributed activity level (a few heavy buyers, many light ones).
- Products: five categories. Base prices are lognormal per category (grocery cheap, electronics
  dear); 30% of each category's products are premium lines at about 2.2 times the budget price. A
  quarter of the products are re-priced once during the period (+-5%).
- List prices: base price x re-price x channel factor (store +4%, app -2%, online 0%), rounded to the
  cent. The list price of a product on a day in a channel is the same for every customer, unless a
  planted `price_gap` or `loyalty_penalty` effect says otherwise.
- Promotions are for everyone: each product is promoted in some weeks at 10-30% off, in every channel,
  with a campaign code such as `PROMO-W03-20` (week 3, 20% off).
- Coupons are personal (`CPN-...`): about 20% of the purchases that carry no promotion use the
  customer's coupon, worth 10, 15 or 20% (15% on average). A line carries at most one code.
- Purchases fall more on Fridays and Saturdays; store purchases happen in opening hours, online and
  app purchases peak in the evening. Quantity is mostly 1, sometimes 2 to 5 (subscriptions always 1).

Planted effects are applied generically from `MarketSpec.effects`: `price_gap` and `loyalty_penalty`
raise the list price shown (and so the price paid) of the targeted lines by `size`;
`discount_incidence` multiplies the targeted lines' coupon rate by `size`; `discount_depth` shifts
their coupon depth by `size` (clipped to 1-35%). Promotions are never targeted, so discount figures
measured over all discounts are diluted by them; `planted.json` reports the raw realised rates.

Confounders (`MarketSpec.confounders`): the Capital buys premium products 65% of the time (others
30%) and premium products are promoted less often (3% of product-weeks against 10%); 18-24 year olds
shop online and in the app, 65+ in store (the dearer channel). None of this is unfair: within the
same product, day and channel everyone pays the same.

Consistency breaches (`MarketSpec.consistency_breaches`): a few dozen lines whose `line_total` is not
`qty x paid_unit_price` (price_arithmetic) and a few dozen `STAFF-50` lines at 50% off, beyond the 40%
policy (discount_policy).

Determinism and scale: everything is vectorised with numpy, and the randomness is drawn per block of
`BLOCK_CUSTOMERS` customers from streams keyed by (seed, block), so the same spec yields the same rows
whether generated in memory or in chunks of any size. Rows are sorted by `sold_at` within a block.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from audits.sample.retail_spec import (
    BLOCK_CUSTOMERS,
    CAPITAL_PREMIUM_PURCHASE_PCT,
    CHANNEL_LIST_PRICE_FACTOR,
    COUPON_DEPTHS,
    COUPON_USE_PCT,
    EXISTING_TENURE_DAYS,
    PREMIUM_PRICE_FACTOR,
    PREMIUM_PURCHASE_PCT,
    PROMO_DEPTHS,
    PROMO_WEEK_PCT_BUDGET,
    PROMO_WEEK_PCT_PREMIUM,
    STAFF_CODE,
    STAFF_DEPTH,
    TRANSACTIONS_SCHEMA,
    MarketSpec,
    PlantedEffect,
)
from audits.sample.retail_world import EffectTally, World, transaction_chunks


@dataclass(frozen=True)
class Market:
    """A generated market: the two source tables and the record of what was planted in them."""

    spec: MarketSpec
    transactions: pa.Table
    customers: pa.Table
    planted_breaches: dict[str, int]
    planted: dict[str, Any] = field(repr=False)  # the content of planted.json


def generate_market(spec: MarketSpec) -> Market:
    """Generate the whole market in memory (fine up to a few million lines)."""
    world = World(spec)
    tally = EffectTally(len(spec.effects))
    chunks = list(transaction_chunks(world, chunk_customers=spec.n_customers, tally=tally))
    transactions = pa.concat_tables(chunks) if chunks else TRANSACTIONS_SCHEMA.empty_table()
    return Market(spec=spec, transactions=transactions, customers=world.customers_table(),
                  planted_breaches=dict(world.breach_counts), planted=_planted_record(world, tally))


def iter_transaction_chunks(spec: MarketSpec, *, chunk_customers: int = 100_000) -> Iterator[pa.Table]:
    """Yield the market's transactions a group of customers at a time, for markets too big for memory.

    `chunk_customers` is rounded up to a multiple of `BLOCK_CUSTOMERS`; the concatenated chunks equal
    `generate_market(spec).transactions` whatever the chunk size.
    """
    world = World(spec)
    tally = EffectTally(len(spec.effects))  # unused: the figures are only recorded by the writer
    yield from transaction_chunks(world, chunk_customers=chunk_customers, tally=tally)


def write_sample_market(out_dir: Path, *, spec: MarketSpec = MarketSpec(),
                        max_rows_per_file: int = 1_000_000) -> Path:
    """Write the market's source files, planted.json and PLANTED.md into `out_dir`; return it.

    Transactions go to `transactions.parquet`, or, when the market has more than `max_rows_per_file`
    lines, to `transactions/part-0000.parquet`... one chunk at a time, so memory stays bounded.
    Transaction files left by an earlier run in `out_dir` are removed so a glob never mixes runs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    single, parts_dir = out_dir / "transactions.parquet", out_dir / "transactions"
    single.unlink(missing_ok=True)
    for stale in parts_dir.glob("part-*.parquet"):
        stale.unlink()

    world = World(spec)
    tally = EffectTally(len(spec.effects))
    if world.n_lines_total <= max_rows_per_file:
        chunks = list(transaction_chunks(world, chunk_customers=spec.n_customers, tally=tally))
        table = pa.concat_tables(chunks) if chunks else TRANSACTIONS_SCHEMA.empty_table()
        pq.write_table(table, single)
        transactions_path = single.name
    else:
        parts_dir.mkdir(exist_ok=True)
        chunk_customers = max(1, int(max_rows_per_file / spec.lines_per_customer / 1.1))
        chunks = transaction_chunks(world, chunk_customers=chunk_customers, tally=tally)
        for number, chunk in enumerate(chunks):
            pq.write_table(chunk, parts_dir / f"part-{number:04d}.parquet")
        transactions_path = f"{parts_dir.name}/part-*.parquet"
    pq.write_table(world.customers_table(), out_dir / "customers.parquet")

    planted = _planted_record(world, tally)
    planted["files"] = {"transactions": transactions_path, "customers": "customers.parquet"}
    (out_dir / "planted.json").write_text(json.dumps(planted, indent=2) + "\n", encoding="utf-8")
    (out_dir / "PLANTED.md").write_text(_planted_markdown(planted), encoding="utf-8")
    return out_dir


# --- the record of what was planted --------------------------------------------------------------

def _confounders(spec: MarketSpec) -> list[dict[str, Any]]:
    if not spec.confounders:
        return []
    return [
        {"name": "premium_mix", "attribute": "region", "groups": ["Capital"], "should_flag": False,
         "description": f"Customers in the Capital choose premium products {CAPITAL_PREMIUM_PURCHASE_PCT:.0%} of "
                        f"the time, others {PREMIUM_PURCHASE_PCT:.0%}; premium lines cost about "
                        f"{PREMIUM_PRICE_FACTOR}x the budget ones.",
         "naive_misreading": "Comparing mean prices paid says the Capital pays far more; within the same "
                             "product, day and channel the same rules apply to it as to everyone."},
        {"name": "channel_mix", "attribute": "age_band", "groups": ["18-24", "65+"], "should_flag": False,
         "description": "18-24 year olds buy mostly online and in the app, 65+ mostly in store, where list "
                        "prices are 4% above online (app 2% below) for everyone.",
         "naive_misreading": "Ignoring the channel says 65+ pay more and 18-24 pay less; controlling for "
                             "channel shows no gap."},
        {"name": "promotion_exposure", "attribute": "region", "groups": ["Capital"], "should_flag": False,
         "description": f"Premium products are promoted in {PROMO_WEEK_PCT_PREMIUM:.0%} of product-weeks, budget "
                        f"ones in {PROMO_WEEK_PCT_BUDGET:.0%}; promotions apply to everyone buying the product.",
         "naive_misreading": "A raw discount-rate comparison says the Capital is discounted less often; "
                             "for the same product and day it gets every promotion everyone else gets."},
    ]


def _side_effects(effects: tuple[PlantedEffect, ...]) -> list[str]:
    """What the planted effects look like to checks other than their own (still true findings)."""
    checks = {effect.check for effect in effects}
    notes = []
    if checks & {"price_gap", "loyalty_penalty"}:
        notes.append("A price gap also shows as price dispersion: the targeted product-day-channel cells "
                     "carry two list prices, and the price_dispersion check is right to count them.")
    if checks & {"discount_incidence", "discount_depth"}:
        notes.append("Discount effects touch coupons only, so pooling all discounts dilutes them with "
                     "promotions (`realised_raw` in planted.json has the raw rates). They also raise the "
                     "group's mean price paid within a cell by roughly 1-1.5% (default sizes) while its list "
                     "prices stay equal: a price_gap on paid prices sees the same unfairness.")
    return notes


def _planted_record(world: World, tally: EffectTally) -> dict[str, Any]:
    spec = world.spec
    return {
        "schema_version": 1,
        "generator": "audits.sample",
        "spec": {"n_customers": spec.n_customers, "days": spec.days, "start": spec.start.isoformat(),
                 "n_products": spec.n_products, "lines_per_customer": spec.lines_per_customer,
                 "seed": spec.seed, "confounders": spec.confounders,
                 "consistency_breaches": spec.consistency_breaches},
        "period": {"start": spec.start.isoformat(), "end": spec.end.isoformat()},
        "totals": {"transactions": world.n_lines_total, "customers": spec.n_customers,
                   "products": spec.n_products},
        "effects": [effect.to_json() | {"should_flag": True, "realised_raw": tally.realised(i)}
                    for i, effect in enumerate(spec.effects)],
        "side_effects": _side_effects(spec.effects),
        "confounders": _confounders(spec),
        "consistency_breaches": [
            {"check": "price_arithmetic", "count": world.breach_counts["price_arithmetic"],
             "description": "line_total differs from qty x paid_unit_price by 0.01 to 4.99 EUR."},
            {"check": "discount_policy", "count": world.breach_counts["discount_policy"],
             "description": f"promo code {STAFF_CODE}: {STAFF_DEPTH:.0%} off list, beyond the 40% policy."},
        ],
        "mechanics": {"channel_list_price_factor": CHANNEL_LIST_PRICE_FACTOR,
                      "promo_depths": list(PROMO_DEPTHS), "coupon_use_pct": COUPON_USE_PCT,
                      "coupon_depths": list(COUPON_DEPTHS), "existing_tenure_days": EXISTING_TENURE_DAYS,
                      "rows_sorted_by": "sold_at within each block of "
                                        f"{BLOCK_CUSTOMERS} customers"},
    }


def _planted_markdown(planted: dict[str, Any]) -> str:
    """PLANTED.md: what was planted, for a person checking an audit against the truth."""
    period, totals = planted["period"], planted["totals"]
    out = ["# What this sample market contains", "",
           f"{totals['transactions']:,} purchase lines by {totals['customers']:,} customers of "
           f"{totals['products']} products, {period['start']} to {period['end']} "
           f"(seed {planted['spec']['seed']}).",
           "Prices are the same for every customer buying the same product on the same day in the same "
           "channel, except where listed below.", "",
           "## Unfair treatment planted on purpose (should be flagged)", ""]
    if not planted["effects"]:
        out.append("None: a correct audit flags no disparity in this market.")
    for effect in planted["effects"]:
        raw = effect["realised_raw"]
        where = ", ".join(f"{k} = {v}" for k, v in (effect["segment"] or {}).items()) or "all purchases"
        out.append(f"- **{effect['check']}**, {effect['attribute']} = {effect['group']}, {where}: "
                   f"{effect['description']} ({raw['lines_group']:,} lines in scope.)")
    out += [f"\n{note}" for note in planted["side_effects"]]
    out += ["", "## Legitimate patterns a naive tool would wrongly flag (should not be flagged)", ""]
    out += [f"- **{c['name']}** ({c['attribute']}: {', '.join(c['groups'])}): {c['description']} "
            f"{c['naive_misreading']}" for c in planted["confounders"]] or ["None (confounders switched off)."]
    out += ["", "## Rows that break the price list", ""]
    out += [f"- **{b['check']}**: {b['count']} lines. {b['description']}"
            for b in planted["consistency_breaches"]]
    return "\n".join(out) + "\n"
