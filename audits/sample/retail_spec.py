"""What defines a retail sample market: its constants, source schemas, planted effects and `MarketSpec`.

The market itself is described in `audits.sample.retail`; `retail_world` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import pyarrow as pa

EffectCheck = Literal["price_gap", "discount_incidence", "discount_depth", "loyalty_penalty"]
EFFECT_CHECKS: tuple[str, ...] = ("price_gap", "discount_incidence", "discount_depth", "loyalty_penalty")

CATEGORIES: tuple[str, ...] = ("grocery", "personal_care", "apparel", "electronics", "subscriptions")
PREMIUM_PRICE_FACTOR = 2.2
PREMIUM_PRODUCT_PCT = 0.30
MIN_BASE_PRICE_CENTS = 49

CHANNELS: tuple[str, ...] = ("online", "store", "app")
CHANNEL_LIST_PRICE_FACTOR: dict[str, float] = {"online": 1.00, "store": 1.04, "app": 0.98}

GENDERS: tuple[str, ...] = ("F", "M", "X")
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
REGIONS: tuple[str, ...] = (
    "Capital", "North-East", "North-West", "Midlands", "East", "South-East", "South-West", "Islands",
)
ATTRIBUTE_SHARES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
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
        levels = attribute_levels()
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


def attribute_levels() -> dict[str, tuple[str, ...]]:
    levels = {name: values for name, (values, _) in ATTRIBUTE_SHARES.items()}
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
