"""The methodology section's words: how differences are measured and judged, the thresholds and their
basis, the scope as the run recorded it, and the rules of the consistency checks in words.

Check texts come from the catalogue (audits/catalogue.py) and the grouping rules from audits/causes.py
(reports/summary.py); this module holds the report's own prose and fills in the run's words (outcome
noun, cell, policy maximum, confidence level).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from audits.catalogue import CHECKS_BY_NAME, RULES

# The basis of each threshold, in the words of the catalogue's entries
INTERNAL = "Internal policy: threshold set in the audit configuration"
EEOC = CHECKS_BY_NAME["discount_incidence"].basis

POLICY_MAXIMUM = "the policy maximum"
SAME_CELL = "the same product on the same day"  # the cell in words when the run does not say
DEFAULT_CONFIDENCE = 0.95

STATISTICS_PROSE: tuple[tuple[str, str], ...] = (
    ("Like for like",
     "Disparities are measured within cells of the same product, the same day and the same controls "
     "(listed under Scope), then combined. A group that simply buys dearer products, or buys through a "
     "dearer channel, is therefore not counted as paying more."),
    ("Customers are the unit",
     "A customer who buys often is still one customer. Standard errors are cluster-robust by customer, "
     "so frequent buyers cannot make a difference look more certain than it is."),
    ("Confidence intervals and p-values",
     "Every estimate comes with a {level} confidence interval (the range of values the data are consistent "
     "with) and a p-value (how surprising the difference would be if there were none)."),
    ("False discovery rate",
     "An audit runs many tests, and some would look significant by chance. The Benjamini-Hochberg "
     "procedure adjusts for this across all tests of a run; the adjusted value is the q-value."),
    ("Flagged only when it matters",
     "A finding is flagged only when it is both statistically significant (q below the false discovery "
     "rate) and practically significant (beyond the threshold for its check). Low findings are noted, "
     "not flagged."),
    ("Outcomes",
     "Every test and every check has one outcome: flagged (beyond its threshold and unlikely to be chance), "
     "clear (it ran and found nothing), suppressed (too few customers to show) or not assessed (it could not "
     "look: no lines, no comparable lines, too few customers to judge, or an error; the report gives the "
     "reason). A run is clear only when some check ran and none flagged; a run where nothing could be "
     "assessed is never reported as clear."),
    ("Coverage",
     "A comparison uses only the lines whose cell holds lines of both sides. Each disparity finding states "
     "the share of the group's and of the reference's lines (and customers) that had such a comparable "
     "line; under half of the group's lines (against a fixed reference group, of either side's) is marked as "
     "low coverage: most lines had no comparable line of the other side, so the comparison rests on a minority "
     "of them. Against all other customers the reference's share is naturally small (most others buy where the "
     "group does not) and is shown, not marked."),
    ("Privacy",
     "Groups with fewer customers than the minimum group size are reported as suppressed, with no "
     "figures, so no customer can be singled out. No customer id appears in the report or in breaches.csv."),
)

THRESHOLD_HELP: dict[str, tuple[str, str]] = {
    "min_price_gap": ("Minimum price gap", INTERNAL),
    "adverse_impact_ratio": ("Adverse impact ratio (four-fifths rule)", EEOC),
    "max_dearer_ratio": ("Dearer-price rate ratio that flags", INTERNAL),
    "consistency_high_share": ("Share of lines breaking a rule that makes it high severity", INTERNAL),
    "min_discount_depth": ("Minimum difference in discount depth", INTERNAL),
    "fdr": ("False discovery rate (Benjamini-Hochberg)", "Statistical setting"),
    "confidence": ("Confidence level of every interval", "Statistical setting"),
    "min_group_customers": ("Minimum customers per group shown", "Privacy setting"),
    "min_customers_to_judge": ("Minimum customers per side to judge (fewer: shown, never flagged)",
                               "Statistical setting"),
    "max_discount_pct": ("Deepest discount allowed", INTERNAL),
}
METHOD_LISTS: tuple[tuple[str, str], ...] = (
    ("attributes", "Attributes audited"),
    ("intersections", "Intersections audited"),
    ("segment_by", "Findings also per value of"),
    ("controls", "Controls (legitimate price factors compared within)"),
    ("reference", "Reference groups"),
)


def confidence_level(method: Mapping[str, Any]) -> str:
    """The run's confidence level as the report writes it: '95%'."""
    value = method.get("confidence") or (method.get("thresholds") or {}).get("confidence") or DEFAULT_CONFIDENCE
    return f"{float(value) * 100:g}%"


def statistics_prose(method: Mapping[str, Any]) -> list[tuple[str, str]]:
    level = confidence_level(method)
    return [(title, text.replace("{level}", level)) for title, text in STATISTICS_PROSE]


def thresholds_table(thresholds: Mapping[str, Any]) -> list[tuple[tuple[str, str], str, Any]]:
    return [(THRESHOLD_HELP.get(k, (k.replace("_", " ").capitalize(), "Set in the audit configuration")), k, v)
            for k, v in thresholds.items()]


def consistency_rule(metric: str, method: Mapping[str, Any]) -> str:
    """The rule a consistency metric checks, in words, with the run's controls and policy maximum."""
    if metric not in RULES:
        return metric.replace("_", " ").capitalize()
    max_discount = (method.get("thresholds") or {}).get("max_discount_pct")
    return words(RULES[metric][2], method).replace(
        "{max_discount}", POLICY_MAXIMUM if max_discount is None else f"{max_discount * 100:g}%")


def words(text: str, method: Mapping[str, Any]) -> str:
    """A catalogue text with the run's outcome noun and cell in words filled in."""
    noun = (method.get("outcome") or {}).get("noun", "price")
    # a findings.json of before the cell was configurable: product and day, and its controls
    cell = method.get("cell_words") or SAME_CELL + "".join(f" and {c.replace('_', ' ')}"
                                                           for c in method.get("controls") or ())
    return text.replace("{noun}", noun).replace("{cell}", cell)


def method_text(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} = {method_text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(" x ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in value) or "none"
    return json.dumps(value) if not isinstance(value, str) else value
