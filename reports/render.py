"""Render an `AuditResult` as one self-contained HTML report, and an index page of runs.

The report is a reading of findings.json: it formats, sorts and groups what the audit concluded and
never recomputes a statistic. It works offline (Plotly inlined once, no fonts or images by URL) and
its Content-Security-Policy allows only its own two scripts (by hash) and no request of any kind, so
a group name such as `<img src=x onerror=...>` can only ever be shown as text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from audits.catalogue import CHECKS_BY_NAME, EEOC, INTERNAL, RULES
from audits.findings import ALL_CHECKS, CONSISTENCY_CHECKS, AuditResult, Finding
from reports.figures import (
    comparison_text,
    forest_figure,
    forest_rows,
    format_estimate,
    format_interval,
    format_value,
    plotly_js,
    script_json,
    segment_text,
    trend_figure,
)

TEMPLATES = Path(__file__).parent / "templates"
REPORT_NAME = "report.html"
TOP_FINDINGS = 5
TABLE_PAGE_SIZE = 25  # rows of the findings table a page shows (report.js pages it; without script, all)

NOT_RELATIVE_LINK = (
    "report_links[{run_id!r}] = {link!r} is not a relative link; "
    "give the report's path relative to the index page (e.g. '{run_id}/report.html')"
)

SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
STATUS_RANK = {"new": 0, "persisting": 1, "resolved": 2}

POLICY_MAXIMUM = "the policy maximum"
SAME_CELL = "the same product on the same day"  # the cell in words when the run does not say


STATISTICS_PROSE: tuple[tuple[str, str], ...] = (
    ("Like for like",
     "Disparities are measured within cells of the same product, the same day and the same controls "
     "(listed under Scope), then combined. A group that simply buys dearer products, or buys through a "
     "dearer channel, is therefore not counted as paying more."),
    ("Customers are the unit",
     "A customer who buys often is still one customer. Standard errors are cluster-robust by customer, "
     "so frequent buyers cannot make a difference look more certain than it is."),
    ("Confidence intervals and p-values",
     "Every estimate comes with a 95% confidence interval (the range of values the data are consistent "
     "with) and a p-value (how surprising the difference would be if there were none)."),
    ("False discovery rate",
     "An audit runs many tests, and some would look significant by chance. The Benjamini-Hochberg "
     "procedure adjusts for this across all tests of a run; the adjusted value is the q-value."),
    ("Flagged only when it matters",
     "A finding is flagged only when it is both statistically significant (q below the false discovery "
     "rate) and practically significant (beyond the threshold for its check). Low findings are noted, "
     "not flagged."),
    ("Privacy",
     "Groups with fewer customers than the minimum group size are reported as suppressed, with no "
     "figures, so no customer can be singled out."),
)

THRESHOLD_HELP: dict[str, tuple[str, str]] = {
    "min_price_gap": ("Minimum price gap", INTERNAL),
    "adverse_impact_ratio": ("Adverse impact ratio (four-fifths rule)", EEOC),
    "min_discount_depth": ("Minimum difference in discount depth", INTERNAL),
    "fdr": ("False discovery rate (Benjamini-Hochberg)", "Statistical setting"),
    "min_group_customers": ("Minimum customers per group shown", "Privacy setting"),
    "max_discount_pct": ("Deepest discount allowed", INTERNAL),
}
METHOD_LISTS: tuple[tuple[str, str], ...] = (
    ("attributes", "Attributes audited"),
    ("intersections", "Intersections audited"),
    ("segment_by", "Findings also per value of"),
    ("controls", "Controls (legitimate price factors compared within)"),
    ("reference", "Reference groups"),
)


@dataclass
class Chart:
    id: str
    kind: str  # forest | trend
    json: str
    height: int  # reserved before the chart is drawn, so the page does not jump


@dataclass
class Row:
    """One finding as the table shows it: display text plus raw sort keys."""

    finding: Finding
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
    drill_id: str | None
    rule: str = ""  # consistency findings: the rule broken, in words
    sort: dict[str, str] = field(default_factory=dict)


@dataclass
class Drill:
    id: str
    row: Row
    charts: list[Chart]
    has_history: bool
    forest_note: str = ""


def render_report(result: AuditResult, out_dir: Path) -> Path:
    """Write `out_dir/report.html` atomically and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    app_js = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    bundle = plotly_js()
    html = _environment().get_template("report.html.j2").render(
        **_report_context(result),
        css=_css(),
        plotly_js=bundle,
        app_js=app_js,
        csp=_csp(scripts=(bundle, app_js)),
    )
    return _write_atomic(out_dir / REPORT_NAME, html)


