"""The check catalogue: one entry per check, read by the config, runner, judgement, wording, report and docs.

Adding a check is one SQL file in `sql/checks/`, one `Check` entry here and its tests (docs/checks.md
shows an example). The entry says what the check measures (its SQL file), what data it needs (with
the reason given when the data lacks it), how its result is reported (metric, display, threshold and
which direction harms the group), and its words: the sentence of a finding, what a compliance
officer checks next, and the methodology text of the report.

This module imports nothing of ours: the findings model, the report and the engine all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["consistency", "disparity"]
# How a disparity check's within-cell difference of its measurement y becomes the reported metric:
# outcome: y is the outcome (log outcome on the ratio scale): a ratio exp(beta), or a difference in points;
# rate: y is 0/1 and the metric is the group's rate over the reference's (adverse impact ratio);
# difference: the difference itself (group minus reference).
Contrast = Literal["outcome", "rate", "difference"]
Display = Literal["percent_change", "ratio", "points", "share"]

# What each column the checks may need means, for the reasons given when the data lacks it.
COLUMN_MEANINGS: dict[str, str] = {
    "list_price": "list price (the price customers were shown)",
    "unit_price": "unit price paid",
    "discount_amount": "discount amount",
    "line_total": "line total",
    "quantity": "quantity",
    "tenure": "tenure for any customer (customer_since, a tenure column, a renewal column, or purchases "
              "going back further than audit.tenure_days)",
    "outcome": "outcome value (audit.outcome.column)",
}


@dataclass(frozen=True)
class Check:
    """One check of the catalogue."""

    name: str
    kind: Kind
    title: str
    explanation: str  # what it tests, in plain words ({noun}: the outcome's noun; {cell}: "the same product on ...")
    basis: str  # the rule it follows: law, guideline or internal policy
    # what the data must have: any one of these alternatives, each a set of columns all present on some line
    needs: tuple[tuple[str, ...], ...] = ()
    # columns whose presence makes the check redundant, and why (the check is then not run)
    unless: tuple[str, ...] = ()
    unless_reason: str = ""
    metric: str = ""  # disparity: the metric of its findings (outcome checks: for the ratio scale)
    contrast: Contrast = "outcome"
    display: Display = "percent_change"
    axis_title: str = ""
    threshold: str | None = None  # the settings key of its practical threshold
    adverse: Literal["higher", "lower"] = "higher"  # which direction of the metric harms the group
    adjusted: bool = False  # also report the regression-adjusted estimate
    # consistency: per rule (metric, what a breach is, the rule stated; {cell}, {max_discount} filled in)
    rules: tuple[tuple[str, str, str], ...] = ()
    next_step: str = ""  # what to check next, given a flagged finding ({who}, {evidence})
    # disparity: the check whose SQL file measures this one's lines, when both measure the same (the
    # comparison differs, not the measurement); empty: its own file
    measured_as: str = ""

    def metric_for(self, scale: str = "ratio") -> str:
        """The metric of this check's findings when the outcome is compared on `scale` (ratio or points)."""
        if self.contrast == "outcome" and scale == "points":
            return "points_diff"
        return self.metric

    @property
    def sql(self) -> str:
        """The check's SQL file, relative to sql/ (audits/sqlfiles.py)."""
        return f"checks/{self.measured_as or self.name}"

    def lacks(self, present: set[str]) -> str | None:
        """Why the check cannot run on data with these columns present, or None when it can."""
        if self.unless and set(self.unless) <= present:
            return self.unless_reason
        if not self.needs or any(set(option) <= present for option in self.needs):
            return None
        options = [" and ".join(COLUMN_MEANINGS.get(c, c) for c in option) for option in self.needs]
        return "the data has no " + " nor ".join(options) if len(options) > 1 else f"the data has no {options[0]}"


EEOC = "Legal guideline: the US EEOC four-fifths (adverse impact) rule, applied here by analogy to discounts"
FCA = "Legal rule for UK home and motor insurance: FCA general insurance pricing practices (GIPP, PS21/5)"
INTERNAL = "Internal policy: threshold set in the audit configuration"

