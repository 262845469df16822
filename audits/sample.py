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
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

EffectCheck = Literal["price_gap", "discount_incidence", "discount_depth", "loyalty_penalty"]
EFFECT_CHECKS: tuple[str, ...] = ("price_gap", "discount_incidence", "discount_depth", "loyalty_penalty")

CATEGORIES: tuple[str, ...] = ("grocery", "personal_care", "apparel", "electronics", "subscriptions")
_SKU_PREFIXES = ("GR", "PC", "AP", "EL", "SB")
_CATEGORY_PRODUCT_SHARE = np.array([0.30, 0.25, 0.22, 0.13, 0.10])
_CATEGORY_LINE_SHARE = np.array([0.34, 0.22, 0.18, 0.10, 0.16])
_BUDGET_MEDIAN_EUR = np.array([2.5, 6.0, 25.0, 120.0, 9.0])
_PRICE_SIGMA = np.array([0.45, 0.40, 0.45, 0.70, 0.30])
_SUBSCRIPTIONS = CATEGORIES.index("subscriptions")
PREMIUM_PRICE_FACTOR = 2.2
PREMIUM_PRODUCT_PCT = 0.30
MIN_BASE_PRICE_CENTS = 49

CHANNELS: tuple[str, ...] = ("online", "store", "app")
CHANNEL_LIST_PRICE_FACTOR: dict[str, float] = {"online": 1.00, "store": 1.04, "app": 0.98}
_CHANNEL_MIX = (0.45, 0.40, 0.15)
_CHANNEL_MIX_BY_AGE = {"18-24": (0.45, 0.10, 0.45), "65+": (0.12, 0.83, 0.05)}  # confounder

GENDERS: tuple[str, ...] = ("F", "M", "X")
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
REGIONS: tuple[str, ...] = (
    "Capital", "North-East", "North-West", "Midlands", "East", "South-East", "South-West", "Islands",
)
_ATTRIBUTE_SHARES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "gender": (GENDERS, (0.485, 0.485, 0.03)),
    "age_band": (AGE_BANDS, (0.12, 0.19, 0.19, 0.18, 0.16, 0.16)),
    "region": (REGIONS, (0.20, 0.12, 0.12, 0.12, 0.12, 0.12, 0.12, 0.08)),
}
PREMIUM_PURCHASE_PCT = 0.30
CAPITAL_PREMIUM_PURCHASE_PCT = 0.65  # confounder

PROMO_DEPTHS: tuple[float, ...] = (0.10, 0.15, 0.20, 0.25, 0.30)
PROMO_WEEK_PCT = 0.08
PROMO_WEEK_PCT_BUDGET, PROMO_WEEK_PCT_PREMIUM = 0.10, 0.03  # confounder
COUPON_USE_PCT = 0.20
COUPON_DEPTHS: tuple[float, ...] = (0.10, 0.15, 0.20)
COUPON_DEPTH_RANGE = (0.01, 0.35)  # keeps planted depth effects inside the 40% policy
STAFF_CODE, STAFF_DEPTH = "STAFF-50", 0.50
EXISTING_TENURE_DAYS = 365
REPRICED_PRODUCT_PCT, REPRICE_STEP = 0.25, 0.05

_QTY_SHARE = (0.80, 0.12, 0.05, 0.02, 0.01)
_WEEKDAY_WEIGHT = (0.90, 0.90, 0.95, 1.00, 1.15, 1.30, 0.80)  # Monday first
_HOUR_WEIGHT = {  # purchases per hour of day, 0h to 23h
    "online": (1, .6, .4, .3, .3, .4, .8, 1.5, 2.5, 3, 3.2, 3.5, 4, 3.8, 3.5, 3.5, 3.8, 4.2, 5, 6, 6.5, 6, 4, 2),
    "store": (0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 5, 6, 8, 8, 6, 6, 7, 9, 8, 5, 2, 0, 0, 0),
    "app": (1, .5, .3, .2, .2, .5, 1.5, 3.5, 4, 3, 3, 3.5, 4.5, 4, 3, 3, 3.5, 4.5, 4.5, 5, 6, 6.5, 4.5, 2),
}
PRICE_ARITHMETIC_BREACHES = 36
DISCOUNT_POLICY_BREACHES = 24
BLOCK_CUSTOMERS = 2_000