def render_index(runs: Sequence[AuditResult], out_path: Path, *, report_links: Mapping[str, str]) -> Path:
    """Write an index page listing runs, newest first, each linked to its report; return its path."""
    for run_id, link in report_links.items():
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or link.startswith(("/", "\\")) or not parts.path:
            raise ValueError(NOT_RELATIVE_LINK.format(run_id=run_id, link=link))
    ordered = sorted(runs, key=lambda r: (r.run.period_end, r.run.finished_at, r.run.run_id), reverse=True)
    entries = [
        {
            "run": r.run,
            "link": report_links.get(r.run.run_id),
            "counts": r.severity_counts(),
            "dq_passed": r.data_quality.passed,
            "problems": [c for c in r.checks if c.status != "ok"],
        }
        for r in ordered
    ]
    html = _environment().get_template("index.html.j2").render(
        entries=entries,
        latest=entries[0] if entries else None,
        runs_with_high=sum(1 for e in entries if e["counts"]["high"]),
        css=_css(),
        csp=_csp(scripts=()),
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return _write_atomic(out_path, html)


def _report_context(result: AuditResult) -> dict[str, Any]:
    thresholds = result.method.get("thresholds") or {}
    min_customers = thresholds.get("min_group_customers")
    suppressed_text = (
        f"suppressed (fewer than {min_customers} customers)" if min_customers is not None
        else "suppressed (too few customers to show)"
    )
    # a drill-down (charts) for each cause's lead finding; the flags inside a cause are rows of the table
    leads = {c.lead_id for c in result.causes if c.status != "resolved"}
    flagged_keys = {f.key for f in result.flagged if f.id in leads or not result.causes}
    rows: list[Row] = []
    for finding in _table_order(result.findings):
        drill_id = f"finding-{len(rows) + 1}" if finding.key in flagged_keys else None
        rows.append(_row(finding, drill_id=drill_id, suppressed_text=suppressed_text, method=result.method))

    siblings: dict[tuple[str, str | None, str], list[Finding]] = {}
    for finding in result.findings:
        siblings.setdefault((finding.check, finding.attribute, finding.metric), []).append(finding)
    drills: list[Drill] = []
    for row in sorted((r for r in rows if r.drill_id), key=lambda r: _severity_order(r.finding)):
        finding = row.finding
        figures: dict[str, dict[str, Any] | None] = {}
        forest_note = ""
        if finding.check not in CONSISTENCY_CHECKS and not finding.suppressed:
            # A consistency finding is one count for the whole run: there are no siblings to plot.
            group = siblings[(finding.check, finding.attribute, finding.metric)]
            shown = forest_rows(group, focus=finding)
            figures["forest"] = forest_figure(shown, focus=finding, thresholds=thresholds)
            forest_note = (f"Showing {len(shown)} of {sum(1 for f in group if not f.suppressed)} comparisons: "
                           "this segment across groups and this group across segments."
                           if len(shown) < sum(1 for f in group if not f.suppressed) else "")
        if not finding.suppressed:
            figures["trend"] = trend_figure(finding, result.history, period_end=result.run.period_end)
        charts = [Chart(id=f"{row.drill_id}-{kind}", kind=kind, json=script_json(figure),
                        height=int(figure["layout"]["height"]))
                  for kind, figure in figures.items() if figure is not None]
        drills.append(Drill(id=row.drill_id or "", row=row, charts=charts, forest_note=forest_note,
                            has_history=any(c.kind == "trend" for c in charts)))

    checks_ran = {c.check: c for c in result.checks}
    dq = result.data_quality
    expectations = sorted(dq.expectations, key=lambda e: (bool(e.get("success")), str(e.get("expectation"))))
    return {
        "result": result,
        "run": result.run,
        "counts": result.severity_counts(),
        "top": drills[:TOP_FINDINGS],
        "more_flagged": max(0, len(drills) - TOP_FINDINGS),
        "problem_checks": [c for c in result.checks if c.status != "ok"],
        "rows": rows,
        "page_size": TABLE_PAGE_SIZE,
        "filters": _filters(rows),
        "drills": drills,
        "dq": dq,
        "expectations": expectations,
        "expectations_failed": sum(1 for e in dq.expectations if not e.get("success")),
        "expectations_have_batch": any("batch" in e for e in dq.expectations),
        "batch_columns": list(dict.fromkeys(k for b in dq.batches for k in b)),
        "thresholds": [
            (THRESHOLD_HELP.get(k, (k.replace("_", " ").capitalize(), "Set in the audit configuration")), k, v)
            for k, v in thresholds.items()
        ],
        "method_lists": [(label, _method_text(result.method[key])) for key, label in METHOD_LISTS
                         if key in result.method],
        "method_other": [(k, _method_text(v)) for k, v in result.method.items()
                         if k != "thresholds" and k not in dict(METHOD_LISTS)],
        "checks": [
            {"name": name, "title": CHECKS_BY_NAME[name].title, "prose": _words(CHECKS_BY_NAME[name].explanation,
                                                                                result.method),
             "basis": CHECKS_BY_NAME[name].basis, "ran": checks_ran.get(name),
             "kind": "Consistency" if name in CONSISTENCY_CHECKS else "Disparity"}
            for name in ALL_CHECKS
        ],
        "statistics": STATISTICS_PROSE,
    }


def _table_order(findings: Sequence[Finding]) -> list[Finding]:
    """Default order of the table: most severe first, then by check, attribute and segment."""
    return sorted(findings, key=lambda f: (
        _severity_order(f), f.check, f.attribute or "", segment_text(f.segment), f.group or ""))


def _severity_order(finding: Finding) -> tuple[int, int, float]:
    q = finding.q_value if finding.q_value is not None and math.isfinite(finding.q_value) else math.inf
    return (SEVERITY_RANK.get(finding.severity, 9) + (3 if finding.status == "resolved" else 0),
            STATUS_RANK.get(finding.status, 9), q)


def _row(finding: Finding, *, drill_id: str | None, suppressed_text: str, method: Mapping[str, Any]) -> Row:
    shown = not finding.suppressed
    estimate = format_value(finding.metric, finding.estimate) if shown and finding.estimate is not None else ""
    interval = format_interval(finding.metric, finding.ci_low, finding.ci_high) if shown else ""
    n_group, n_reference = finding.n_customers_group, finding.n_customers_reference
    customers = ""
    if shown and (n_group is not None or n_reference is not None):
        customers = f"{_int(n_group)} / {_int(n_reference)}"
    row = Row(
        finding=finding,
        check_title=CHECKS_BY_NAME[finding.check].title if finding.check in CHECKS_BY_NAME else finding.check,
        attribute=finding.attribute or "",
        comparison=comparison_text(finding),
        segment=segment_text(finding.segment),
        estimate=suppressed_text if finding.suppressed else estimate,
        interval=interval,
        p_text=_p(finding.p_value) if shown else "",
        q_text=_p(finding.q_value) if shown else "",
        customers=customers,
        count=_int(finding.count) if shown and finding.count is not None else "",
        drill_id=drill_id,
        rule=consistency_rule(finding.metric, method) if finding.check in CONSISTENCY_CHECKS else "",
    )
    row.sort = {
        "estimate": _number(finding.estimate if shown else None),
        "p": _number(finding.p_value if shown else None),
        "q": _number(finding.q_value if shown else None),
        "customers": _number(n_group if shown else None),
        "count": _number(finding.count if shown else None),
        "severity": str(SEVERITY_RANK.get(finding.severity, 9)),
        "status": str(STATUS_RANK.get(finding.status, 9)),
    }
    return row


def consistency_rule(metric: str, method: Mapping[str, Any]) -> str:
    """The rule a consistency metric checks, in words, with the run's controls and policy maximum."""
    if metric not in RULES:
        return metric.replace("_", " ").capitalize()
    max_discount = (method.get("thresholds") or {}).get("max_discount_pct")
    return _words(RULES[metric][2], method).replace(
        "{max_discount}", POLICY_MAXIMUM if max_discount is None else f"{max_discount * 100:g}%")


def _words(text: str, method: Mapping[str, Any]) -> str:
    """A catalogue text with the run's outcome noun and cell in words filled in."""
    noun = (method.get("outcome") or {}).get("noun", "price")
    # a findings.json of before the cell was configurable: product and day, and its controls
    cell = method.get("cell_words") or SAME_CELL + "".join(f" and {c.replace('_', ' ')}"
                                                           for c in method.get("controls") or ())
    return text.replace("{noun}", noun).replace("{cell}", cell)


def _filters(rows: Sequence[Row]) -> list[tuple[str, str, list[str]]]:
    """(label, data attribute, sorted distinct values) for each filter control."""
    def distinct(values: Any) -> list[str]:
        return sorted(set(values))
    return [
        ("Check", "check", distinct(r.finding.check for r in rows)),
        ("Attribute", "attribute", distinct(r.attribute or "(none)" for r in rows)),
        ("Segment", "segment", distinct(r.segment for r in rows)),
        ("Severity", "severity", sorted({r.finding.severity for r in rows}, key=lambda s: SEVERITY_RANK.get(s, 9))),
        ("Status", "status", sorted({r.finding.status for r in rows}, key=lambda s: STATUS_RANK.get(s, 9))),
    ]


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _int(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def _number(value: float | None) -> str:
    """Sort key for the table script: a plain number, or '' (sorted last)."""
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _method_text(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} = {_method_text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(" x ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in value) or "none"
    return json.dumps(value) if not isinstance(value, str) else value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["thousands"] = _int
    env.filters["estimate"] = format_estimate
    env.filters["p"] = _p
    return env


def _css() -> str:
    return (TEMPLATES / "report.css").read_text(encoding="utf-8")


def _csp(*, scripts: Sequence[str]) -> str:
    """Only our own inline scripts run (by hash); nothing may be fetched, posted or framed."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode('utf-8')).digest()).decode('ascii')}'" for s in scripts
    )
    script_src = f"script-src {hashes}" if hashes else "script-src 'none'"
    return (f"default-src 'none'; {script_src}; style-src 'unsafe-inline'; img-src data:; "
            "base-uri 'none'; form-action 'none'")


def _write_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file in the same folder, so readers never see half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
