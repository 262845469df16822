"""From raw disparity tests to findings: suppression, Benjamini-Hochberg, severity, intersections.

1. Privacy first: a test with fewer than `min_group_customers` customers on either side is reported as
   suppressed, with no figures at all, and takes no part in the multiple-testing correction. Every other
   customer count the run publishes is rounded to the nearest multiple of `count_rounding` (10), as
   statistical agencies round linked tables: the counts of one comparison, of an attribute and of its
   intersections are linked (East = F & East + M & East + X & East), and subtracting exact counts would give
   a suppressed group's size away (8 = 341 - 156 - 177); with each count within 5 of the truth, such a
   difference is known only within at least 20, wider than the suppression threshold, whatever counts of
   the run (or of earlier runs) an attacker combines. Estimates stay: a group estimate over many customers
   discloses no one, and hiding, say, all women because a three-customer group exists would blind the
   audit. Coverage shares are published to two decimals.
2. Benjamini-Hochberg over every remaining test of the run (all checks, attributes, intersections and
   segments together): each finding carries its raw p-value and its q-value.
3. A finding is flagged (medium or high) only when q < fdr *and* the estimate is beyond the practical
   threshold to the group's detriment: high when the whole confidence interval is beyond it. A group
   needs at least `min_customers_to_judge` (30) customers on each side to be flagged at all: with fewer,
   a clustered standard error rests on a handful of customers and is itself unreliable (too small
   whenever those few happen to behave alike, e.g. none of them got a coupon), so p-values come out
   far too small (MacKinnon and Webb 2017 on few treated clusters; our null simulations agree). Such
   findings keep their figures, p and q, and say why they are not flagged.
4. Intersections. When a component attribute is unfair, every intersection containing it inherits the
   gap (women paying 5% more make "women aged 18-24" pay more too), and raising each as a cause of its
   own buries the cause. A flagged intersection is therefore tested for its excess over its components
   (the interaction in a model with one effect per level of each component attribute,
   audits/contrasts.py). If the excess is not itself adverse (q < fdr, with Benjamini-Hochberg over the
   run's excess tests, and beyond the practical threshold in the group's disfavour) and at least one
   component is flagged, the intersection is marked `explained_by` those components: it stays flagged
   (the group does pay more) and is grouped into its components' cause (audits/causes.py). If the excess
   cannot be estimated, or no component is flagged, it is a cause of its own: nothing is hidden for lack
   of evidence.
5. A test is flagged only when its confidence interval also excludes no difference, so a flagged finding
   never shows an interval that holds "no difference" (with the default 95% and fdr 0.05 this follows
   from q < fdr, since the test inverts the interval; a stricter confidence makes it a condition).
"""

from __future__ import annotations

from dataclasses import replace

from audits.catalogue import CHECKS_BY_NAME, no_difference
from audits.config import Config
from audits.disparity import INTERSECTION, RawTest
from audits.findings import FLAGGED_SEVERITIES, Finding
from audits.stats import benjamini_hochberg, exp_or_inf
from audits.wording import summarize

def judge(tests: list[RawTest], config: Config) -> list[Finding]:
    """Suppress small groups, correct p-values across all tests (BH), assign severities and outcomes,
    explain intersections."""
    suppressed = {id(t) for t in tests if is_suppressed(t, config)}
    shown = [t for t in tests if id(t) not in suppressed and t.p_value is not None]
    q_values = dict(zip((id(t) for t in shown), benjamini_hochberg([t.p_value for t in shown]), strict=True))
    findings = []
    for t in tests:
        segment = {t.dimension.segment_column: t.segment_value} if t.dimension.segment_column else None
        base = dict(check=t.check, attribute=t.dimension.attribute, group=t.group,
                    reference=t.reference_label or t.dimension.reference or "all others", segment=segment,
                    metric=t.metric,
                    count=None, status="new", summary="")
        if id(t) in suppressed:
            findings.append(Finding(**base, estimate=None, ci_low=None, ci_high=None, p_value=None, q_value=None,
                                    n_customers_group=None, n_customers_reference=None, severity="low",
                                    suppressed=True, outcome="suppressed",
                                    reason=SUPPRESSED.format(n=config.min_group_customers)))
            continue
        q = q_values.get(id(t))
        adjusted = t.adjusted or (None, None, None, None)
        level = severity(t, q, config)
        outcome, reason = _outcome(t, level, config)
        findings.append(Finding(
            **base, estimate=t.estimate, ci_low=t.ci_low, ci_high=t.ci_high, p_value=t.p_value, q_value=q,
            n_customers_group=published_count(t.n_customers_group, config),
            n_customers_reference=published_count(t.n_customers_reference, config),
            severity=level, adjusted_estimate=adjusted[0], adjusted_ci_low=adjusted[1],
            adjusted_ci_high=adjusted[2], adjusted_p_value=adjusted[3], outcome=outcome, reason=reason,
            coverage={k: None if v is None else round(v, 2) for k, v in (t.coverage or {}).items()} or None,
            **_excess_fields(t, config),
        ))
    findings = _explain_intersections(tests, findings, config)
    return [replace(f, summary=summarize(f, config)) for f in findings]


SUPPRESSED = "fewer than {n} customers on one side: no figures are shown, to protect their privacy"
NO_OVERLAP = "no cell holds lines of both the group and its reference, so there is nothing like for like to compare"
TOO_FEW = "fewer than {n} customers on one side: too few to judge, so it is shown but never flagged"
NO_RATE = ("no rate ratio can be formed: the reference's rate in the compared cells is zero, or the group's "
           "estimated rate is not positive")


