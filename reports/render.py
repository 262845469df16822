"""Render an `AuditResult` as one self-contained HTML report, and an index page of runs.

The report is a reading of findings.json: it formats, sorts and groups what the audit concluded and
never recomputes a statistic. Its summary leads with the run's verdict and the period audited, then
lists causes (audits/causes.py), each with what to check next and its evidence: the lead finding's
drill-down and the related flags. It works offline (Plotly inlined once, no fonts or images by URL)
and its Content-Security-Policy allows only its own two scripts (by hash) and no request of any kind,
so a group name such as `<img src=x onerror=...>` can only ever be shown as text.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from audits.catalogue import CHECKS_BY_NAME
from audits.causes import RULES as GROUPING_RULES
from audits.findings import ALL_CHECKS, CONSISTENCY_CHECKS, AuditResult, Cause, CheckRun, DataQuality, Finding
from reports.evidence import CoverageView, Where, list_price_text, where_to_look
from reports.figures import forest_figure, forest_rows, format_estimate, plotly_js, script_json, trend_figure
from reports.methodology import (
    METHOD_LISTS,
    confidence_level,
    consistency_rule,
    method_text,
    statistics_prose,
    thresholds_table,
    words,
)
from reports.summary import check_outcomes, check_title, grouping_rules, period, rule_names, since_previous, verdict
from reports.table import Row, coverage_key, filters, p_text, severity_order, table_rows

__all__ = ["consistency_rule", "render_index", "render_report"]

TEMPLATES = Path(__file__).parent / "templates"
REPORT_NAME = "report.html"
TABLE_PAGE_SIZE = 25  # rows of the findings table a page shows (report.js pages it; without script, all)

NOT_RELATIVE_LINK = (
    "report_links[{run_id!r}] = {link!r} is not a relative link; "
    "give the report's path relative to the index page (e.g. '{run_id}/report.html')"
)


@dataclass
class Chart:
    id: str
    kind: str  # forest | trend
    json: str
    height: int  # reserved before the chart is drawn, so the page does not jump


@dataclass
class Drill:
    """One finding's evidence: its sentence, figures, charts, coverage and, for a rule, where to look."""

    id: str  # the element holding it (its cause, or its own noted details)
    row: Row
    charts: list[Chart]
    has_history: bool
    forest_note: str = ""
    coverage: CoverageView | None = None
    list_prices: str = ""
    where: Where | None = None


@dataclass
class CauseView:
    id: str
    cause: Cause
    rules: list[str]  # the grouping rules it names, short ("R1 segments"); [] when none joined flags
    lead: Drill | None
    related: list[Row] = field(default_factory=list)  # the other flags of the cause, in its order


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


def index_entry(result: AuditResult) -> dict[str, Any]:
    """What the index page shows of one run, as JSON-able data: stored with the run (audits/history.py) so
    that the index never reads a run's findings again, however many runs there are."""
    causes = _open_causes(result)
    return {
        "run": asdict(result.run),
        "verdict": asdict(verdict(result, n_causes=len(causes))),
        "causes": len(causes),
        "counts": result.severity_counts(),
        "outcomes": result.outcome_counts(),
        "dq_passed": result.data_quality.passed,
        "problems": _not_completed(result.checks),
    }