MONEY = pa.decimal128(12, 2)
TRANSACTIONS_SCHEMA = pa.schema([
    ("order_line_id", pa.string()), ("sold_at", pa.timestamp("us")), ("client_ref", pa.string()),
    ("sku", pa.string()), ("category", pa.string()), ("channel", pa.string()), ("qty", pa.int32()),
    ("list_price", MONEY), ("paid_unit_price", MONEY), ("discount_amount", MONEY), ("line_total", MONEY),
    ("promo_code", pa.string()), ("currency", pa.string()),
])
CUSTOMERS_SCHEMA = pa.schema([
    ("client_ref", pa.string()), ("customer_since", pa.date32()), ("gender", pa.string()),
    ("age_band", pa.string()), ("region", pa.string()),
])
# canonical name -> this generator's source column name, for the demo's ingest config
TRANSACTION_COLUMN_MAP: dict[str, str] = {
    "transaction_id": "order_line_id", "timestamp": "sold_at", "customer_id": "client_ref",
    "product_id": "sku", "quantity": "qty", "list_price": "list_price", "unit_price": "paid_unit_price",
    "category": "category", "channel": "channel", "discount_amount": "discount_amount",
    "line_total": "line_total", "discount_code": "promo_code", "currency": "currency",
}
CUSTOMER_COLUMN_MAP: dict[str, str] = {"customer_id": "client_ref", "customer_since": "customer_since"}

UNKNOWN_EFFECT_CHECK = "PlantedEffect: check {check!r} is not one of {choices}"
UNKNOWN_ATTRIBUTE = "PlantedEffect: attribute {attribute!r} is not one of {choices}"
UNKNOWN_GROUP = "PlantedEffect: {attribute} has no group {group!r}; choose one of {choices}"
BAD_SIZE = "PlantedEffect: size {size} is impossible for {check}: {rule}"
BAD_SPEC = "MarketSpec: {field} must be {rule}, got {value!r}"


@dataclass(frozen=True)
class PlantedEffect:
    """One unfair treatment planted on purpose, which a correct audit must flag.

    `size` is, for `price_gap` and `loyalty_penalty`, the multiplicative excess (0.05 = the group pays
    5% more); for `discount_incidence`, the group's coupon rate as a ratio of everyone else's (0.5);
    for `discount_depth`, the change in coupon depth in percentage points as a fraction (-0.08).
    `loyalty_penalty` uses attribute "tenure" and group "existing" (over a year) or "new".
    `segment` restricts the effect to lines whose category, channel or customer attribute match.
    """

    check: EffectCheck
    attribute: str
    group: str
    segment: dict[str, str] | None
    size: float
    description: str

    def __post_init__(self) -> None:
        if self.check not in EFFECT_CHECKS:
            raise ValueError(UNKNOWN_EFFECT_CHECK.format(check=self.check, choices=EFFECT_CHECKS))
        levels = _attribute_levels()
        _check_level(self.attribute, self.group, levels)
        if (self.check == "loyalty_penalty") != (self.attribute == "tenure"):
            raise ValueError(UNKNOWN_ATTRIBUTE.format(
                attribute=self.attribute, choices="'tenure' (loyalty_penalty only)"))
        for key, value in (self.segment or {}).items():
            _check_level(key, value, levels)
        rule = {"price_gap": (self.size > -1, "above -1"), "loyalty_penalty": (self.size > -1, "above -1"),
                "discount_incidence": (self.size >= 0, "0 or more"),
                "discount_depth": (-1 < self.size < 1, "between -1 and 1")}[self.check]
        if not rule[0]:
            raise ValueError(BAD_SIZE.format(size=self.size, check=self.check, rule=rule[1]))

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "attribute": self.attribute, "group": self.group,
                "segment": self.segment, "size": self.size, "description": self.description}


