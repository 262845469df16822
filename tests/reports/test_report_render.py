"""The HTML report and index, asserted by parsing them: headings, numbers, links, escaping."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import plotly.offline
import pytest

from audits.findings import CONSISTENCY_CHECKS, AuditResult
from reports import index_entry, render_index, render_report
from audits.catalogue import RULES
from reports.render import consistency_rule
from reports.figures import (
    PLOTLY_BUNDLE,
    PLOTLY_BUNDLE_SHA256,
    PLOTLY_BUNDLE_VERSION,
    forest_figure,
    metric_display,
    plotly_js,
    trend_figure,
)

SECTION_HEADINGS = ["Executive summary", "Findings", "Data quality", "Methodology", "Run metadata"]


@pytest.fixture
def page(result: AuditResult, tmp_path: Path, parse: Callable) -> tuple[str, object]:
    path = render_report(result, tmp_path / "run")
    text = path.read_text(encoding="utf-8")
    return text, parse(text)


def rows_by_comparison(doc: object) -> dict[str, list[str]]:
    table = doc.by_id("findings-table")
    rows = [tr for tr in table.iter("tr") if tr.iter("td")]
    return {" ".join(r.iter("td")[2].text.split()) + " | " + r.iter("td")[3].text.strip(): [
        " ".join(td.text.split()) for td in r.iter("td")] for r in rows}


def test_writes_report_atomically(result: AuditResult, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = render_report(result, out)
    assert first == out / "report.html"
    first.write_text("stale", encoding="utf-8")
    assert render_report(result, out) == first
    assert first.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert sorted(os.listdir(out)) == ["report.html"]  # no temporary file left behind


def test_sections_in_order(page: tuple) -> None:
    _, doc = page
    assert [h.text for h in doc.iter("h2")] == SECTION_HEADINGS
    assert doc.iter("h1")[0].text == "Audit report"


def test_executive_summary_counts_and_sentences(page: tuple, result: AuditResult, sample: SimpleNamespace) -> None:
    _, doc = page
    # flagged: gap F, incidence 65+, hostile, dispersion; clear: gap groceries, incidence 18-24, depth South;
    # suppressed: Sami (the resolved one is not counted)
    tiles = [doc.by_id(f"count-{s}").text for s in ("flagged", "clear", "suppressed", "not-assessed")]
    assert tiles == ["4", "3", "1", "0"] == [str(n) for n in result.outcome_counts().values()]
    summary = doc.by_id("summary")
    # a result without causes (a findings.json of before them): each flagged finding is a cause of its own
    causes = summary.classed("cause")
    headlines = [" ".join(c.classed("cause-headline")[0].text.split()) for c in causes]
    assert headlines[0] == sample.HIGH_GAP.summary and len(headlines) == 4
    assert sample.LOW_GAP.summary not in summary.text
    assert "Passed: 2 of 3 expectations met; 15 rows quarantined." in " ".join(doc.by_id("dq-verdict").text.split())
    problems = [" ".join(li.text.split()) for li in doc.by_id("problem-checks").iter("li")]
    assert problems == ["Price arithmetic price_arithmetic: errored: Binder Error: column line_total not found",
                        "Discount policy discount_policy: no discount codes in the data"]


def test_findings_table_numbers(page: tuple) -> None:
    _, doc = page
    rows = rows_by_comparison(doc)
    assert len(rows) == 9
    high = rows["F vs M | category = personal_care"]
    assert high == ["Price gap", "gender", "F vs M", "category = personal_care", "+5.0% +4.0% to +6.0%",
                    "<0.001", "<0.001", "812 / 790", "", "", "high", "new"]
    assert rows["65+ vs 25-44 | all customers"][4:8] == ["0.52 0.45 to 0.60", "<0.001", "<0.001", "140 / 900"]
    assert rows["South vs North | all customers"][4:7] == ["-3.1 pp -5.0 pp to -1.2 pp", "0.004", "0.020"]
    dispersion = rows[" | all customers"]
    assert dispersion == ["Price dispersion One list price for everyone for the same product on the same day and "
                          "channel", "", "", "all customers", "0.092% of lines checked", "", "", "", "", "37",
                          "medium", "new"]
    assert rows["F vs M | category = groceries"][10] == "clear"
    assert rows["Sami vs all other customers | all customers"][10] == "suppressed"


def test_consistency_finding_shows_count_share_and_rule(page: tuple) -> None:
    text, doc = page
    (drill,) = [d for d in doc.classed("drill") if "Price dispersion" in d.iter("h4")[0].text]
    facts = {dt.text: dd.text for dt, dd in zip(drill.iter("dt"), drill.iter("dd"), strict=True)}
    assert facts == {"Lines breaking the rule": "37", "Share of the lines checked": "0.092%", "Status": "new"}
    assert " ".join(drill.classed("rule-text")[0].text.split()) == (
        "Rule: One list price for everyone for the same product on the same day and channel.")
    assert drill.classed("chart") == []  # one count for the run: nothing to plot against
    assert "0.000921" not in doc.text


def test_consistency_rules_in_words(sample: SimpleNamespace) -> None:
    method = {"controls": ["channel", "quantity_band"], "thresholds": {"max_discount_pct": 0.375}}
    assert consistency_rule("list_price_dispersion", method) == (
        "One list price for everyone for the same product on the same day and channel and quantity band")
    assert consistency_rule("discount_above_policy", method) == "No unit price more than 37.5% below the list price"
    assert consistency_rule("discount_above_policy", {}) == "No unit price more than the policy maximum below the list price"
    assert consistency_rule("list_price_dispersion", {}) == "One list price for everyone for the same product on the same day"
    assert consistency_rule("new_rule_name", {}) == "New rule name"


def test_every_consistency_metric_has_a_share_and_a_rule() -> None:
    """The metrics the consistency checks' SQL emits, read from the files, each shown as a share with its rule."""
    sql = Path(__file__).resolve().parents[2] / "sql" / "checks"
    metrics = {m for check in CONSISTENCY_CHECKS
               for m in re.findall(r"'(\w+)' as metric", (sql / f"{check}.sql").read_text(encoding="utf-8"))}
    assert metrics == {"line_total_mismatch", "discount_mismatch", "list_price_dispersion", "paid_price_dispersion",
                       "discount_above_policy"}
    for metric in metrics:
        assert metric_display(metric).kind == "share" and metric in RULES