def render_index(entries: Sequence[Mapping[str, Any]], out_path: Path, *, report_links: Mapping[str, str]) -> Path:
    """Write an index page listing runs (`index_entry` of each), newest first, each linked to its report."""
    for run_id, link in report_links.items():
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or link.startswith(("/", "\\")) or not parts.path:
            raise ValueError(NOT_RELATIVE_LINK.format(run_id=run_id, link=link))
    entries = [{**e, "link": report_links.get(e["run"]["run_id"])} for e in sorted(
        entries, key=lambda e: (e["run"]["period_end"], e["run"]["finished_at"], e["run"]["run_id"]), reverse=True)]
    html = _environment().get_template("index.html.j2").render(
        entries=entries,
        latest=entries[0] if entries else None,
        runs_flagged=sum(1 for e in entries if e["verdict"]["outcome"] == "flagged"),
        runs_not_assessed=sum(1 for e in entries if e["verdict"]["outcome"] == "not_assessed"),
        css=_css(),
        csp=_csp(scripts=()),
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return _write_atomic(out_path, html)


def _report_context(result: AuditResult) -> dict[str, Any]:
    """What reports/templates/report.html.j2 reads: the run, then its findings, data quality and method."""
    level = confidence_level(result.method)
    findings = _findings_context(result, level)
    since, changes = since_previous(result.since_previous, scope=result.run.scope)
    return {
        "result": result,
        "run": result.run,
        "level": level,
        "verdict": verdict(result, n_causes=len(findings["causes"])),
        "period": period(result),
        "since": since,
        "since_changes": changes,
        "outcomes": result.outcome_counts(),
        **findings,
        **_data_quality_context(result.data_quality),
        **_method_context(result.method, result.checks),
    }


def _findings_context(result: AuditResult, level: float) -> dict[str, Any]:
    """The causes, each led by its finding's details; the breaches no cause holds; the findings table."""
    method = result.method
    min_customers = (method.get("thresholds") or {}).get("min_group_customers")
    suppressed_text = (
        f"suppressed (fewer than {min_customers} customers)" if min_customers is not None
        else "suppressed (too few customers to show)"
    )
    causes = _open_causes(result)
    findings = {f.id: f for f in result.findings}
    # a consistency rule with breaches that no cause holds (not flagged: reported, not judged) gets details too
    in_causes = {i for c in causes for i in c.finding_ids}
    noted = [f for f in result.findings if f.count and f.id not in in_causes and not f.suppressed
             and f.status != "resolved"]
    anchors = {c.id: f"cause-{n}" for n, c in enumerate(causes, 1)}
    links = {i: "#" + anchors[c.id] for c in causes for i in c.finding_ids}
    links.update({f.id: f"#noted-{n}" for n, f in enumerate(noted, 1)})
    rows = table_rows(result.findings, links=links, suppressed_text=suppressed_text, method=method)
    by_id = {r.finding.id: r for r in rows}

    siblings: dict[tuple[str, str | None, str], list[Finding]] = {}
    for finding in result.findings:
        siblings.setdefault((finding.check, finding.attribute, finding.metric), []).append(finding)

    def drill(finding: Finding, html_id: str, cause: Cause | None) -> Drill:
        return _drill(by_id[finding.id], html_id, result, siblings, cause=cause, level=level)

    cause_views = []
    for cause in causes:
        lead = findings.get(cause.lead_id) or next((findings[i] for i in cause.finding_ids if i in findings), None)
        cause_views.append(CauseView(
            id=anchors[cause.id], cause=cause, rules=rule_names(cause),
            lead=drill(lead, anchors[cause.id], cause) if lead is not None else None,
            related=[by_id[i] for i in cause.finding_ids if i in by_id and (lead is None or i != lead.id)],
        ))
    return {
        "causes": cause_views,
        "resolved": [c for c in result.causes if c.status == "resolved"],
        "noted": [drill(f, f"noted-{n}", None) for n, f in enumerate(noted, 1)],
        "rows": rows,
        "page_size": TABLE_PAGE_SIZE,
        "filters": filters(rows),
        "low_coverage_rows": sum(1 for r in rows if r.coverage and r.coverage.low),
    }


def _data_quality_context(dq: DataQuality) -> dict[str, Any]:
    """The ingest's batches and Great Expectations' results, failures first."""
    return {
        "dq": dq,
        "expectations": sorted(dq.expectations, key=lambda e: (bool(e.get("success")), str(e.get("expectation")))),
        "expectations_failed": sum(1 for e in dq.expectations if not e.get("success")),
        "expectations_have_batch": any("batch" in e for e in dq.expectations),
        "batch_columns": list(dict.fromkeys(k for b in dq.batches for k in b)),
    }


def _method_context(method: dict[str, Any], checks: Sequence[CheckRun]) -> dict[str, Any]:
    """How the audit was done: the checks (each one's words and whether it ran), thresholds, statistics and
    how groups were formed."""
    checks_ran = {c.check: c for c in checks}
    intro, rules = grouping_rules()
    return {
        "checks_run": [(c, check_title(c.check), check_outcomes(c)) for c in checks],
        "thresholds": thresholds_table(method.get("thresholds") or {}),
        "method_lists": [(label, method_text(method[key])) for key, label in METHOD_LISTS if key in method],
        "method_other": [(k, method_text(v)) for k, v in method.items()
                         if k != "thresholds" and k not in dict(METHOD_LISTS)],
        "checks": [
            {"name": name, "title": CHECKS_BY_NAME[name].title, "prose": words(CHECKS_BY_NAME[name].explanation, method),
             "basis": CHECKS_BY_NAME[name].basis, "ran": checks_ran.get(name),
             "kind": "Consistency" if name in CONSISTENCY_CHECKS else "Disparity"}
            for name in ALL_CHECKS
        ],
        "statistics": statistics_prose(method),
        "grouping_intro": intro,
        "grouping_rules": rules,
        "grouping_alone": GROUPING_RULES["alone"],
    }


def _not_completed(checks: Sequence[CheckRun]) -> str:
    """The checks that did not complete, for the index: 'price_gap (errored), dearer_price (skipped)', or
    'all 8 (skipped)' when none did, for the same reason."""
    problems = [c for c in checks if c.status != "ok"]
    if len(problems) > 1 and len(problems) == len(checks) and len({c.status for c in problems}) == 1:
        return f"all {len(problems)} ({problems[0].status})"
    return ", ".join(f"{c.check} ({c.status})" for c in problems) or "none"


def _open_causes(result: AuditResult) -> list[Cause]:
    """The run's causes (not those resolved since the previous run). A findings.json of before causes: each
    flagged finding is shown as a cause of its own, without a rule."""
    causes = [c for c in result.causes if c.status != "resolved"]
    if causes or not result.flagged:
        return causes
    return [Cause(id=f.id, headline=f.summary, severity=f.severity, finding_ids=[f.id], rule="", next_step="",
                  check=f.check, lead_id=f.id, status=f.status)
            for f in sorted(result.flagged, key=severity_order)]


def _drill(row: Row, html_id: str, result: AuditResult, siblings: Mapping[tuple[str, str | None, str], list[Finding]],
           *, cause: Cause | None, level: str) -> Drill:
    finding = row.finding
    figures: dict[str, dict[str, Any] | None] = {}
    forest_note = ""
    if finding.check not in CONSISTENCY_CHECKS and not finding.suppressed:
        # A consistency finding is one count for the whole run: there are no siblings to plot.
        group = siblings[(finding.check, finding.attribute, finding.metric)]
        shown = forest_rows(group, focus=finding)
        figures["forest"] = forest_figure(shown, focus=finding, thresholds=result.method.get("thresholds") or {},
                                          level=level)
        plotted = sum(1 for f in group if not f.suppressed)
        forest_note = (f"Showing {len(shown)} of {plotted} comparisons: this segment across groups and this group "
                       "across segments." if len(shown) < plotted else "")
    if not finding.suppressed:
        figures["trend"] = trend_figure(finding, result.history, period_end=result.run.period_end, level=level)
    charts = [Chart(id=f"{html_id}-{kind}", kind=kind, json=script_json(figure), height=int(figure["layout"]["height"]))
              for kind, figure in figures.items() if figure is not None]
    echo = (cause is not None and finding.check == "price_gap" and finding.id != cause.lead_id
            and GROUPING_RULES["echo"] in cause.rule)
    return Drill(id=html_id, row=row, charts=charts, forest_note=forest_note,
                 has_history=any(c.kind == "trend" for c in charts), coverage=row.coverage,
                 list_prices=list_price_text(finding, echo=echo, level=level), where=where_to_look(finding))


def related_text(row: Row, cause: Cause, level: str) -> str:
    """A related flag's list-price echo, for its compact row (the lead's drill says its own)."""
    echo = row.finding.check == "price_gap" and GROUPING_RULES["echo"] in cause.rule
    return list_price_text(row.finding, echo=echo, level=level)


@functools.cache
def _environment() -> jinja2.Environment:
    """One per process: each template is compiled once (a night publishes two reports and two indexes)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["thousands"] = lambda value: "n/a" if value is None else f"{value:,}"
    env.filters["estimate"] = format_estimate
    env.filters["p"] = p_text
    env.globals["related_text"] = related_text
    env.globals["coverage_key"] = coverage_key
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