def _attribute_levels() -> dict[str, tuple[str, ...]]:
    levels = {name: values for name, (values, _) in _ATTRIBUTE_SHARES.items()}
    return levels | {"category": CATEGORIES, "channel": CHANNELS, "tenure": ("existing", "new")}


def _check_level(attribute: str, value: str, levels: dict[str, tuple[str, ...]]) -> None:
    if attribute not in levels:
        raise ValueError(UNKNOWN_ATTRIBUTE.format(attribute=attribute, choices=tuple(levels)))
    if value not in levels[attribute]:
        raise ValueError(UNKNOWN_GROUP.format(attribute=attribute, group=value, choices=levels[attribute]))


DEFAULT_EFFECTS: tuple[PlantedEffect, ...] = (
    PlantedEffect("price_gap", "gender", "F", {"category": "personal_care"}, 0.05,
                  "Women are shown and pay 5% more than other customers for the same personal-care "
                  "product on the same day and channel."),
    PlantedEffect("price_gap", "region", "North-East", {"category": "electronics"}, 0.03,
                  "Customers in the North-East are shown and pay 3% more for the same electronics "
                  "product on the same day and channel."),
    PlantedEffect("discount_incidence", "age_band", "65+", None, 0.5,
                  "Customers aged 65+ get coupons half as often as everyone else; promotions are "
                  "unaffected."),
    PlantedEffect("discount_depth", "age_band", "18-24", None, -0.08,
                  "Customers aged 18-24 get coupon discounts 8 percentage points shallower than "
                  "everyone else."),
    PlantedEffect("loyalty_penalty", "tenure", "existing", {"category": "subscriptions"}, 0.06,
                  "Customers of more than a year pay 6% more than new customers for the same "
                  "subscription: the renewal price is above the new-business price."),
)
NO_EFFECTS: tuple[PlantedEffect, ...] = ()


@dataclass(frozen=True)
class MarketSpec:
    """Everything that determines a generated market; the same spec always gives the same rows."""

    n_customers: int = 20_000
    days: int = 90
    start: date = date(2026, 8, 1)
    n_products: int = 300
    lines_per_customer: float = 12.0
    seed: int = 7
    effects: tuple[PlantedEffect, ...] = DEFAULT_EFFECTS
    confounders: bool = True
    consistency_breaches: bool = True

    def __post_init__(self) -> None:
        for name, ok, rule in (
            ("n_customers", self.n_customers >= 1, "at least 1"),
            ("days", self.days >= 1, "at least 1"),
            ("n_products", self.n_products >= 2 * len(CATEGORIES),
             f"at least {2 * len(CATEGORIES)} (a budget and a premium product per category)"),
            ("lines_per_customer", self.lines_per_customer > 0, "positive"),
        ):
            if not ok:
                raise ValueError(BAD_SPEC.format(field=name, rule=rule, value=getattr(self, name)))

    @property
    def end(self) -> date:
        """Last day of the period (inclusive)."""
        return self.start + timedelta(days=self.days - 1)


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
    world = _World(spec)
    tally = _EffectTally(len(spec.effects))
    chunks = list(_transaction_chunks(world, chunk_customers=spec.n_customers, tally=tally))
    transactions = pa.concat_tables(chunks) if chunks else TRANSACTIONS_SCHEMA.empty_table()
    return Market(spec=spec, transactions=transactions, customers=world.customers_table(),
                  planted_breaches=dict(world.breach_counts), planted=_planted_record(world, tally))


