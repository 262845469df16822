"""The executive summary's words: the verdict, the period audited, what changed since the previous run,
and the rules that group flags into causes (read from audits/causes.py, the one place they are written).

Everything here reads the result: the verdict is `AuditResult.verdict`, the counts are the result's, the
reasons are the checks'. Nothing is judged again.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import audits.causes
from audits.catalogue import CHECKS_BY_NAME
from audits.causes import RULES as GROUPING_RULES
from audits.findings import AuditResult, Cause, CheckRun
from reports.methodology import method_text

VERDICT_WORDS = {"flagged": "Flagged", "clear": "Clear", "not_assessed": "Not assessed"}
OUTCOME_WORDS = {"flagged": "flagged", "clear": "clear", "suppressed": "suppressed", "not_assessed": "not assessed"}
NO_REASON = "no reason was recorded"
SUPPRESSED_CHECK = "every test suppressed: too few customers to show"
NO_PERIOD_REASON = "not recorded for this run"
NO_FILTERS = "none: every line of the period"
ALONE = GROUPING_RULES["alone"]


@dataclass(frozen=True)
class Verdict:
    """The page's headline: the run's verdict in a word, a sentence, and why checks could not look."""

    outcome: str  # flagged | clear | not_assessed (AuditResult.verdict)
    word: str
    sentence: str
    # (reason, the checks it applies to as (title, name)) for each check not assessed or suppressed
    not_assessed: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    all_checks: int = 0


@dataclass(frozen=True)
class Period:
    start: str
    end: str
    days: int | None
    reason: str
    filters: list[str]
    lines: int
    customers: int

    @property
    def span(self) -> str:
        days = f" ({self.days:,} day{'s' if self.days != 1 else ''})" if self.days is not None else ""
        return f"{self.start} to {self.end}{days}"


def verdict(result: AuditResult, *, n_causes: int) -> Verdict:
    """The run's verdict with its sentence: how many causes, or that nothing was found, or that no check
    could look (then never good news)."""
    outcome = result.verdict
    counts = result.outcome_counts()
    reasons = _not_assessed_reasons(result.checks)
    if outcome == "flagged":
        severities = result.severity_counts()
        flagged = counts["flagged"] or severities["high"] + severities["medium"]
        split = ", ".join(f"{severities[s]} {s}" for s in ("high", "medium") if severities[s])
        if n_causes:
            sentence = (f"{n_causes} cause{_s(n_causes)} to review, holding {flagged} flagged "
                        f"test{_s(flagged)} ({split}).")
        else:
            sentence = f"{flagged} flagged test{_s(flagged)} to review ({split})."
    elif outcome == "clear":
        sentence = (f"No check found unfair treatment: {counts['clear']:,} test{_s(counts['clear'])} ran and "
                    "found nothing beyond the thresholds.")
    elif result.run.transactions == 0:
        sentence = ("The audit could not look: the period has no lines to audit, so this report says nothing "
                    "about how customers were treated, good or bad.")
    else:
        sentence = ("The audit could not look: no check could judge these lines, so this report says nothing "
                    "about how customers were treated, good or bad.")
    return Verdict(outcome, VERDICT_WORDS.get(outcome, outcome), sentence, reasons, len(result.checks))


def _not_assessed_reasons(checks: Sequence[CheckRun]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Checks that could not look (or could show nothing), grouped by their reason, in the run's order."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for check in checks:
        if check.outcome == "not_assessed" or check.status != "ok":
            reason = check.reason or NO_REASON
            if check.status == "errored":
                reason = f"errored: {reason}"
        elif check.outcome == "suppressed":
            reason = check.reason or SUPPRESSED_CHECK
        else:
            continue
        grouped.setdefault(reason, []).append((check_title(check.check), check.check))
    return list(grouped.items())


def check_title(name: str) -> str:
    return CHECKS_BY_NAME[name].title if name in CHECKS_BY_NAME else name


def check_outcomes(check: CheckRun) -> str:
    """The check's tests by outcome in words, zero counts left out: '42 flagged, 168 clear'."""
    parts = [f"{check.outcomes[o]:,} {OUTCOME_WORDS[o]}" for o in OUTCOME_WORDS if check.outcomes.get(o)]
    return ", ".join(parts) if parts else "no tests"