def test_suppressed_finding_shows_no_figures(page: tuple, sample: SimpleNamespace) -> None:
    _, doc = page
    row = rows_by_comparison(doc)["Sami vs all other customers | all customers"]
    assert row[4] == "suppressed (fewer than 11 customers)"
    assert row[5:10] == ["", "", "", "", ""]
    assert "Sami" not in " ".join(c.text for c in doc.classed("cause"))


def test_filters_offer_every_value(page: tuple, sample: SimpleNamespace) -> None:
    _, doc = page
    options = {s.attrs["data-filter"]: [o.attrs["value"] for o in s.iter("option")] for s in doc.iter("select")}
    assert options["outcome"] == ["", "high", "medium", "suppressed", "clear"]
    assert options["status"] == ["", "new", "persisting", "resolved"]
    assert options["coverage"] == [""]  # the fixture's findings carry no coverage
    assert sample.HOSTILE_ATTRIBUTE in options["attribute"] and "(none)" in options["attribute"]
    assert f"category = {sample.HOSTILE_SEGMENT}" in options["segment"]


def test_one_drill_down_per_flagged_finding(page: tuple, result: AuditResult) -> None:
    _, doc = page
    causes = doc.classed("cause")
    assert len(causes) == len(result.flagged) == 4  # no causes recorded: a cause a flag
    links = {a.attrs["href"] for a in doc.by_id("findings-table").iter("a")}
    assert links == {"#" + c.attrs["id"] for c in causes}
    first = causes[0].classed("drill")[0]
    facts = {dt.text: dd.text for dt, dd in zip(first.iter("dt"), first.iter("dd"), strict=True)}
    assert facts["Estimate"] == "+5.0%" and facts["95% confidence interval"] == "+4.0% to +6.0%"
    assert facts["Customers in group"] == "812" and facts["Customers in reference"] == "790"


def test_charts_embed_json_figures(page: tuple) -> None:
    text, doc = page
    charts = doc.classed("chart")
    # price gap: forest + trend; hostile: forest; dispersion: none; 65+: forest + trend
    assert [c.attrs["id"].rsplit("-", 1)[1] for c in charts] == ["forest", "trend", "forest", "forest", "trend"]
    for chart in charts:
        source = doc.by_id(chart.attrs["data-figure"])
        assert source.tag == "script" and source.attrs["type"] == "application/json"
        figure = json.loads(source.text)
        assert figure["data"] and figure["layout"]
    assert "plotly-graph-div" not in text.replace(plotly_js(), "")  # nothing from plotly's to_html


