"""A finding's sentence, written by hand for each kind of comparison: the outcome's (price_gap), and the
ones the catalogue's entries word (`finding`, `compared`: discount_incidence, discount_depth, dearer_price)."""

from __future__ import annotations

import pytest

from audits.config import parse_config
from audits.findings import Finding
from audits.wording import summarize

CONFIG = parse_config({"audit": {"attributes": ["age_band"], "controls": ["channel"]}})
CELL = "for the same product on the same day and channel"


def finding(check: str, metric: str, estimate: float, low: float, high: float, **more) -> Finding:
    """A clear (not flagged) finding for customers aged 65+ against all others, q = 0.5."""
    return Finding(check=check, attribute="age_band", group="65+", reference="all others", segment=None,
                   metric=metric, estimate=estimate, ci_low=low, ci_high=high, p_value=0.5, q_value=0.5,
                   n_customers_group=500, n_customers_reference=5000, count=None, severity="none", status="new",
                   summary="", **more)


CHANCE = "within what chance alone would produce."


@pytest.mark.parametrize(("found", "sentence"), [
    (finding("price_gap", "price_ratio", 1.05, 0.99, 1.11),
     f"Customers with age_band = 65+ paid 5.0% more than all other customers {CELL}; "
     f"95% confidence interval -1.0% to +11.0%, {CHANCE}"),
    (finding("discount_incidence", "adverse_impact_ratio", 0.9, 0.75, 1.05),
     f"Customers with age_band = 65+ received discounts 0.90 times as often as all other customers {CELL} "
     f"(the four-fifths rule flags below 0.80); 95% confidence interval 0.75 to 1.05, {CHANCE}"),
    (finding("dearer_price", "dearer_ratio", 1.1, 0.95, 1.3),
     f"Customers with age_band = 65+ were charged the dearer of the prices in their cell 1.10 times as often as "
     f"all other customers {CELL} (flagged above 1.25); 95% confidence interval 0.95 to 1.30, {CHANCE}"),
    # a difference of discount shares: in percentage points, the entry's words saying which way
    (finding("discount_depth", "discount_pct_diff", -0.042, -0.09, 0.006),
     f"When discounted, customers with age_band = 65+ got discounts 4.2 percentage points shallower than all "
     f"other customers {CELL}; 95% confidence interval -9.0 to +0.6 points, {CHANCE}"),
    (finding("discount_depth", "discount_pct_diff", 0.013, -0.01, 0.036),
     f"When discounted, customers with age_band = 65+ got discounts 1.3 percentage points deeper than all "
     f"other customers {CELL}; 95% confidence interval -1.0 to +3.6 points, {CHANCE}"),
    (finding("discount_depth", "discount_pct_diff", 0.0004, -0.01, 0.011),
     f"When discounted, customers with age_band = 65+ got discounts as deep as all other customers {CELL}; "
     f"95% confidence interval -1.0 to +1.1 points, {CHANCE}"),
])
def test_each_kind_of_comparison_reads_in_words(found: Finding, sentence: str) -> None:
    assert summarize(found, CONFIG) == sentence


def test_an_intersections_excess_reads_on_its_checks_scale() -> None:
    """Beyond what the attributes predict together: percentage points for a difference of shares, times the
    predicted rate for a rate."""
    depth = finding("discount_depth", "discount_pct_diff", -0.09, -0.12, -0.06, excess_estimate=-0.031,
                    explained_by="age_band = 65+")
    incidence = finding("discount_incidence", "adverse_impact_ratio", 0.5, 0.4, 0.6, excess_estimate=0.93,
                        explained_by="age_band = 65+")
    assert "the group shows -3.1 points, not an adverse excess" in summarize(depth, CONFIG)
    assert "the group shows 0.93 times the predicted rate, not an adverse excess" in summarize(incidence, CONFIG)