def period(result: AuditResult) -> Period:
    run = result.run
    try:
        days = (dt.date.fromisoformat(run.period_end) - dt.date.fromisoformat(run.period_start)).days + 1
    except ValueError:
        days = None
    filters = run.filters or result.method.get("filters") or {}  # results of before run.filters: the method's
    return Period(start=run.period_start, end=run.period_end, days=days,
                  reason=run.period_reason or NO_PERIOD_REASON,
                  filters=[f"{k} = {v}" for k, v in filters.items()],
                  lines=run.transactions, customers=run.customers)


def since_previous(since: Mapping[str, Any], *, scope: str) -> tuple[str, list[str]]:
    """'Since the previous run (period end X): N new, M persisting, K resolved causes.' and what changed."""
    if not since:
        return f"First run of scope {scope}: there is no previous run to compare with.", []
    causes = since.get("causes") or {}
    counts = ", ".join(f"{int(causes.get(s, 0)):,} {s}" for s in ("new", "persisting", "resolved"))
    end = since.get("period_end")
    sentence = f"Since the previous run{f' (period end {end})' if end else ''}: {counts} causes."
    changes = [f"{name} {_value(old)} → {_value(new)}"
               for name, (old, new) in (since.get("thresholds_changed") or {}).items()]
    scope_changes = [f"{name}: {_value(old)} → {_value(new)}"
                     for name, (old, new) in (since.get("scope_changed") or {}).items()]
    notes = []
    if changes:
        notes.append("Thresholds changed: " + "; ".join(changes) + ".")
    if scope_changes:
        notes.append("Scope changed: " + "; ".join(scope_changes) + ".")
    if since.get("config_changed"):
        notes.insert(0, "The configuration changed since then" + (
            ": figures may differ for that reason, not only because customers were treated differently."
            if changes or scope_changes else " (no threshold or scope setting: another setting)."))
    elif changes or scope_changes:
        notes.insert(0, "The run's settings differ from the previous run's.")
    else:
        sentence += " Same configuration as then."
    return sentence, notes


def _value(value: Any) -> str:
    if value is None:
        return "unset"
    return f"{value:g}" if isinstance(value, float) else method_text(value)


def rule_names(cause: Cause) -> list[str]:
    """The grouping rules a cause names, short ('R1 segments'), in the order it names them; [] for a flag no
    rule joins to another."""
    found = [(cause.rule.find(text), text.split(":")[0]) for key, text in GROUPING_RULES.items()
             if key != "alone" and text in cause.rule]
    return [name for _, name in sorted(found)]


@dataclass(frozen=True)
class GroupingRule:
    name: str  # "R1 segments"
    short: str  # the rule as each cause quotes it (audits.causes.RULES)
    text: str  # the rule in full (audits/causes.py's docstring)


def grouping_rules() -> tuple[str, list[GroupingRule]]:
    """The rules that group flags into causes, as audits/causes.py states them: its docstring's
    introduction and R1..Rn paragraphs, each with the short form causes quote."""
    lines = (audits.causes.__doc__ or "").splitlines()
    texts: dict[str, list[str]] = {}
    intro: list[str] = []
    current: list[str] | None = None
    for line in lines[1:]:
        if re.match(r"R\d+ ", line):
            current = texts.setdefault(line.split(" ", 1)[0], [line])
        elif current is not None and line.startswith(" ") and line.strip():
            current.append(line.strip())
        elif current is None and not texts:
            intro.append(line.strip())
        else:
            current = None
    rules = []
    for key, short in GROUPING_RULES.items():
        number = short.split(" ", 1)[0]
        if key == "alone" or number not in texts:
            continue
        full = " ".join(texts[number])
        name, _, text = full.partition(":")
        rules.append(GroupingRule(name=name, short=short, text=_plain(text)))
    return _plain(" ".join(p for p in intro if p)), rules


def _plain(text: str) -> str:
    """Docstring prose for readers: asides that name code (`RULES`, `explained_by`) left out."""
    return re.sub(r" \([^()]*`[^()]*\)", "", text).replace("`", "").strip()


def _s(n: int) -> str:
    return "" if n == 1 else "s"
