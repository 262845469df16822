"""The check catalogue: one entry per check, read by the config, runner, judgement, wording, report and docs.

The entries are in `sql/checks/catalogue.toml`, beside the checks' SQL files: adding a check is one SQL
file in `sql/checks/`, one entry there and its tests (docs/checks.md shows an example). An entry says
what the check measures (its SQL file), what data it needs (with the reason given when the data lacks
it), how its result is reported (metric, display, threshold and which direction harms the group), and
its words: the sentence of a finding, what a compliance officer checks next, and the methodology text
of the report. This module gives each entry its type (`Check`) and checks its values when it loads.

This module imports nothing of ours: the findings model, the report and the engine all read it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

Kind = Literal["consistency", "disparity"]
# How a disparity check's within-cell difference of its measurement y becomes the reported metric:
# outcome: y is the outcome (log outcome on the ratio scale): a ratio exp(beta), or a difference in points;
# rate: y is 0/1 and the metric is the group's rate over the reference's (adverse impact ratio);
# difference: the difference itself (group minus reference).
Contrast = Literal["outcome", "rate", "difference"]
Display = Literal["percent_change", "ratio", "points", "share"]
# how each contrast's metric can be displayed (the wording and the charts read it so)
DISPLAYS: dict[str, tuple[str, ...]] = {"outcome": ("percent_change",), "rate": ("ratio",),
                                        "difference": ("points", "share")}
Adverse = Literal["higher", "lower"]
CATALOGUE = Path(__file__).resolve().parent.parent / "sql" / "checks" / "catalogue.toml"
# what a disparity check's `finding` sentence may name (audits/wording.py fills them in)
FINDING_PLACEHOLDERS = ("Who", "who", "against", "cell", "segment", "threshold", "ratio", "difference")

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
    # what the rule behind the threshold is called, for the line a rate check's charts draw at it
    # ("four-fifths rule (0.8)"); empty: the line says which side flags ("flags above 1.25")
    threshold_name: str = ""
    adverse: Adverse = "higher"  # which direction of the metric harms the group
    adjusted: bool = False  # also report the regression-adjusted estimate
    # consistency: per rule (metric, what a breach is, the rule stated; {cell}, {max_discount} filled in)
    rules: tuple[tuple[str, str, str], ...] = ()
    next_step: str = ""  # what to check next, given a flagged finding ({who}, {evidence})
    # disparity, rate and difference contrasts: a finding's sentence (outcome checks share the outcome's,
    # audits/wording.py): {Who} or {who} the group, {against} its reference, {cell} what makes lines
    # comparable, {segment}, {threshold} the practical threshold, and {ratio} (rate: the ratio, two
    # decimals) or {difference} (difference: the difference in words, from `compared`)
    finding: str = ""
    # difference contrast: the words for a group above the reference, below it, and the same
    compared: tuple[str, ...] = ()
    # disparity: the check whose SQL file measures this one's lines, when both measure the same (the
    # comparison differs, not the measurement); empty: its own file
    measured_as: str = ""

    def __post_init__(self) -> None:
        for field, choices in (("kind", Kind), ("contrast", Contrast), ("display", Display), ("adverse", Adverse)):
            if getattr(self, field) not in get_args(choices):
                raise ValueError(f"{field} must be one of {', '.join(get_args(choices))}, got {getattr(self, field)!r}")
        if self.kind == "disparity" and self.display not in DISPLAYS[self.contrast]:
            raise ValueError(f"a {self.contrast} contrast is displayed as {' or '.join(DISPLAYS[self.contrast])}, "
                             f"not {self.display!r}")
        if self.kind == "disparity" and self.contrast != "outcome" and not self.finding:
            raise ValueError(f"a {self.contrast} contrast needs 'finding', the sentence of a finding")
        try:
            self.finding.format(**dict.fromkeys(FINDING_PLACEHOLDERS, ""))
        except KeyError as err:
            known = ", ".join(f"{{{name}}}" for name in FINDING_PLACEHOLDERS)
            raise ValueError(f"finding: {{{err.args[0]}}} is not one of {known}") from None
        except (IndexError, ValueError) as err:  # a positional {} or an unclosed brace
            raise ValueError(f"finding: {err}") from None
        if self.contrast == "difference" and self.kind == "disparity" and len(self.compared) != 3:
            raise ValueError("a difference contrast needs 'compared': the words for above, below and the same "
                             "as the reference")

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


def load_checks(path: Path = CATALOGUE) -> tuple[Check, ...]:
    """The catalogue's entries (sql/checks/catalogue.toml), each a Check. A key Check does not have, or a value
    outside its choices, fails at import, naming the entry: the catalogue is part of the source tree."""
    with path.open("rb") as file:
        entries = tomllib.load(file)["check"]
    checks = []
    for entry in entries:
        rules = tuple((rule["metric"], rule["breach"], rule["stated"]) for rule in entry.pop("rules", ()))
        try:
            checks.append(Check(**{key: _tuples(value) for key, value in entry.items()}, rules=rules))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: check {entry.get('name')!r}: {err}") from None
    return tuple(checks)


def _tuples(value: Any) -> Any:
    """TOML's arrays as tuples, all the way down: entries are frozen and hashable."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


CHECKS: tuple[Check, ...] = load_checks()
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
