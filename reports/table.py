"""The findings table: one row per finding as the report shows it (display text and raw sort keys), its
default order and its filters. report.js sorts, filters and pages the rows in the browser."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from audits.findings import CONSISTENCY_CHECKS, Finding
from reports.evidence import CoverageView, coverage_view
from reports.figures import comparison_text, format_interval, format_value, segment_text
from reports.methodology import consistency_rule
from reports.summary import OUTCOME_WORDS, check_title

SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
STATUS_RANK = {"new": 0, "persisting": 1, "resolved": 2}
# The table's Outcome column: a flagged finding by its severity, any other by its outcome
OUTCOME_RANK = {"high": 0, "medium": 1, "not assessed": 2, "suppressed": 3, "clear": 4}
OUTCOME_CLASS = {"high": "sev-high", "medium": "sev-medium", "not assessed": "outcome-not-assessed",
                 "suppressed": "outcome-suppressed", "clear": "outcome-clear"}


@dataclass
class Row:
    """One finding as the table shows it: display text plus raw sort keys."""

    finding: Finding
    row_id: str  # the row's element id (links from a cause's related flags)
    check_title: str
    attribute: str
    comparison: str
    segment: str
    estimate: str
    interval: str
    p_text: str
    q_text: str
    customers: str
    count: str
    link: str | None  # where its details are: its cause, or its own noted details
    outcome: str  # "high" | "medium" | "clear" | "suppressed" | "not assessed"
    coverage: CoverageView | None
    reason: str = ""  # why it was not assessed
    rule: str = ""  # consistency findings: the rule broken, in words
    sort: dict[str, str] = field(default_factory=dict)

    @property
    def outcome_class(self) -> str:
        return OUTCOME_CLASS.get(self.outcome, "")


def table_rows(findings: Sequence[Finding], *, links: Mapping[str, str], suppressed_text: str,
               method: Mapping[str, Any]) -> list[Row]:
    """Every finding in the table's default order; `links` maps a finding id to its details' anchor."""
    rows: list[Row] = []
    seen: set[str] = set()
    for finding in table_order(findings):
        row_id = f"f-{finding.id}"
        if row_id in seen:  # two results' findings with one id would make one anchor ambiguous
            row_id = f"{row_id}-{len(rows)}"
        seen.add(row_id)
        rows.append(_row(finding, row_id=row_id, link=links.get(finding.id), suppressed_text=suppressed_text,
                         method=method))
    return rows


def table_order(findings: Sequence[Finding]) -> list[Finding]:
    """Default order of the table: most severe first, then by check, attribute and segment."""
    return sorted(findings, key=lambda f: (
        severity_order(f), f.check, f.attribute or "", segment_text(f.segment), f.group or ""))


def severity_order(finding: Finding) -> tuple[int, int, float]:
    q = finding.q_value if finding.q_value is not None and math.isfinite(finding.q_value) else math.inf
    return (SEVERITY_RANK.get(finding.severity, 9) + (3 if finding.status == "resolved" else 0),
            STATUS_RANK.get(finding.status, 9), q)


def outcome_label(finding: Finding) -> str:
    """A flagged finding's severity, or the outcome of any other ('clear', 'not assessed', 'suppressed')."""
    if finding.is_flagged:
        return finding.severity
    if finding.suppressed:
        return "suppressed"
    return OUTCOME_WORDS.get(finding.outcome, finding.outcome)


def _row(finding: Finding, *, row_id: str, link: str | None, suppressed_text: str, method: Mapping[str, Any]) -> Row:
    shown = not finding.suppressed
    estimate = format_value(finding.metric, finding.estimate) if shown and finding.estimate is not None else ""
    interval = format_interval(finding.metric, finding.ci_low, finding.ci_high) if shown else ""
    n_group, n_reference = finding.n_customers_group, finding.n_customers_reference
    customers = ""
    if shown and (n_group is not None or n_reference is not None):
        customers = f"{_int(n_group)} / {_int(n_reference)}"
    coverage = coverage_view(finding) if shown else None
    outcome = outcome_label(finding)
    row = Row(
        finding=finding,
        row_id=row_id,
        check_title=check_title(finding.check),
        attribute=finding.attribute or "",
        comparison=comparison_text(finding),
        segment=segment_text(finding.segment),
        estimate=suppressed_text if finding.suppressed else estimate,
        interval=interval,
        p_text=p_text(finding.p_value) if shown else "",
        q_text=p_text(finding.q_value) if shown else "",
        customers=customers,
        count=_int(finding.count) if shown and finding.count is not None else "",
        link=link,
        outcome=outcome,
        coverage=coverage,
        reason=(finding.reason or "") if outcome == "not assessed" else "",
        rule=consistency_rule(finding.metric, method) if finding.check in CONSISTENCY_CHECKS else "",
    )
    row.sort = {
        "estimate": _number(finding.estimate if shown else None),
        "p": _number(finding.p_value if shown else None),
        "q": _number(finding.q_value if shown else None),
        "customers": _number(n_group if shown else None),
        "coverage": _number(coverage.sort if coverage else None),
        "count": _number(finding.count if shown else None),
        "outcome": str(OUTCOME_RANK.get(outcome, 9)),
        "status": str(STATUS_RANK.get(finding.status, 9)),
    }
    return row


def filters(rows: Sequence[Row]) -> list[tuple[str, str, list[str]]]:
    """(label, data attribute, sorted distinct values) for each filter control."""
    def distinct(values: Any) -> list[str]:
        return sorted(set(values))
    return [
        ("Check", "check", distinct(r.finding.check for r in rows)),
        ("Attribute", "attribute", distinct(r.attribute or "(none)" for r in rows)),
        ("Segment", "segment", distinct(r.segment for r in rows)),
        ("Outcome", "outcome", sorted({r.outcome for r in rows}, key=lambda o: OUTCOME_RANK.get(o, 9))),
        ("Coverage", "coverage", sorted({coverage_key(r) for r in rows if r.coverage})),
        ("Status", "status", sorted({r.finding.status for r in rows}, key=lambda s: STATUS_RANK.get(s, 9))),
    ]


def coverage_key(row: Row) -> str:
    """The row's data-coverage value: 'low' or 'half or more' (disparity findings); '' for the others."""
    if row.coverage is None:
        return ""
    return "low" if row.coverage.low else "half or more"


def p_text(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _int(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def _number(value: float | None) -> str:
    """Sort key for the table script: a plain number, or '' (sorted last)."""
    return "" if value is None or not math.isfinite(value) else repr(float(value))