def iter_transaction_chunks(spec: MarketSpec, *, chunk_customers: int = 100_000) -> Iterator[pa.Table]:
    """Yield the market's transactions a group of customers at a time, for markets too big for memory.

    `chunk_customers` is rounded up to a multiple of `BLOCK_CUSTOMERS`; the concatenated chunks equal
    `generate_market(spec).transactions` whatever the chunk size.
    """
    world = _World(spec)
    tally = _EffectTally(len(spec.effects))  # unused: the figures are only recorded by the writer
    yield from _transaction_chunks(world, chunk_customers=chunk_customers, tally=tally)


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

    world = _World(spec)
    tally = _EffectTally(len(spec.effects))
    if world.n_lines_total <= max_rows_per_file:
        chunks = list(_transaction_chunks(world, chunk_customers=spec.n_customers, tally=tally))
        table = pa.concat_tables(chunks) if chunks else TRANSACTIONS_SCHEMA.empty_table()
        pq.write_table(table, single)
        transactions_path = single.name
    else:
        parts_dir.mkdir(exist_ok=True)
        chunk_customers = max(1, int(max_rows_per_file / spec.lines_per_customer / 1.1))
        chunks = _transaction_chunks(world, chunk_customers=chunk_customers, tally=tally)
        for number, chunk in enumerate(chunks):
            pq.write_table(chunk, parts_dir / f"part-{number:04d}.parquet")
        transactions_path = f"{parts_dir.name}/part-*.parquet"
    pq.write_table(world.customers_table(), out_dir / "customers.parquet")

    planted = _planted_record(world, tally)
    planted["files"] = {"transactions": transactions_path, "customers": "customers.parquet"}
    (out_dir / "planted.json").write_text(json.dumps(planted, indent=2) + "\n", encoding="utf-8")
    (out_dir / "PLANTED.md").write_text(_planted_markdown(planted), encoding="utf-8")
    return out_dir


# --- the world: everything decided before any purchase (products, promotions, customers) ----------

_STREAM_PRODUCTS, _STREAM_CUSTOMERS, _STREAM_LINES, _STREAM_BREACHES = range(4)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _cdf_rows(weights: Any) -> np.ndarray:
    """Cumulative distributions, one per row, the last entry exactly 1."""
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    cdf = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
    cdf[:, -1] = 1.0
    return cdf


