"""What a finding's drill-down says beyond its estimate: coverage, the same comparison on list prices, and
for a consistency rule where its breaches are (top values, worst cells, amount at stake, breaches.csv).

Each function reads fields the audit filled in (`coverage`, `list_estimate`, `details`); none computes a
statistic. Values from the data (product ids, codes, channels) are returned as text for the template,
which escapes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from audits.findings import LOW_COVERAGE, Finding
from reports.breaches import BREACHES_NAME
from reports.figures import format_interval, format_share, format_value

LOW_COVERAGE_WHY = "most lines had no comparable line of the other side"
SIDES = (("group", "the group"), ("reference", "the reference"))
TOP_LABELS = {"product_id": "Products", "discount_code": "Discount codes", "channel": "Channels", "day": "Days"}
CELL_PRICE = {"list_price_dispersion": "list price", "paid_price_dispersion": "unit price paid"}
ECHO = "the group was shown the same prices: it pays more because it gets fewer or shallower discounts (rule R3)"
NO_ECHO = "the group's list prices differ as well, so the gap is not only in its discounts"


@dataclass(frozen=True)
class CoverageView:
    """A disparity finding's coverage: the share of each side's lines (and customers) with a comparable line
    of the other side in their cell."""

    lines: str  # "group 80.3%, reference 13.3%"
    customers: str
    short: str  # the table's "80.3% / 13.3%" (lines, group / reference)
    low: bool
    note: str  # for a low one: which side, and what that means
    sort: float | None  # the smaller line share, for sorting the table


def coverage_view(finding: Finding) -> CoverageView | None:
    shares = finding.coverage
    if not shares:
        return None

    def both(kind: str) -> str:
        return ", ".join(f"{side} {format_share(shares.get(f'{side}_{kind}'))}" for side, _ in SIDES)

    line_shares = {side: shares.get(f"{side}_lines") for side, _ in SIDES}
    low_sides = [(words, share) for (side, words) in SIDES
                 if (share := line_shares[side]) is not None and share < LOW_COVERAGE]
    note = ""
    if finding.low_coverage:
        which = " and ".join(f"{format_share(share)} of {words}'s lines" for words, share in low_sides)
        note = (f"Low coverage: only {which} had a comparable line of the other side in their cell. Most lines "
                "had no comparable line of the other side, so the comparison rests on a minority of them.")
    known = [v for v in line_shares.values() if v is not None and math.isfinite(v)]
    return CoverageView(
        lines=both("lines"), customers=both("customers"),
        short=" / ".join(format_share(line_shares[side]) for side, _ in SIDES),
        low=finding.low_coverage, note=note, sort=min(known) if known else None,
    )


def list_price_text(finding: Finding, *, echo: bool, level: str = "95%") -> str:
    """'List prices: +0.1% (95% CI -0.2% to +0.4%): the group was shown the same prices ...' for a price gap
    the audit also compared on list prices; '' otherwise. `echo`: the paid-price echo rule grouped it."""
    if finding.list_estimate is None:
        return ""
    interval = format_interval(finding.metric, finding.list_ci_low, finding.list_ci_high)
    value = format_value(finding.metric, finding.list_estimate)
    shown = f"{value} ({level} CI {interval})" if interval else value
    return f"List prices: {shown}: {ECHO if echo else NO_ECHO}."


@dataclass(frozen=True)
class TopList:
    label: str  # "Products"
    rows: list[tuple[str, str, str]]  # value, breaching lines, amount


@dataclass(frozen=True)
class CellRow:
    product: str
    day: str
    where: str  # the cell's controls and currency: "channel = app · EUR"
    prices: str  # "7.21 to 7.65"
    n_prices: str
    spread: str  # the highest over the lowest price: "+6.1%"
    lines: str


@dataclass(frozen=True)
class Where:
    """Where a consistency rule's breaches are: what a reviewer opens first."""

    facts: list[tuple[str, str]]
    tops: list[TopList] = field(default_factory=list)
    cells: list[CellRow] = field(default_factory=list)
    cell_price: str = ""  # the price the cells compare
    breaches_text: str = ""  # "the 36 breaching lines with the largest amounts" (when breaches.csv has them)
    breaches_file: str = BREACHES_NAME


def where_to_look(finding: Finding) -> Where | None:
    """A consistency finding's details as the report shows them; None for a finding without details."""
    details = finding.details
    if finding.count is None or not details:
        return None
    facts = []
    if details.get("lines_checked") is not None:
        facts.append(("Lines checked", f"{int(details['lines_checked']):,}"))
    if details.get("amount") is not None:
        facts.append(("Amount at stake", money(details["amount"])))
    if details.get("revenue") is not None:
        share = details.get("revenue_share")
        of_revenue = f" ({format_share(share)} of revenue)" if share is not None else ""
        facts.append(("Revenue of the breaching lines", money(details["revenue"]) + of_revenue))
    tops = [TopList(TOP_LABELS.get(column, column), [(str(v.get("value")), f"{int(v.get('lines', 0)):,}",
                                                     money(v.get("amount"))) for v in values])
            for column, values in (details.get("top") or {}).items() if values]
    rows = int(details.get("breach_rows") or 0)
    breaches = ""
    if rows:
        breaches = (f"all {rows:,} breaching lines" if rows >= (finding.count or 0)
                    else f"the {rows:,} breaching lines with the largest amounts (of {finding.count:,})")
    return Where(facts=facts, tops=tops, cells=[_cell(c) for c in details.get("cells") or ()],
                 cell_price=CELL_PRICE.get(finding.metric, "price"), breaches_text=breaches)


def _cell(cell: Mapping[str, Any]) -> CellRow:
    controls = [f"{k} = {v}" for k, v in (cell.get("controls") or {}).items()]
    if cell.get("currency"):
        controls.append(str(cell["currency"]))
    spread = cell.get("spread")
    return CellRow(
        product=str(cell.get("product_id")), day=str(cell.get("day")), where=" · ".join(controls),
        prices=f"{money(cell.get('low'))} to {money(cell.get('high'))}",
        n_prices=f"{int(cell.get('prices') or 0):,}",
        spread=f"{(spread - 1) * 100:+.1f}%" if isinstance(spread, (int, float)) and math.isfinite(spread) else "n/a",
        lines=f"{int(cell.get('lines') or 0):,}",
    )


def money(value: Any) -> str:
    """An amount of money as the data has it (the lines' own currencies): '34,438.15'."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return f"{value:,.2f}"