def test_details_start_closed_and_every_row_is_in_the_page(page: tuple, result: AuditResult) -> None:
    """Short by default, complete without script: sections closed (but in the page), no row hidden."""
    _, doc = page
    causes = doc.classed("cause")
    bodies = [c.iter("details")[0] for c in causes]
    assert len(bodies) == 4 and all("open" not in d.attrs and d.attrs["class"] == "evidence" for d in bodies)
    assert [d.classed("drill-title")[0].attrs["id"] for d in bodies] == [f"{c.attrs['id']}-h" for c in causes]
    parts = doc.by_id("methodology").iter("details")
    assert [" ".join(d.iter("summary")[0].text.split()) for d in parts] == [
        "Checks: what each one tests and its basis", "Statistics: how a difference is measured and judged",
        "Causes: how flagged findings are grouped"]
    assert all("open" not in d.attrs for d in parts)
    table = doc.by_id("findings-table")
    assert table.attrs["data-page-size"] == "25"
    assert not [tr for tr in table.iter("tr") if "hidden" in tr.attrs]
    assert [n for n in doc.iter() if n.attrs.get("id") == "findings-pager"] == []  # 9 rows: one page


def test_long_table_has_a_pager_hidden_until_the_script_runs(tmp_path: Path, parse: Callable,
                                                              sample: SimpleNamespace) -> None:
    many = [sample.finding(group=f"G{i:02d}", q_value=i / 100) for i in range(26)]
    doc = parse(render_report(sample.build_result(findings=many), tmp_path).read_text(encoding="utf-8"))
    pager = doc.by_id("findings-pager")
    assert "hidden" in pager.attrs and pager.tag == "nav"
    assert [b.attrs["data-page"] for b in pager.iter("button")] == ["previous", "next", "all"]
    assert pager.iter("button")[2].text == "Show all 26"
    assert len(doc.by_id("findings-table").iter("tbody")[0].iter("tr")) == 26


def test_no_trend_without_history(result: AuditResult, tmp_path: Path, parse: Callable, sample) -> None:
    doc = parse(render_report(sample.replace(result, history=[]), tmp_path).read_text(encoding="utf-8"))
    kinds = [c.attrs["id"].rsplit("-", 1)[1] for c in doc.classed("chart")]
    assert kinds == ["forest", "forest", "forest"]


def test_hostile_names_render_as_text(page: tuple, sample: SimpleNamespace) -> None:
    text, doc = page
    for hostile in (sample.HOSTILE_GROUP, sample.HOSTILE_SEGMENT, sample.HOSTILE_ATTRIBUTE, sample.HOSTILE_SUMMARY):
        assert hostile in doc.text, hostile  # shown literally
    assert "<script>alert" not in text and "<img" not in text and "<b onmouseover" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert doc.iter("img") == [] and doc.iter("b") == [] and doc.iter("i") == []
    assert not [n for n in doc.iter() if any(name.startswith("on") for name in n.attrs)]
    scripts = doc.iter("script")
    executable = [s for s in scripts if "type" not in s.attrs]
    assert len(executable) == 2  # Plotly and the report's own script, nothing injected
    for data in (s for s in scripts if s.attrs.get("type") == "application/json"):
        assert "<" not in data.text and ">" not in data.text
        assert sample.HOSTILE_GROUP not in data.text  # escaped inside the JSON as well


def test_plotly_inlined_exactly_once(page: tuple) -> None:
    text, doc = page
    bundle = plotly_js()
    assert text.count(bundle[:400]) == 1
    assert sum(1 for s in doc.iter("script") if s.text == bundle) == 1
    assert "cdn.plot.ly" not in text.replace(bundle, "")