def _draw(cdf: np.ndarray, row: np.ndarray | int, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of a category for each u, from the distribution in `cdf[row]`, vectorised.

    Row r's CDF is shifted to (r, r+1], so one searchsorted over the flattened table serves all rows.
    """
    n_rows, width = cdf.shape
    shifted = (cdf + np.arange(n_rows)[:, None]).ravel()
    row = np.broadcast_to(np.asarray(row, dtype=np.int64), u.shape)
    return np.searchsorted(shifted, row + u, side="right") - row * width


class _World:
    """Products, promotions, customers and breach positions: fixed before any line is drawn."""

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self._build_products(_rng(spec.seed, _STREAM_PRODUCTS))
        self._build_customers(_rng(spec.seed, _STREAM_CUSTOMERS))
        self._build_breaches(_rng(spec.seed, _STREAM_BREACHES))
        weekdays = [(spec.start + timedelta(days=d)).weekday() for d in range(spec.days)]
        self.day_cdf = _cdf_rows([_WEEKDAY_WEIGHT[w] for w in weekdays])
        self.hour_cdf = _cdf_rows([_HOUR_WEIGHT[c] for c in CHANNELS])
        self.qty_cdf = _cdf_rows(_QTY_SHARE)
        self.category_cdf = _cdf_rows(_CATEGORY_LINE_SHARE)
        mix = [_CHANNEL_MIX_BY_AGE.get(band, _CHANNEL_MIX) if spec.confounders else _CHANNEL_MIX
               for band in AGE_BANDS]
        self.channel_cdf_by_age = _cdf_rows(mix)
        self.premium_pct_by_region = np.full(len(REGIONS), PREMIUM_PURCHASE_PCT)
        if spec.confounders:
            self.premium_pct_by_region[REGIONS.index("Capital")] = CAPITAL_PREMIUM_PURCHASE_PCT
        self.channel_factor = np.array([CHANNEL_LIST_PRICE_FACTOR[c] for c in CHANNELS])
        self.start_day = (spec.start - date(1970, 1, 1)).days

    def _build_products(self, rng: np.random.Generator) -> None:
        spec, n_categories = self.spec, len(CATEGORIES)
        counts = np.maximum(2, np.floor(_CATEGORY_PRODUCT_SHARE * spec.n_products).astype(np.int64))
        counts[0] += spec.n_products - counts.sum()  # grocery absorbs the rounding (never below 2)
        n_premium = np.clip(np.rint(counts * PREMIUM_PRODUCT_PCT).astype(np.int64), 1, counts - 1)
        # products ordered by (category, tier): group g = 2 * category + is_premium is a contiguous range
        group_count = np.column_stack([counts - n_premium, n_premium]).ravel()
        self.group_start = np.concatenate([[0], np.cumsum(group_count)[:-1]])
        self.group_count = group_count
        group = np.repeat(np.arange(2 * n_categories), group_count)
        self.product_category, self.product_premium = group // 2, (group % 2).astype(bool)
        n = spec.n_products
        tier_factor = np.where(self.product_premium, PREMIUM_PRICE_FACTOR, 1.0)
        median = _BUDGET_MEDIAN_EUR[self.product_category] * tier_factor
        price = median * np.exp(rng.normal(0.0, _PRICE_SIGMA[self.product_category]))
        self.base_cents = np.maximum(MIN_BASE_PRICE_CENTS, np.rint(price * 100))
        repriced = rng.random(n) < REPRICED_PRODUCT_PCT
        self.reprice_day = np.where(repriced, rng.integers(1, max(2, spec.days), n), spec.days)
        self.reprice_factor = np.where(rng.random(n) < 0.5, 1 - REPRICE_STEP, 1 + REPRICE_STEP)
        index_in_category = np.arange(n) - np.concatenate([[0], np.cumsum(counts)[:-1]])[self.product_category]
        self.sku = pa.array([f"{_SKU_PREFIXES[c]}-{i + 1:04d}"
                             for c, i in zip(self.product_category, index_in_category, strict=True)])

        n_weeks = math.ceil(spec.days / 7)
        if spec.confounders:
            promo_pct = np.where(self.product_premium, PROMO_WEEK_PCT_PREMIUM, PROMO_WEEK_PCT_BUDGET)
        else:
            promo_pct = np.full(n, PROMO_WEEK_PCT)
        is_promoted = rng.random((n, n_weeks)) < promo_pct[:, None]
        depth_index = rng.integers(0, len(PROMO_DEPTHS), (n, n_weeks))
        self.promo_depth = np.where(is_promoted, np.asarray(PROMO_DEPTHS)[depth_index], 0.0)
        campaign = np.arange(n_weeks)[None, :] * len(PROMO_DEPTHS) + depth_index  # index into campaign_codes
        self.promo_campaign = np.where(is_promoted, campaign, -1)
        self.campaign_codes = pa.array([f"PROMO-W{w + 1:02d}-{round(d * 100)}"
                                        for w in range(n_weeks) for d in PROMO_DEPTHS])

    def _build_customers(self, rng: np.random.Generator) -> None:
        n = self.spec.n_customers
        self.attribute_codes = {name: _draw(_cdf_rows(shares), 0, rng.random(n))
                                for name, (_, shares) in _ATTRIBUTE_SHARES.items()}
        # a third joined within the last year before the period, the rest one to seven years before
        recent = rng.random(n) < 0.35
        days_before = np.where(recent, rng.integers(1, 366, n), rng.integers(366, 7 * 365, n))
        self.since_offset = -days_before  # customer_since relative to the period start
        self.coupon_depth = np.asarray(COUPON_DEPTHS)[rng.integers(0, len(COUPON_DEPTHS), n)]
        activity = rng.gamma(2.0, 0.5, n)
        self.n_lines = rng.poisson(self.spec.lines_per_customer * activity)
        self.line_offset = np.concatenate([[0], np.cumsum(self.n_lines)])
        self.n_lines_total = int(self.line_offset[-1])
        width = max(6, len(str(n)))
        numbers = pc.cast(pa.array(np.arange(1, n + 1)), pa.string())
        self.client_ref = pc.binary_join_element_wise("C", pc.utf8_lpad(numbers, width, "0"), "")

    def _build_breaches(self, rng: np.random.Generator) -> None:
        n_each = self.n_lines_total // 40  # keeps tiny markets mostly clean
        counts = {"price_arithmetic": min(PRICE_ARITHMETIC_BREACHES, n_each),
                  "discount_policy": min(DISCOUNT_POLICY_BREACHES, n_each)}
        if not self.spec.consistency_breaches:
            counts = dict.fromkeys(counts, 0)
        self.breach_counts = counts
        chosen = rng.choice(self.n_lines_total, size=sum(counts.values()), replace=False)
        self.arithmetic_at = chosen[:counts["price_arithmetic"]]
        self.policy_at = chosen[counts["price_arithmetic"]:]
        deltas = rng.integers(1, 500, self.arithmetic_at.size) * rng.choice([-1, 1], self.arithmetic_at.size)
        self.arithmetic_delta = deltas

    def customers_table(self) -> pa.Table:
        since = np.asarray(self.start_day + self.since_offset, dtype="datetime64[D]")
        columns = {"client_ref": self.client_ref, "customer_since": pa.array(since, pa.date32())}
        for name, (levels, _) in _ATTRIBUTE_SHARES.items():
            columns[name] = pa.array(levels).take(pa.array(self.attribute_codes[name]))
        return pa.table(columns, schema=CUSTOMERS_SCHEMA)


# --- purchases -----------------------------------------------------------------------------------

class _EffectTally:
    """Raw (not within-cell) realised figures per planted effect, summed over blocks."""

    FIELDS = ("lines", "lines_without_promo", "coupons", "discounted", "discount_pct_sum")

    def __init__(self, n_effects: int) -> None:
        self.sums = np.zeros((n_effects, 2, len(self.FIELDS)))  # effect x (group, rest) x field

    def add(self, index: int, in_group: np.ndarray, in_segment: np.ndarray,
            lines: dict[str, np.ndarray]) -> None:
        for side, mask in enumerate((in_segment & in_group, in_segment & ~in_group)):
            self.sums[index, side] += [
                mask.sum(), (mask & ~lines["has_promo"]).sum(), (mask & lines["has_coupon"]).sum(),
                (mask & (lines["depth"] > 0)).sum(), lines["depth"][mask].sum(),
            ]

    def realised(self, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for side, name in enumerate(("group", "rest")):
            lines, no_promo, coupons, discounted, pct_sum = self.sums[index, side].tolist()
            out[f"lines_{name}"] = int(lines)
            out[f"coupon_rate_{name}"] = round(coupons / no_promo, 4) if no_promo else None
            out[f"discount_rate_{name}"] = round(discounted / lines, 4) if lines else None
            out[f"mean_discount_pct_{name}"] = round(pct_sum / discounted, 4) if discounted else None
        return out


def _effect_masks(world: _World, effect: PlantedEffect,
                  lines: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(in_group, in_segment) for each line, for any attribute, group and segment."""
    def matches(attribute: str, value: str) -> np.ndarray:
        if attribute == "tenure":
            return lines["is_existing"] == (value == "existing")
        levels = _attribute_levels()[attribute]
        if attribute in ("category", "channel"):
            codes = lines[attribute]
        else:
            codes = world.attribute_codes[attribute][lines["customer"]]
        return codes == levels.index(value)

    in_segment = np.ones(lines["customer"].size, dtype=bool)
    for key, value in (effect.segment or {}).items():
        in_segment &= matches(key, value)
    return matches(effect.attribute, effect.group), in_segment


def _block_lines(world: _World, block: int, tally: _EffectTally) -> dict[str, np.ndarray]:
    """All lines of one block of customers, as numpy columns sorted by time (money in cents)."""
    spec = world.spec
    first, last = block * BLOCK_CUSTOMERS, min((block + 1) * BLOCK_CUSTOMERS, spec.n_customers)
    customer = np.repeat(np.arange(first, last), world.n_lines[first:last])
    n = customer.size
    rng = _rng(spec.seed, _STREAM_LINES, block)
    # every draw happens whatever the effects, so markets differing only in effects share their rows
    u = rng.random((8, n))
    second_of_hour = rng.integers(0, 3600, n)

    day = _draw(world.day_cdf, 0, u[0])
    channel = _draw(world.channel_cdf_by_age, world.attribute_codes["age_band"][customer], u[1])
    category = _draw(world.category_cdf, 0, u[2])
    is_premium = u[3] < world.premium_pct_by_region[world.attribute_codes["region"][customer]]
    group = 2 * category + is_premium
    # popularity falls off within a group: low indices sell more
    rank = np.minimum((u[4] ** 1.6 * world.group_count[group]).astype(np.int64), world.group_count[group] - 1)
    product = world.group_start[group] + rank
    qty = np.where(category == _SUBSCRIPTIONS, 1, _draw(world.qty_cdf, 0, u[5]) + 1)
    hour = _draw(world.hour_cdf, channel, u[6])
    sold_at = ((world.start_day + day) * 86_400 + hour * 3_600 + second_of_hour) * 1_000_000
    lines = {"customer": customer, "category": category, "channel": channel,
             "is_existing": day - world.since_offset[customer] > EXISTING_TENURE_DAYS}

    price_factor = np.ones(n)
    coupon_factor = np.ones(n)
    depth_shift = np.zeros(n)
    masks = [_effect_masks(world, effect, lines) for effect in spec.effects]
    for effect, (in_group, in_segment) in zip(spec.effects, masks, strict=True):
        target = in_group & in_segment
        if effect.check in ("price_gap", "loyalty_penalty"):
            price_factor[target] *= 1 + effect.size
        elif effect.check == "discount_incidence":
            coupon_factor[target] *= effect.size
        else:
            depth_shift[target] += effect.size

    repriced = np.where(day >= world.reprice_day[product], world.reprice_factor[product], 1.0)
    list_cents = np.rint(world.base_cents[product] * repriced * world.channel_factor[channel] * price_factor)
    promo_depth = world.promo_depth[product, day // 7]
    has_promo = promo_depth > 0
    has_coupon = ~has_promo & (u[7] < COUPON_USE_PCT * coupon_factor)
    coupon_depth = np.clip(world.coupon_depth[customer] + depth_shift, *COUPON_DEPTH_RANGE)
    depth = np.where(has_promo, promo_depth, np.where(has_coupon, coupon_depth, 0.0))
    # code: campaign index >= 0, -1 none, -2 the customer's coupon, -3 staff code
    code = np.where(has_promo, world.promo_campaign[product, day // 7], np.where(has_coupon, -2, -1))

    order = np.argsort(sold_at, kind="stable")
    first_line = int(world.line_offset[first])
    policy = world.policy_at[(world.policy_at >= first_line) & (world.policy_at < first_line + n)] - first_line
    # the id sequence follows generation order, not time, so scrambled ids do not progress with time
    sequence = np.arange(first_line, first_line + n, dtype=np.uint64)[order]
    cols = {"sequence": sequence, "sold_at": sold_at[order],
            "customer": customer[order], "product": product[order], "category": category[order],
            "channel": channel[order], "qty": qty[order], "list_cents": list_cents[order].astype(np.int64),
            "depth": depth[order], "code": code[order], "has_promo": has_promo[order],
            "has_coupon": has_coupon[order]}
    cols["depth"][policy] = STAFF_DEPTH
    cols["code"][policy] = -3
    cols["has_promo"][policy] = cols["has_coupon"][policy] = False

    paid = np.rint(cols["list_cents"] * (1 - cols["depth"])).astype(np.int64)
    cols["paid_cents"] = paid
    cols["discount_cents"] = (cols["list_cents"] - paid) * cols["qty"]
    total = paid * cols["qty"]
    in_block = (world.arithmetic_at >= first_line) & (world.arithmetic_at < first_line + n)
    at, delta = world.arithmetic_at[in_block] - first_line, world.arithmetic_delta[in_block]
    total[at] = np.where(total[at] + delta > 0, total[at] + delta, total[at] + np.abs(delta))
    cols["total_cents"] = total

    for index, (in_group, in_segment) in enumerate(masks):
        tally.add(index, in_group[order], in_segment[order], cols)
    return cols


def _money(cents: np.ndarray) -> pa.Array:
    """decimal128(12, 2) from integer cents, exactly (little-endian 128-bit words, no float rounding)."""
    words = np.empty((cents.size, 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = cents >> 63
    return pa.Array.from_buffers(MONEY, cents.size, [None, pa.py_buffer(words)])


def _transaction_chunks(world: _World, *, chunk_customers: int, tally: _EffectTally) -> Iterator[pa.Table]:
    spec = world.spec
    n_blocks = math.ceil(spec.n_customers / BLOCK_CUSTOMERS)
    blocks_per_chunk = max(1, math.ceil(chunk_customers / BLOCK_CUSTOMERS))
    for first_block in range(0, n_blocks, blocks_per_chunk):
        last_block = min(first_block + blocks_per_chunk, n_blocks)
        blocks = [_block_lines(world, b, tally) for b in range(first_block, last_block)]
        cols = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}
        del blocks  # halves the chunk's peak memory
        customers = range(first_block * BLOCK_CUSTOMERS, min(last_block * BLOCK_CUSTOMERS, spec.n_customers))
        yield _chunk_table(world, cols, customers=customers)


def _chunk_table(world: _World, cols: dict[str, np.ndarray], *, customers: range) -> pa.Table:
    """The source-shaped Arrow table of one chunk's lines (`customers` are the chunk's customers)."""
    n = cols["sequence"].size
    # order_line_id: the line's sequence number scrambled by a bijection of [0, 10^10), so ids look
    # arbitrary yet are unique by construction
    scrambled = (cols["sequence"] * np.uint64(982_451_653)) % np.uint64(10**10)
    line_ids = pc.utf8_lpad(pc.cast(pa.array(scrambled.astype(np.int64)), pa.string()), 10, "0")

    # a personal coupon code per customer: a Lehmer scramble of the customer number, unique below 2^31
    lehmer = (np.arange(customers.start, customers.stop) + 1) * 48_271 % 2_147_483_647
    coupon_codes = pc.binary_join_element_wise(
        "CPN-", pc.utf8_lpad(pc.cast(pa.array(lehmer), pa.string()), 10, "0"), "")
    n_campaigns = len(world.campaign_codes)
    dictionary = pa.concat_arrays([world.campaign_codes, pa.array([STAFF_CODE]), coupon_codes])
    code = cols["code"]
    coupon_index = n_campaigns + 1 + cols["customer"] - customers.start
    index = np.select([code == -3, code == -2], [n_campaigns, coupon_index], code)

    return pa.table({
        "order_line_id": pc.binary_join_element_wise("OL", line_ids, ""),
        "sold_at": pa.array(cols["sold_at"].astype("datetime64[us]")),
        "client_ref": world.client_ref.take(pa.array(cols["customer"])),
        "sku": world.sku.take(pa.array(cols["product"])),
        "category": pa.array(CATEGORIES).take(pa.array(cols["category"])),
        "channel": pa.array(CHANNELS).take(pa.array(cols["channel"])),
        "qty": pa.array(cols["qty"].astype(np.int32)),
        "list_price": _money(cols["list_cents"]),
        "paid_unit_price": _money(cols["paid_cents"]),
        "discount_amount": _money(cols["discount_cents"]),
        "line_total": _money(cols["total_cents"]),
        "promo_code": dictionary.take(pa.array(index, mask=code == -1)),
        "currency": pa.array(["EUR"]).take(pa.array(np.zeros(n, dtype=np.int32))),
    }, schema=TRANSACTIONS_SCHEMA)


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


def _planted_record(world: _World, tally: _EffectTally) -> dict[str, Any]:
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
