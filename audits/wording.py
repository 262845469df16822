"""Plain-language summaries of findings: one sentence a non-statistician can act on.

The sentence is part of the findings data (findings.json's `summary`), so the report and any other
consumer say the same thing. Values from the data appear as they are; escaping is the renderer's job.
"""

from __future__ import annotations

from collections.abc import Sequence

from audits.findings import Finding

INTERSECTION = " & "  # how the runner joins an intersection's attributes and groups

_CONSISTENCY: dict[str, str] = {
    "line_total_mismatch": "line totals that do not equal unit price times quantity",
    "discount_mismatch": "discount amounts that do not equal list price minus unit price, times quantity",
    "list_price_dispersion": "a list price other than the one most customers were shown for the same product on "
                             "the same day{controls}",
    "discount_above_policy": "discounts deeper than the policy maximum",
    "code_outside_rules": "discount codes used outside their rules",
}


def summarize(
    finding: Finding,
    *,
    controls: Sequence[str] = (),
    min_group_customers: int = 11,
    total: int | None = None,
    adverse_impact_ratio: float = 0.8,
    min_customers_to_judge: int = 30,
) -> str:
    """One sentence saying what the finding means, with its size and how sure we are."""
    if finding.count is not None:
        what = _CONSISTENCY.get(finding.metric, finding.metric.replace("_", " "))
        what = what.replace("{controls}", "".join(f" and {c.replace('_', ' ')}" for c in controls))
        if finding.count == 0:
            return f"No {what} were found."
        of_total = f" out of {total:,}" if total else ""
        return f"{finding.count:,} transactions{of_total} had {what}."
    who = _who(finding)
    if finding.suppressed:
        return (f"{_cap(who)}: fewer than {min_group_customers} customers on one side of the comparison, "
                "so no figures are shown to protect their privacy.")
    if finding.estimate is None:
        return f"{_cap(who)}: too little overlap with the reference to estimate a difference."
    against = _against(finding)
    like_for_like = _like_for_like(finding, controls)
    sure = _certainty(finding, min_customers_to_judge) + _components(finding)
    segment = _segment(finding)
    if finding.metric == "price_ratio":
        change = finding.estimate - 1
        if finding.check == "loyalty_penalty":
            against = "new customers"
        paid = "the same as" if abs(change) < 0.0005 else f"{abs(change):.1%} {'more' if change > 0 else 'less'} than"
        adjusted = ""
        if finding.adjusted_estimate is not None:
            adjusted = (f"; adjusting for each factor separately instead (regression) gives "
                        f"{_signed_pct(finding.adjusted_estimate - 1)}")
        return f"{_cap(who)} paid {paid} {against} {like_for_like}{segment}; {sure}{adjusted}."
    if finding.metric == "adverse_impact_ratio":
        return (f"{_cap(who)} received discounts {finding.estimate:.2f} times as often as {against} "
                f"{like_for_like}{segment} (the four-fifths rule flags below {adverse_impact_ratio:.2f}); {sure}.")
    if finding.metric == "discount_pct_diff":
        points = finding.estimate * 100
        depth = ("as deep as" if abs(points) < 0.05 else
                 f"{abs(points):.1f} percentage points {'deeper' if points > 0 else 'shallower'} than")
        return f"When discounted, {who} got discounts {depth} {against} {like_for_like}{segment}; {sure}."
    return f"{_cap(who)}: {finding.metric} = {finding.estimate:.4g} against {against}{segment}; {sure}."


def _components(finding: Finding) -> str:
    """Intersections: how the group compares with what its component attributes predict together."""
    if finding.excess_estimate is None:
        return ""
    if finding.metric == "price_ratio":
        excess = _signed_pct(finding.excess_estimate - 1)
    elif finding.metric == "discount_pct_diff":
        excess = f"{finding.excess_estimate * 100 + 0.0:+.1f} points".replace("-0.0", "+0.0")
    else:
        excess = f"{finding.excess_estimate:.2f} times the predicted rate"
    if finding.explained_by:
        parts = finding.explained_by.split("; ")
        return (f"; this follows from {' and '.join(parts)} (flagged on {'their' if len(parts) > 1 else 'its'} "
                f"own): beyond what its attributes predict together the group shows {excess}, not an adverse "
                "excess, so it is noted rather than flagged")
    if finding.is_flagged:
        return f"; beyond what its attributes predict together: {excess}"
    return ""


def _who(finding: Finding) -> str:
    if finding.check == "loyalty_penalty":
        return "existing customers"
    attributes = (finding.attribute or "").split(INTERSECTION)
    groups = (finding.group or "").split(INTERSECTION)
    if len(attributes) > 1 and len(attributes) == len(groups):
        return "customers with " + " and ".join(f"{a} = {g}" for a, g in zip(attributes, groups, strict=True))
    return f"customers with {finding.attribute} = {finding.group}"


def _against(finding: Finding) -> str:
    if finding.reference in (None, "all others"):
        return "all other customers"
    return f"customers with {finding.attribute} = {finding.reference}"


def _like_for_like(finding: Finding, controls: Sequence[str]) -> str:
    factors = ["day", *(c.replace("_", " ") for c in controls)]
    same = ", ".join(factors[:-1]) + (" and " if len(factors) > 1 else "") + factors[-1]
    return f"for the same product on the same {same}"


def _segment(finding: Finding) -> str:
    if not finding.segment:
        return ""
    return " (" + ", ".join(f"{k} {v}" for k, v in finding.segment.items()) + ")"


def _certainty(finding: Finding, min_customers_to_judge: int) -> str:
    low, high = finding.ci_low, finding.ci_high
    if finding.metric == "price_ratio" and low is not None and high is not None:
        interval = f"95% confidence interval {_signed_pct(low - 1)} to {_signed_pct(high - 1)}"
    elif finding.metric == "discount_pct_diff" and low is not None and high is not None:
        interval = f"95% confidence interval {low * 100:+.1f} to {high * 100:+.1f} points"
    elif low is not None and high is not None:
        interval = f"95% confidence interval {low:.2f} to {high:.2f}"
    else:
        interval = "no confidence interval"
    q = finding.q_value
    few = min(finding.n_customers_group or 0, finding.n_customers_reference or 0)
    if few < min_customers_to_judge and not finding.is_flagged:
        return (f"{interval}; with fewer than {min_customers_to_judge} customers on one side the test "
                "cannot be relied on, so it is not flagged")
    if finding.is_flagged or (finding.explained_by and q is not None):
        return f"{interval}, unlikely to be chance ({'q < 1e-10' if q < 1e-10 else f'q = {q:.2g}'})"
    if q is not None and q < 0.05:
        if _favours_group(finding):
            return f"{interval}, real and in the group's favour"
        return f"{interval}, real but smaller than the practical threshold"
    return f"{interval}, within what chance alone would produce"


def _signed_pct(value: float) -> str:
    """+1.2% / -0.4%, and +0.0% rather than -0.0% for a value that rounds to zero."""
    return "+0.0%" if abs(value) < 0.0005 else f"{value:+.1%}"


def _favours_group(finding: Finding) -> bool:
    if finding.metric == "price_ratio":
        return finding.estimate < 1
    if finding.metric == "adverse_impact_ratio":
        return finding.estimate >= 1
    return finding.estimate >= 0


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