def assert_nothing_external(doc: object) -> None:
    """No attribute or stylesheet that could make a request, and a CSP that forbids any."""
    for node in doc.iter():
        for name in ("src", "href", "action", "data", "poster", "srcset"):
            value = node.attrs.get(name)
            if value is not None:
                parts = urlsplit(value)
                assert not parts.scheme and not parts.netloc, f"<{node.tag} {name}={value!r}>"
    assert doc.iter("link") == [] and doc.iter("iframe") == []
    styles = " ".join(s.text for s in doc.iter("style"))
    assert "@import" not in styles and not re.search(r"url\(", styles) and "@font-face" not in styles
    csp = [m.attrs["content"] for m in doc.iter("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"]
    assert csp and csp[0].startswith("default-src 'none'")


def test_nothing_external(page: tuple) -> None:
    _, doc = page
    assert_nothing_external(doc)


def test_vendored_plotly_bundle_is_the_recorded_release() -> None:
    data = PLOTLY_BUNDLE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == PLOTLY_BUNDLE_SHA256
    assert f"plotly.js (basic - minified) v{PLOTLY_BUNDLE_VERSION}\n" in data[:200].decode("ascii")
    # The figures are validated against the Python package's schema, which targets this plotly.js.
    assert PLOTLY_BUNDLE_VERSION.split(".")[0] == plotly.offline.get_plotlyjs_version().split(".")[0]
    licence = PLOTLY_BUNDLE.with_name("plotly-basic.LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "Plotly" in licence
    assert "</script" not in plotly_js().lower() and "<!--" not in plotly_js()  # safe to inline as it is


def test_bundle_has_the_trace_types_the_figures_use(result: AuditResult, sample: SimpleNamespace) -> None:
    bundled = set(re.findall(r'moduleType:"trace",name:"(\w+)"', plotly_js()))
    assert bundled == {"scatter", "bar", "pie"}
    figures = [forest_figure([sample.HIGH_GAP, sample.LOW_GAP], focus=sample.HIGH_GAP),
               trend_figure(sample.HIGH_GAP, result.history, period_end=result.run.period_end)]
    used = {trace.get("type", "scatter") for figure in figures if figure for trace in figure["data"]}
    assert used and used <= bundled


def test_demo_report_is_small_and_self_contained(demo_report: Path, parse: Callable) -> None:
    text = demo_report.read_text(encoding="utf-8")
    assert demo_report.stat().st_size < 2_500_000
    doc = parse(text)
    bundle = plotly_js()
    assert text.count(bundle) == 1 and text.count(bundle[:400]) == 1
    assert_nothing_external(doc)
    assert "://" not in text.replace(bundle, "")  # the market's names hold no address, so nothing may
    rows = doc.by_id("findings-table").iter("tbody")[0].iter("tr")
    assert len(rows) > 100  # a realistic report
    consistency = [r for r in rows if r.attrs["data-check"] in CONSISTENCY_CHECKS]
    assert len(consistency) == 5  # arithmetic: 2 rules, dispersion: list and paid prices, policy: 1
    for row in consistency:  # a share in percent and the rule, never the raw fraction
        assert re.fullmatch(r"(<)?\d+(\.\d+)?% of lines checked|0%", " ".join(row.iter("td")[4].text.split()))
        assert row.classed("rule")


def test_data_quality_section(page: tuple) -> None:
    _, doc = page
    assert doc.by_id("expectations-passed").text == "2"
    assert doc.by_id("expectations-failed").text == "1"
    assert doc.by_id("quarantined-rows").text == "15"
    reasons = [[td.text for td in tr.iter("td")] for tr in doc.by_id("quarantine-table").iter("tr")][1:]
    assert reasons == [["unknown currency", "12"], ["quantity not positive", "3"]]
    failed = doc.by_id("expectations-table").iter("tbody")[0].iter("tr")[0]
    assert [td.text for td in failed.iter("td")] == ["failed", "expect_column_values_to_be_in_set", "currency",
                                                      "shop-0001", "12"]


def test_methodology_states_thresholds_and_their_basis(page: tuple) -> None:
    _, doc = page
    method = " ".join(doc.by_id("methodology").text.split())
    for phrase in ("within cells of the same product, the same day and the same controls",
                   "cluster-robust by customer", "Benjamini-Hochberg", "four-fifths",
                   "US EEOC", "FCA general insurance pricing practices (GIPP, PS21/5)", "Internal policy"):
        assert phrase in method, phrase
    thresholds = {tr.iter("code")[0].text: tr.iter("td")[1].text
                  for tr in doc.by_id("thresholds-table").iter("tbody")[0].iter("tr")}
    assert thresholds == {"min_price_gap": "0.01", "adverse_impact_ratio": "0.8", "min_discount_depth": "0.02",
                          "fdr": "0.05", "min_group_customers": "11"}
    assert "errored, not assessed (Binder Error" in doc.by_id("check-price_arithmetic").text
    assert "gender x age_band" in method and "channel" in method


def test_run_metadata(page: tuple, result: AuditResult) -> None:
    _, doc = page
    meta = " ".join(doc.by_id("run").text.split())
    assert doc.by_id("meta-transactions").text == "48,213" and doc.by_id("meta-customers").text == "6,120"
    for value in (result.run.run_id, result.run.config_sha256, result.run.data_sha256, "2026-05-01 to 2026-05-31"):
        assert value in meta


def test_empty_result_renders(tmp_path: Path, parse: Callable, sample: SimpleNamespace) -> None:
    from audits.findings import DataQuality
    empty = sample.build_result(findings=[], checks=[], history=[], method={},
                                data_quality=DataQuality(passed=False))
    doc = parse(render_report(empty, tmp_path).read_text(encoding="utf-8"))
    assert [h.text for h in doc.iter("h2")] == SECTION_HEADINGS
    assert doc.by_id("verdict-word").text == "Not assessed"  # no check recorded: nobody looked
    assert "No cause can be named" in doc.by_id("summary").text and doc.classed("clear") == []
    assert doc.by_id("dq-verdict").text.split()[0] == "Failed:"
    assert doc.classed("chart") == []


def test_index_lists_runs_newest_first(tmp_path: Path, parse: Callable, sample: SimpleNamespace) -> None:
    from audits.findings import CheckRun

    latest = sample.build_result()
    older = sample.build_result(
        run=sample.replace(latest.run, run_id="<b>run-2026-04</b>", period_start="2026-04-01", period_end="2026-04-30"),
        findings=[sample.LOW_GAP], checks=[CheckRun("price_gap", "ok", 1.0, n_tests=1, outcome="clear")],
    )
    empty = sample.build_empty_result()
    empty = sample.replace(empty, run=sample.replace(empty.run, run_id="run-2026-03", period_start="2026-03-01",
                                                     period_end="2026-03-31"))
    path = render_index([index_entry(r) for r in (older, empty, latest)], tmp_path / "index.html",
                        report_links={"run-2026-05": "run-2026-05/report.html"})
    doc = parse(path.read_text(encoding="utf-8"))
    table = doc.by_id("runs-table")
    rows = [[" ".join(td.text.split()) for td in tr.iter("td")] for tr in table.iter("tr")][1:]
    assert [r[0] for r in rows] == ["run-2026-05", "<b>run-2026-04</b>", "run-2026-03"]
    assert [r[3:7] for r in rows] == [["Flagged", "4", "1", "3"], ["Clear", "0", "0", "0"],
                                      ["Not assessed", "0", "0", "0"]]
    badges = [tr.iter("td")[3].iter("span")[0].attrs["class"] for tr in table.iter("tbody")[0].iter("tr")]
    assert badges == ["badge verdict-badge outcome-flagged", "badge verdict-badge outcome-clear",
                      "badge verdict-badge outcome-not-assessed"]
    assert [r[10] for r in rows] == ["price_arithmetic (errored), discount_policy (skipped)", "none", "all 8 (skipped)"]
    assert [a.attrs["href"] for a in doc.iter("a")] == ["run-2026-05/report.html"] * 2  # latest, and its row
    latest_verdict = doc.by_id("latest-verdict")
    assert latest_verdict.attrs["class"] == "verdict-banner verdict-flagged"
    assert doc.by_id("latest-flagged").text == "4" and doc.iter("b") == [] and doc.iter("script") == []


def test_index_shows_a_latest_run_that_could_not_look_in_amber(tmp_path: Path, parse: Callable,
                                                               sample: SimpleNamespace) -> None:
    empty = sample.build_empty_result()
    empty = sample.replace(empty, run=sample.replace(empty.run, run_id="run-2026-06", period_start="2026-06-01",
                                                     period_end="2026-06-30"))
    path = render_index([index_entry(r) for r in (sample.build_result(), empty)], tmp_path / "index.html", report_links={})
    doc = parse(path.read_text(encoding="utf-8"))
    latest = doc.by_id("latest-verdict")
    assert latest.attrs["class"] == "verdict-banner verdict-not-assessed"
    text = " ".join(latest.text.split())
    assert text.startswith("Not assessed The audit could not look: the period has no lines to audit")
    assert f"All 8 checks: {sample.NO_LINES}" in text


@pytest.mark.parametrize("link", ["https://evil.example/r.html", "//evil.example/r.html", "/abs/report.html",
                                  "javascript:alert(1)", ""])
def test_index_rejects_links_that_are_not_relative(tmp_path: Path, result: AuditResult, link: str) -> None:
    with pytest.raises(ValueError, match="run-2026-05"):
        render_index([index_entry(result)], tmp_path / "index.html", report_links={"run-2026-05": link})