def _outcome(t: RawTest, level: str, config: Config) -> tuple[str, str | None]:
    """A shown test's outcome and, when it could not be assessed, why."""
    if t.estimate is None and t.difference is None:
        return "not_assessed", NO_OVERLAP
    if t.estimate is None or t.p_value is None:
        return "not_assessed", NO_RATE
    if min(t.n_customers_group, t.n_customers_reference) < min_customers_to_judge(config):
        return "not_assessed", TOO_FEW.format(n=min_customers_to_judge(config))
    return ("flagged", None) if level in FLAGGED_SEVERITIES else ("clear", None)


def published_count(n: int, config: Config) -> int:
    """A customer count as published: rounded to the nearest multiple of count_rounding (see module docstring)."""
    base = config.count_rounding
    return int(base * round(n / base)) if base > 1 else int(n)


def is_suppressed(test: RawTest, config: Config) -> bool:
    return min(test.n_customers_group, test.n_customers_reference) < config.min_group_customers


def is_candidate(test: RawTest, config: Config) -> bool:
    """Could this test be flagged? (raw p below fdr, as q >= p, and beyond the practical threshold)."""
    return test.p_value is not None and test.p_value < config.fdr and severity(test, test.p_value, config) != "low"


def min_customers_to_judge(config: Config) -> int:
    """Customers each side needs before a comparison can be flagged (see module docstring)."""
    return max(config.min_customers_to_judge, config.min_group_customers)


def severity(t: RawTest, q: float | None, config: Config) -> str:
    """Flag only what is both statistically (q < fdr, and the interval excludes no difference) and practically
    significant (beyond the check's threshold), to the group's detriment.

    high: the whole confidence interval lies beyond the practical threshold; medium: the estimate does.
    """
    if t.estimate is None or q is None or q >= config.fdr:
        return "low"
    if min(t.n_customers_group, t.n_customers_reference) < min_customers_to_judge(config):
        return "low"
    if not _beyond(t.check, t.metric, t.estimate, config):
        return "low"
    higher = CHECKS_BY_NAME[t.check].adverse == "higher"
    near, far = (t.ci_low, t.ci_high) if higher else (t.ci_high, t.ci_low)
    if near is None or (near <= no_difference(t.metric) if higher else near >= no_difference(t.metric)):
        return "low"  # the interval holds no difference: not flagged, whatever q says
    return "high" if _beyond(t.check, t.metric, near, config) else "medium"


def _beyond(check: str, metric: str, value: float, config: Config) -> bool:
    """Is a value of the check's metric beyond its practical threshold, to the group's detriment?"""
    entry = CHECKS_BY_NAME[check]
    threshold = config.setting(entry.threshold)
    higher = entry.adverse == "higher"
    if entry.contrast == "rate":  # a rate ratio beyond the threshold itself (the four-fifths rule: below 0.8)
        return value > threshold if higher else value < threshold
    boundary = no_difference(metric) + (threshold if higher else -threshold)
    return value >= boundary if higher else value <= boundary


def _excess_fields(t: RawTest, config: Config) -> dict[str, float | None]:
    """The excess over the components on the metric's scale (see module docstring)."""
    if t.excess is None:
        return {}
    low, high = t.excess.interval(config.confidence)
    values = [t.excess.beta, low, high]
    contrast = CHECKS_BY_NAME[t.check].contrast
    if contrast == "outcome" and t.metric != "points_diff":  # the outcome's log on the ratio scale: a ratio
        values = [exp_or_inf(v) for v in values]
    elif contrast == "rate":
        # the group's rate as a ratio of the rate its components predict: r / (r - excess)
        rate = (t.reference_mean or 0.0) + (t.difference.beta if t.difference else 0.0)
        values = [rate / (rate - v) if rate > 0 and rate - v > 0 else None for v in values]
    return {"excess_estimate": values[0], "excess_ci_low": values[1], "excess_ci_high": values[2],
            "excess_p_value": t.excess.p_value}


def _explain_intersections(tests: list[RawTest], findings: list[Finding], config: Config) -> list[Finding]:
    flagged_components = {
        (f.check, f.attribute, f.group, _segment_key(f)) for f in findings
        if f.is_flagged and INTERSECTION not in (f.attribute or "")
    }
    # the excess tests of the run's flagged intersections are a family of their own: BH over them
    tested = [(t, f) for t, f in zip(tests, findings, strict=True)
              if f.is_flagged and len(t.dimension.columns) > 1 and f.excess_p_value is not None]
    excess_q = dict(zip((id(f) for _, f in tested),
                        benjamini_hochberg([f.excess_p_value for _, f in tested]), strict=True))
    out = []
    for t, f in zip(tests, findings, strict=True):
        if not f.is_flagged or len(t.dimension.columns) < 2 or _excess_is_adverse(f, excess_q.get(id(f)), config):
            out.append(f)
            continue
        explaining = [f"{column} = {part}" for column, part in zip(t.dimension.columns, t.group_parts, strict=False)
                      if (t.check, column, part, _segment_key(f)) in flagged_components]
        if t.excess is None or not explaining:
            out.append(f)
            continue
        out.append(replace(f, explained_by="; ".join(explaining)))  # still flagged: its cause is the component's
    return out


def _excess_is_adverse(f: Finding, q: float | None, config: Config) -> bool:
    if f.excess_estimate is None or q is None:
        return False
    return q < config.fdr and _beyond(f.check, f.metric, f.excess_estimate, config)


def _segment_key(f: Finding) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((f.segment or {}).items()))
