"""Drawing a retail market: the world fixed before any purchase (products, promotions, customers),
then the purchase lines of each block of customers, as Arrow tables shaped like the source files.

What the market contains is described in `audits.sample.retail`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audits.sample.draws import cdf_rows, draw, random_stream
from audits.sample.retail_spec import (
    AGE_BANDS,
    ATTRIBUTE_SHARES,
    BLOCK_CUSTOMERS,
    CAPITAL_PREMIUM_PURCHASE_PCT,
    CATEGORIES,
    CHANNELS,
    CHANNEL_LIST_PRICE_FACTOR,
    COUPON_DEPTHS,
    COUPON_DEPTH_RANGE,
    COUPON_USE_PCT,
    CUSTOMERS_SCHEMA,
    DISCOUNT_POLICY_BREACHES,
    EXISTING_TENURE_DAYS,
    MIN_BASE_PRICE_CENTS,
    MONEY,
    PREMIUM_PRICE_FACTOR,
    PREMIUM_PRODUCT_PCT,
    PREMIUM_PURCHASE_PCT,
    PRICE_ARITHMETIC_BREACHES,
    PROMO_DEPTHS,
    PROMO_WEEK_PCT,
    PROMO_WEEK_PCT_BUDGET,
    PROMO_WEEK_PCT_PREMIUM,
    REGIONS,
    REPRICED_PRODUCT_PCT,
    REPRICE_STEP,
    STAFF_CODE,
    STAFF_DEPTH,
    TRANSACTIONS_SCHEMA,
    MarketSpec,
    PlantedEffect,
    attribute_levels,
)

_SKU_PREFIXES = ("GR", "PC", "AP", "EL", "SB")
_CATEGORY_PRODUCT_SHARE = np.array([0.30, 0.25, 0.22, 0.13, 0.10])
_CATEGORY_LINE_SHARE = np.array([0.34, 0.22, 0.18, 0.10, 0.16])
_BUDGET_MEDIAN_EUR = np.array([2.5, 6.0, 25.0, 120.0, 9.0])
_PRICE_SIGMA = np.array([0.45, 0.40, 0.45, 0.70, 0.30])
_SUBSCRIPTIONS = CATEGORIES.index("subscriptions")
_CHANNEL_MIX = (0.45, 0.40, 0.15)
_CHANNEL_MIX_BY_AGE = {"18-24": (0.45, 0.10, 0.45), "65+": (0.12, 0.83, 0.05)}  # confounder
_QTY_SHARE = (0.80, 0.12, 0.05, 0.02, 0.01)
_WEEKDAY_WEIGHT = (0.90, 0.90, 0.95, 1.00, 1.15, 1.30, 0.80)  # Monday first
_HOUR_WEIGHT = {  # purchases per hour of day, 0h to 23h
    "online": (1, .6, .4, .3, .3, .4, .8, 1.5, 2.5, 3, 3.2, 3.5, 4, 3.8, 3.5, 3.5, 3.8, 4.2, 5, 6, 6.5, 6, 4, 2),
    "store": (0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 5, 6, 8, 8, 6, 6, 7, 9, 8, 5, 2, 0, 0, 0),
    "app": (1, .5, .3, .2, .2, .5, 1.5, 3.5, 4, 3, 3, 3.5, 4.5, 4, 3, 3, 3.5, 4.5, 4.5, 5, 6, 6.5, 4.5, 2),
}


# --- the world: everything decided before any purchase (products, promotions, customers) ----------

_STREAM_PRODUCTS, _STREAM_CUSTOMERS, _STREAM_LINES, _STREAM_BREACHES = range(4)


class World:
    """Products, promotions, customers and breach positions: fixed before any line is drawn."""

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self._build_products(random_stream(spec.seed, _STREAM_PRODUCTS))
        self._build_customers(random_stream(spec.seed, _STREAM_CUSTOMERS))
        self._build_breaches(random_stream(spec.seed, _STREAM_BREACHES))
        weekdays = [(spec.start + timedelta(days=d)).weekday() for d in range(spec.days)]
        self.day_cdf = cdf_rows([_WEEKDAY_WEIGHT[w] for w in weekdays])
        self.hour_cdf = cdf_rows([_HOUR_WEIGHT[c] for c in CHANNELS])
        self.qty_cdf = cdf_rows(_QTY_SHARE)
        self.category_cdf = cdf_rows(_CATEGORY_LINE_SHARE)
        mix = [_CHANNEL_MIX_BY_AGE.get(band, _CHANNEL_MIX) if spec.confounders else _CHANNEL_MIX
               for band in AGE_BANDS]
        self.channel_cdf_by_age = cdf_rows(mix)
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
        self.attribute_codes = {name: draw(cdf_rows(shares), 0, rng.random(n))
                                for name, (_, shares) in ATTRIBUTE_SHARES.items()}
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
        for name, (levels, _) in ATTRIBUTE_SHARES.items():
            columns[name] = pa.array(levels).take(pa.array(self.attribute_codes[name]))
        return pa.table(columns, schema=CUSTOMERS_SCHEMA)


# --- purchases -----------------------------------------------------------------------------------

class EffectTally:
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


def _effect_masks(world: World, effect: PlantedEffect,
                  lines: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(in_group, in_segment) for each line, for any attribute, group and segment."""
    def matches(attribute: str, value: str) -> np.ndarray:
        if attribute == "tenure":
            return lines["is_existing"] == (value == "existing")
        levels = attribute_levels()[attribute]
        if attribute in ("category", "channel"):
            codes = lines[attribute]
        else:
            codes = world.attribute_codes[attribute][lines["customer"]]
        return codes == levels.index(value)

    in_segment = np.ones(lines["customer"].size, dtype=bool)
    for key, value in (effect.segment or {}).items():
        in_segment &= matches(key, value)
    return matches(effect.attribute, effect.group), in_segment


def _block_lines(world: World, block: int, tally: EffectTally) -> dict[str, np.ndarray]:
    """All lines of one block of customers, as numpy columns sorted by time (money in cents)."""
    spec = world.spec
    first, last = block * BLOCK_CUSTOMERS, min((block + 1) * BLOCK_CUSTOMERS, spec.n_customers)
    customer = np.repeat(np.arange(first, last), world.n_lines[first:last])
    n = customer.size
    rng = random_stream(spec.seed, _STREAM_LINES, block)
    # every draw happens whatever the effects, so markets differing only in effects share their rows
    u = rng.random((8, n))
    second_of_hour = rng.integers(0, 3600, n)

    day = draw(world.day_cdf, 0, u[0])
    channel = draw(world.channel_cdf_by_age, world.attribute_codes["age_band"][customer], u[1])
    category = draw(world.category_cdf, 0, u[2])
    is_premium = u[3] < world.premium_pct_by_region[world.attribute_codes["region"][customer]]
    group = 2 * category + is_premium
    # popularity falls off within a group: low indices sell more
    rank = np.minimum((u[4] ** 1.6 * world.group_count[group]).astype(np.int64), world.group_count[group] - 1)
    product = world.group_start[group] + rank
    qty = np.where(category == _SUBSCRIPTIONS, 1, draw(world.qty_cdf, 0, u[5]) + 1)
    hour = draw(world.hour_cdf, channel, u[6])
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


def transaction_chunks(world: World, *, chunk_customers: int, tally: EffectTally) -> Iterator[pa.Table]:
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


def _chunk_table(world: World, cols: dict[str, np.ndarray], *, customers: range) -> pa.Table:
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
