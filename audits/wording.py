"""Plain-language summaries of findings: one sentence a non-statistician can act on.

The sentence is part of the findings data (findings.json's `summary`), so the report and any other
consumer say the same thing. Values from the data appear as they are; escaping is the renderer's job.
"""

from __future__ import annotations

from collections.abc import Sequence

from audits.findings import Finding

_CONSISTENCY: dict[str, str] = {
    "line_total_mismatch": "line totals that do not equal unit price times quantity",
    "discount_mismatch": "discount amounts that do not equal list price minus unit price, times quantity",
    "list_price_dispersion": "product, day and channel combinations charged at more than one list price",
    "discount_above_policy": "discounts deeper than the policy maximum",
    "code_outside_rules": "discount codes used outside their rules",
}


def summarize(
    finding: Finding,
    *,
    controls: Sequence[str] = (),
    min_group_customers: int = 11,
    total: int | None = None,
) -> str:
    """One sentence saying what the finding means, with its size and how sure we are."""
    if finding.count is not None:
        what = _CONSISTENCY.get(finding.metric, finding.metric.replace("_", " "))
        if finding.count == 0:
            return f"No {what} were found."
        of_total = f" out of {total:,}" if total else ""
        return f"{finding.count:,} transactions{of_total} had {what}."
    who = _who(finding)
    if finding.suppressed:
        return (f"{who}: fewer than {min_group_customers} customers on one side of the comparison, "
                "so no figures are shown to protect their privacy.")
    if finding.estimate is None:
        return f"{who}: too little overlap with the reference to estimate a difference."
    against = _against(finding)
    like_for_like = _like_for_like(finding, controls)
    sure = _certainty(finding)
    segment = _segment(finding)
    if finding.metric == "price_ratio":
        change = finding.estimate - 1
        direction = "more" if change >= 0 else "less"
        what = "existing customers" if finding.check == "loyalty_penalty" else who
        if finding.check == "loyalty_penalty":
            against = "new customers"
        return f"{_cap(what)} paid {abs(change):.1%} {direction} than {against} {like_for_like}{segment}; {sure}."
    if finding.metric == "adverse_impact_ratio":
        return (f"{_cap(who)} received discounts {finding.estimate:.2f} times as often as {against} "
                f"{like_for_like}{segment} (the four-fifths rule flags below 0.80); {sure}.")
    if finding.metric == "discount_pct_diff":
        points = finding.estimate * 100
        direction = "deeper" if points >= 0 else "shallower"
        return (f"When discounted, {who} got discounts {abs(points):.1f} percentage points {direction} than "
                f"{against} {like_for_like}{segment}; {sure}.")
    return f"{_cap(who)}: {finding.metric} = {finding.estimate:.4g} against {against}{segment}; {sure}."


def _who(finding: Finding) -> str:
    if finding.check == "loyalty_penalty":
        return "existing customers"
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


def _certainty(finding: Finding) -> str:
    low, high = finding.ci_low, finding.ci_high
    if finding.metric == "price_ratio" and low is not None and high is not None:
        interval = f"95% confidence interval {low - 1:+.1%} to {high - 1:+.1%}"
    elif finding.metric == "discount_pct_diff" and low is not None and high is not None:
        interval = f"95% confidence interval {low * 100:+.1f} to {high * 100:+.1f} points"
    elif low is not None and high is not None:
        interval = f"95% confidence interval {low:.2f} to {high:.2f}"
    else:
        interval = "no confidence interval"
    if finding.is_flagged:
        return f"{interval}, unlikely to be chance (q = {finding.q_value:.2g})"
    if finding.q_value is not None and finding.q_value < 0.05:
        return f"{interval}, real but below the practical threshold or in the group's favour"
    return f"{interval}, within what chance alone would produce"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