CHECKS: tuple[Check, ...] = (
    Check(
        "price_arithmetic", "consistency", "Price arithmetic",
        "Counts paid amounts that do not add up: unit price times quantity, less the discount, should equal the "
        "line total.",
        "Internal policy: prices are charged as published",
        needs=(("line_total",), ("discount_amount", "list_price")),
        rules=(("line_total_mismatch", "line totals that do not equal unit price times quantity",
                "Line total = unit price × quantity (within rounding)"),
               ("discount_mismatch", "discount amounts that do not equal list price minus unit price, times "
                                     "quantity", "Discount amount = (list price − unit price) × quantity (within "
                                                 "rounding)")),
        next_step="review the billing lines listed in breaches.csv: {evidence}",
    ),
    Check(
        "price_dispersion", "consistency", "Price dispersion",
        "Counts lines of the same cell ({cell}) charged at different prices to different customers: list prices "
        "other than the cell's most common one, and paid unit prices that differ by more than rounding "
        "(audit.price_tolerance). With list prices, paid prices differ by design where discounts apply, so "
        "only the list-price rule is judged.",
        "Internal policy: one published price list for everyone",
        needs=(("list_price",), ("unit_price",)),
        rules=(("list_price_dispersion", "a list price other than the one most customers were shown for {cell}",
                "One list price for everyone for {cell}"),
               ("paid_price_dispersion", "a unit price paid in a cell where customers paid more than one price "
                                         "(beyond rounding) for {cell}", "One price paid by everyone for {cell}")),
        next_step="ask pricing why lines for {cell} were charged at several prices: {evidence}",
    ),
    Check(
        "discount_policy", "consistency", "Discount policy",
        "Counts discounts beyond the pricing policy: deeper than the configured maximum.",
        "Internal policy: maximum discount set in the audit configuration",
        needs=(("list_price",),),
        rules=(("discount_above_policy", "discounts deeper than the policy maximum",
                "No unit price more than {max_discount} below the list price"),),
        next_step="review who approved the discounts beyond policy: {evidence}",
    ),
    Check(
        "price_gap", "disparity", "Price gap",
        "Compares the {noun} a group paid with what the reference group paid for {cell} (a within-cell "
        "comparison), so a different product mix or a legitimate price factor cannot look like unfair treatment.",
        INTERNAL + " (minimum price gap)",
        needs=(("outcome",),),
        metric="price_ratio", contrast="outcome", display="percent_change",
        axis_title="{noun} ratio, group / reference (1 = same {noun})",
        threshold="thresholds.min_price_gap", adverse="higher", adjusted=True,
        next_step="review how {noun} is set for {who}: {evidence}",
    ),
    Check(
        "discount_incidence", "disparity", "Discount incidence",
        "Compares the rate at which a group received any discount with the reference group's rate for "
        "{cell}. A ratio below four-fifths (the configured adverse impact ratio) is the classic sign of adverse "
        "impact.",
        EEOC,
        needs=(("list_price",), ("discount_amount",)),
        metric="adverse_impact_ratio", contrast="rate", display="ratio",
        axis_title="discount-rate ratio, group / reference (1 = same rate)",
        threshold="thresholds.adverse_impact_ratio", adverse="lower",
        next_step="review the coupon and discount targeting rules for {who}: {evidence}",
    ),
    Check(
        "discount_depth", "disparity", "Discount depth",
        "Among purchases that were discounted, compares the average discount percentage of a group with the "
        "reference group's for {cell}, in percentage points (group minus reference).",
        INTERNAL + " (minimum difference in discount depth)",
        needs=(("list_price",),),
        metric="discount_pct_diff", contrast="difference", display="points",
        axis_title="discount depth difference, percentage points (0 = same)",
        threshold="thresholds.min_discount_depth", adverse="lower",
        next_step="review how discount depth is decided for {who}: {evidence}",
    ),
    Check(
        "dearer_price", "disparity", "Dearer price",
        "In cells where customers paid more than one price ({cell}), compares how often a group paid the dearer "
        "price with how often the reference group did. A group on the dearer side more often than chance is "
        "treated differently, whatever the mechanism. Run on data without list prices (with them, price_gap "
        "and price_dispersion answer the same question).",
        "Internal policy: one published price list for everyone",
        needs=(("unit_price",),),
        unless=("list_price",),
        unless_reason="the data has list prices: price_gap compares what each group is charged within the same "
                      "cells, and price_dispersion counts the cells listed at several prices",
        metric="dearer_ratio", contrast="rate", display="ratio",
        axis_title="dearer-price rate ratio, group / reference (1 = same rate)",
        threshold="thresholds.max_dearer_ratio", adverse="higher",
        next_step="find out why {who} are charged the dearer of the prices in dispersed cells: {evidence}",
    ),
    Check(
        "loyalty_penalty", "disparity", "Loyalty penalty",
        "Compares the {noun} existing customers (longer tenure, or renewals) paid with what new customers paid "
        "for {cell}: the renewal versus new-business comparison.",
        FCA + " (renewal price may not exceed the new-business price); elsewhere internal policy",
        needs=(("tenure", "outcome"),),
        metric="price_ratio", contrast="outcome", display="percent_change",
        axis_title="{noun} ratio, existing / new customers (1 = same {noun})",
        threshold="thresholds.min_price_gap", adverse="higher", adjusted=True,
        next_step="review renewal pricing for {who} against the new-business price: {evidence}",
        measured_as="price_gap",
    ),
)

CHECKS_BY_NAME: dict[str, Check] = {c.name: c for c in CHECKS}
# consistency metric -> (its check, what a breach is, the rule stated)
RULES: dict[str, tuple[str, str, str]] = {metric: (c.name, breach, stated) for c in CHECKS
                                          for metric, breach, stated in c.rules}
CHECK_NAMES: tuple[str, ...] = tuple(CHECKS_BY_NAME)
CONSISTENCY_CHECKS: tuple[str, ...] = tuple(c.name for c in CHECKS if c.kind == "consistency")
DISPARITY_CHECKS: tuple[str, ...] = tuple(c.name for c in CHECKS if c.kind == "disparity")


def no_difference(metric: str) -> float:
    """The value of a metric that means no difference: 1 for ratios, 0 for differences."""
    return 1.0 if metric.endswith("_ratio") else 0.0
