"""Plain-language summaries of findings: one sentence a non-statistician can act on.

The sentence is part of the findings data (findings.json's `summary`), so the report and any other
consumer say the same thing. Its words follow the config: what is compared (`audit.outcome.noun`:
price, premium, interest rate) and what makes two lines comparable (`audit.cell` and the controls:
"the same product on the same day and channel", "the same cover, year and channel"). Values from the
data appear as they are; escaping is the renderer's job. Every number a sentence states (thresholds,
group sizes) comes from the config, never from a literal here.
"""

from __future__ import annotations

from audits.catalogue import CHECKS_BY_NAME, RULES
from audits.config import Config
from audits.findings import LOW_COVERAGE, Finding

INTERSECTION = " & "  # how the runner joins an intersection's attributes and groups
TIME_GRAINS = {"day": "day", "week": "week", "month": "month"}


def summarize(finding: Finding, config: Config, *, total: int | None = None) -> str:
    """One sentence saying what the finding means, with its size and how sure we are."""
    if finding.count is not None:
        rule = RULES[finding.metric][1] if finding.metric in RULES else finding.metric.replace("_", " ")
        what = rule.replace("{cell}", cell_words(config))
        if finding.count == 0:
            return f"No {what} were found."
        of_total = f" out of {total:,}" if total else ""
        return f"{finding.count:,} line{'' if finding.count == 1 else 's'}{of_total} had {what}."
    who = who_text(finding)
    if finding.suppressed:
        return (f"{_cap(who)}: fewer than {config.min_group_customers} customers on one side of the comparison, "
                "so no figures are shown to protect their privacy.")
    if finding.estimate is None:
        return f"{_cap(who)}: {finding.reason or 'too little overlap with the reference to estimate a difference'}."
    against = _against(finding)
    like_for_like = "for " + cell_words(config)
    sure = _certainty(finding, config) + _components(finding) + _coverage(finding)
    segment = _segment(finding)
    noun = config.outcome_noun
    if finding.metric.startswith("trend_"):
        step = (_signed_pct(finding.estimate - 1) if finding.metric.endswith("_ratio")
                else f"{finding.estimate:+.2f} points")
        return (f"Across the {finding.attribute} bands, the {noun} changed by {step} per band {like_for_like}"
                f"{segment}; {sure}.")
    if finding.metric == "points_diff":
        adjusted = ""
        if finding.adjusted_estimate is not None:
            adjusted = (f"; adjusting for each factor separately instead (regression) gives "
                        f"{finding.adjusted_estimate:+.2f} points")
        if abs(finding.estimate) < 0.005:
            had = f"had the same {noun} as"
        else:
            article = "an" if noun[:1].lower() in "aeiou" else "a"
            had = (f"had {article} {noun} {abs(finding.estimate):.2f} points "
                   f"{'higher' if finding.estimate > 0 else 'lower'} than")
        return f"{_cap(who)} {had} {against} {like_for_like}{segment}; {sure}{adjusted}."
    if CHECKS_BY_NAME[finding.check].contrast == "outcome":  # on the ratio scale: price_ratio
        change = finding.estimate - 1
        if abs(change) < 0.0005:
            paid = f"the same {noun} as" if noun != "price" else "the same as"
        elif noun == "price":
            paid = f"{abs(change):.1%} {'more' if change > 0 else 'less'} than"
        else:
            paid = f"{abs(change):.1%} {'higher' if change > 0 else 'lower'} {noun} than"
        adjusted = ""
        if finding.adjusted_estimate is not None:
            adjusted = (f"; adjusting for each factor separately instead (regression) gives "
                        f"{_signed_pct(finding.adjusted_estimate - 1)}")
        return f"{_cap(who)} paid {paid} {against} {like_for_like}{segment}; {sure}{adjusted}."
    return f"{_check_sentence(finding, config, who=who, against=against, segment=segment)}; {sure}."


def _check_sentence(finding: Finding, config: Config, *, who: str, against: str, segment: str) -> str:
    """A rate or difference finding's sentence, as its catalogue entry words it (`finding`, `compared`)."""
    check = CHECKS_BY_NAME[finding.check]
    estimate = finding.estimate
    difference = ""
    if check.contrast == "difference":
        above, below, same = check.compared
        points = estimate * 100  # shares compared: their difference in percentage points
        difference = same if abs(points) < 0.05 else (
            f"{abs(points):.1f} percentage points {above if points > 0 else below}")
    return check.finding.format(Who=_cap(who), who=who, against=against, cell=cell_words(config), segment=segment,
                                threshold=f"{config.setting(check.threshold):.2f}" if check.threshold else "",
                                ratio=f"{estimate:.2f}", difference=difference)


def cell_words(config: Config) -> str:
    """What makes two lines comparable, in words: "the same product on the same day and channel"."""
    cell = [c for c in config.cell if c not in TIME_GRAINS]
    grains = [TIME_GRAINS[c] for c in config.cell if c in TIME_GRAINS]
    others = [c.replace("_id", "").replace("_", " ") for c in cell[1:]] + [c.replace("_", " ") for c in config.controls]
    if cell[:1] == ["product_id"]:
        tail = _and([*grains, *others])
        return "the same product" + (f" on the same {tail}" if tail else "")
    return "the same " + _and([c.replace("_id", "").replace("_", " ") for c in cell[:1]] + grains + others)


def _and(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _components(finding: Finding) -> str:
    """Intersections: how the group compares with what its component attributes predict together."""
    if finding.excess_estimate is None:
        return ""
    scale = _scale(finding)
    if scale == "percent":
        excess = _signed_pct(finding.excess_estimate - 1)
    elif scale == "percentage points":
        excess = f"{finding.excess_estimate * 100 + 0.0:+.1f} points".replace("-0.0", "+0.0")
    elif scale == "points":
        excess = f"{finding.excess_estimate:+.2f} points"
    else:
        excess = f"{finding.excess_estimate:.2f} times the predicted rate"
    if finding.explained_by:
        parts = finding.explained_by.split("; ")
        return (f"; this follows from {' and '.join(parts)} (flagged on {'their' if len(parts) > 1 else 'its'} "
                f"own): beyond what its attributes predict together the group shows {excess}, not an adverse "
                "excess")
    if finding.is_flagged:
        return f"; beyond what its attributes predict together: {excess}"
    return ""


def _coverage(finding: Finding) -> str:
    """Say so when most of a side's lines had no comparable line of the other side in their cell."""
    shares = finding.coverage or {}
    low = [(side, shares[f"{side}_lines"]) for side in ("group", "reference")
           if shares.get(f"{side}_lines") is not None and shares[f"{side}_lines"] < LOW_COVERAGE]
    if not low:
        return ""
    said = " and ".join(f"{share:.0%} of the {'group' if side == 'group' else 'reference'}'s lines" for side, share in low)
    return f"; only {said} had a comparable line of the other side, so the comparison rests on a minority of them"


def who_text(finding: Finding) -> str:
    """Whom the finding is about: 'customers with age_band = 65+', 'existing customers'."""
    if finding.check == "loyalty_penalty":
        return "existing customers" if finding.group == "existing" else f"customers with tenure {finding.group}"
    attributes = (finding.attribute or "").split(INTERSECTION)
    groups = (finding.group or "").split(INTERSECTION)
    if len(attributes) > 1 and len(attributes) == len(groups):
        return "customers with " + " and ".join(f"{a} = {g}" for a, g in zip(attributes, groups, strict=True))
    return f"customers with {finding.attribute} = {finding.group}"


def _against(finding: Finding) -> str:
    if finding.check == "loyalty_penalty":
        return "new customers"
    if finding.reference in (None, "all others"):
        return "all other customers"
    return f"customers with {finding.attribute} = {finding.reference}"


def _segment(finding: Finding) -> str:
    if not finding.segment:
        return ""
    return " (" + ", ".join(f"{k} {v}" for k, v in finding.segment.items()) + ")"


def _scale(finding: Finding) -> str:
    """How a disparity finding's numbers read: "percent" (an outcome's ratio: +5.0%), "points" (an outcome
    compared in points: +0.12 points), "percentage points" (a difference of shares: +4.2 points) or
    "ratio" (a rate ratio: 0.64)."""
    if finding.metric.endswith("points_diff"):  # the outcome on the points scale, and its trend
        return "points"
    check = CHECKS_BY_NAME[finding.check]
    if check.contrast == "outcome":
        return "percent"
    return "percentage points" if check.contrast == "difference" else "ratio"  # displayed as points or a share


def _certainty(finding: Finding, config: Config) -> str:
    low, high = finding.ci_low, finding.ci_high
    level = f"{config.confidence:.0%} confidence interval"
    scale = _scale(finding)
    if low is None or high is None:
        interval = "no confidence interval"
    elif scale == "percent":
        interval = f"{level} {_signed_pct(low - 1)} to {_signed_pct(high - 1)}"
    elif scale == "percentage points":
        interval = f"{level} {low * 100:+.1f} to {high * 100:+.1f} points"
    elif scale == "points":
        interval = f"{level} {low:+.2f} to {high:+.2f} points"
    else:
        interval = f"{level} {low:.2f} to {high:.2f}"
    q = finding.q_value
    if finding.outcome == "not_assessed":
        return f"{interval}; {finding.reason}"
    if finding.is_flagged:
        return f"{interval}, unlikely to be chance ({'q < 1e-10' if q < 1e-10 else f'q = {q:.2g}'})"
    if q is not None and q < config.fdr:
        if _favours_group(finding):
            return f"{interval}, real and in the group's favour"
        return f"{interval}, real but smaller than the practical threshold"
    return f"{interval}, within what chance alone would produce"


def _signed_pct(value: float) -> str:
    """+1.2% / -0.4%, and +0.0% rather than -0.0% for a value that rounds to zero."""
    return "+0.0%" if abs(value) < 0.0005 else f"{value:+.1%}"


def _favours_group(finding: Finding) -> bool:
    higher_is_adverse = CHECKS_BY_NAME[finding.check].adverse == "higher"
    no_difference = 1.0 if finding.metric.endswith("_ratio") else 0.0
    return finding.estimate < no_difference if higher_is_adverse else finding.estimate >= no_difference


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
