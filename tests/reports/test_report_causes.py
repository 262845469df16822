"""The report's verdict, period, outcomes, causes, coverage, list prices, consistency details and changes since
the previous run (issues 20, 24, 26), asserted by parsing the HTML of hand-built results."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from audits.causes import RULES as GROUPING_RULES
from audits.findings import AuditResult, CheckRun
from reports import render_report


def words(node: object) -> str:
    return " ".join(node.text.split())


@pytest.fixture(scope="module")
def causes_doc(sample: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory, parse: Callable) -> tuple:
    path = render_report(sample.build_causes_result(), tmp_path_factory.mktemp("causes"))
    text = path.read_text(encoding="utf-8")
    return text, parse(text)


@pytest.fixture(scope="module")
def empty_doc(sample: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory, parse: Callable) -> object:
    return parse(render_report(sample.build_empty_result(), tmp_path_factory.mktemp("empty")).read_text("utf-8"))


def render(result: AuditResult, tmp_path: Path, parse: Callable) -> object:
    return parse(render_report(result, tmp_path).read_text(encoding="utf-8"))


def test_verdict_and_period_lead_the_summary(causes_doc: tuple) -> None:
    _, doc = causes_doc
    banner = doc.by_id("verdict")
    assert doc.by_id("summary").iter("div")[0] is banner  # the first thing under the heading
    assert banner.attrs["class"] == "verdict-banner verdict-flagged"
    assert words(banner.classed("verdict-line")[0]) == (
        "Flagged 4 causes to review, holding 6 flagged tests (4 high, 2 medium).")
    period = {words(dt): words(dd) for dt, dd in zip(doc.by_id("period").iter("dt"), doc.by_id("period").iter("dd"),
                                                     strict=True)}
    assert period == {"Period audited": "2026-05-01 to 2026-05-31 (31 days)",
                      "Why these days": "the last 31 days: audit.window_days = 31",
                      "Filters": "channel = online", "Lines audited": "48,213 lines from 6,120 customers"}
    assert [words(li) for li in doc.by_id("problem-checks").iter("li")] == [
        "Discount policy discount_policy: the data has no list price (the price customers were shown)",
        "Discount depth discount_depth: fewer than 30 customers on one side: too few to judge, so it is shown but "
        "never flagged",
        "Loyalty penalty loyalty_penalty: errored: Binder Error: column tenure not found",
    ]
    run = doc.by_id("run")
    meta = {words(dt): words(dd) for dt, dd in zip(run.iter("dt"), run.iter("dd"), strict=True)}
    assert meta["Why these days"] == "the last 31 days: audit.window_days = 31"
    assert meta["Filters"] == "channel = online" and meta["Verdict"] == "Flagged"


def test_old_results_say_the_reason_was_not_recorded(tmp_path: Path, parse: Callable, sample: SimpleNamespace) -> None:
    doc = render(sample.build_result(), tmp_path, parse)  # a run without period_reason and run.filters
    period = [words(dd) for dd in doc.by_id("period").iter("dd")]
    assert period[1:3] == ["not recorded for this run", "none: every line of the period"]


def test_a_period_without_lines_is_not_assessed_never_green(empty_doc: object, sample: SimpleNamespace) -> None:
    doc = empty_doc
    banner = doc.by_id("verdict")
    assert banner.attrs["class"] == "verdict-banner verdict-not-assessed"
    assert words(banner.classed("verdict-line")[0]) == (
        "Not assessed The audit could not look: the period has no lines to audit, so this report says nothing "
        "about how customers were treated, good or bad.")
    assert [words(li) for li in doc.by_id("problem-checks").iter("li")] == [f"All 8 checks: {sample.NO_LINES}"]
    assert [doc.by_id(f"count-{k}").text for k in ("flagged", "clear", "suppressed", "not-assessed")] == ["0"] * 4
    assert all("tile-zero" in tile.attrs["class"] for tile in doc.by_id("outcome-tiles").classed("tile"))
    assert words(doc.by_id("no-tests")) == "No test ran in this run, so every count is 0."
    summary = doc.by_id("summary")
    assert "No cause can be named: nothing was assessed, so this is not a clean result." in words(summary)
    assert doc.classed("clear") == [] and doc.classed("verdict-clear") == []  # nothing green says "all fine"
    assert words(doc.by_id("no-findings")) == "This run produced no findings: no test could run."
    assert [n for n in doc.iter() if n.attrs.get("id") == "findings-table"] == []
    assert {words(li.iter("strong")[0]): words(li.classed("badge")[0]) for li in doc.by_id("checks-run").iter("li")
            } == dict.fromkeys(["Price arithmetic", "Price dispersion", "Discount policy", "Price gap",
                                "Discount incidence", "Discount depth", "Dearer price", "Loyalty penalty"],
                               "not assessed")


def test_clear_only_when_a_check_ran_and_found_nothing(tmp_path: Path, parse: Callable,
                                                        sample: SimpleNamespace) -> None:
    clear = sample.build_result(findings=[sample.LOW_GAP], history=[],
                                checks=[CheckRun("price_gap", "ok", 1.0, n_tests=1, outcome="clear",
                                                 outcomes={"clear": 1})])
    doc = render(clear, tmp_path / "clear", parse)
    assert doc.by_id("verdict").attrs["class"] == "verdict-banner verdict-clear"
    assert words(doc.by_id("verdict").classed("verdict-line")[0]) == (
        "Clear No check found unfair treatment: 1 test ran and found nothing beyond the thresholds.")
    assert [n for n in doc.iter() if n.attrs.get("id") == "problem-checks"] == []
    # every test suppressed: there were lines, but no check could show anything, so it is not clear
    hidden = sample.build_result(findings=[sample.SUPPRESSED], history=[],
                                 checks=[CheckRun("price_gap", "ok", 1.0, n_tests=1, outcome="suppressed",
                                                  outcomes={"suppressed": 1})])
    doc = render(hidden, tmp_path / "suppressed", parse)
    assert doc.by_id("verdict").attrs["class"] == "verdict-banner verdict-not-assessed"
    assert words(doc.by_id("verdict").classed("verdict-line")[0]).startswith(
        "Not assessed The audit could not look: no check could judge these lines")
    assert [words(li) for li in doc.by_id("problem-checks").iter("li")] == [
        "Price gap price_gap: every test suppressed: too few customers to show"]
    assert doc.by_id("count-suppressed").text == "1" and doc.by_id("count-clear").text == "0"


def test_tiles_count_each_outcome_apart(causes_doc: tuple) -> None:
    _, doc = causes_doc
    # flagged: incidence 65+ (2), gap 65+, gap F, list dispersion, arithmetic; clear: gap X, discount mismatch;
    # suppressed: Sami (not counted as clear); not assessed: depth Islands, paid dispersion
    tiles = {t.iter("span")[1].text: t.iter("span")[0].text for t in doc.by_id("outcome-tiles").classed("tile")}
    assert tiles == {"Flagged": "6", "Clear": "2", "Suppressed": "1", "Not assessed": "2"}


def test_checks_list_each_outcome_with_counts_and_reason(causes_doc: tuple) -> None:
    _, doc = causes_doc
    items = [words(li) for li in doc.by_id("checks-run").iter("li")]
    assert items == [
        "flagged Price arithmetic 1 flagged, 1 clear",
        "flagged Price dispersion 1 flagged, 1 not assessed",
        "not assessed Discount policy no tests skipped the data has no list price (the price customers were shown)",
        "flagged Price gap 2 flagged, 1 clear, 1 suppressed",
        "flagged Discount incidence 2 flagged",
        "not assessed Discount depth 1 not assessed fewer than 30 customers on one side: too few to judge, so it is "
        "shown but never flagged",
        "not assessed Loyalty penalty no tests errored Binder Error: column tenure not found",
    ]


def test_summary_lists_causes_with_next_step_and_rule(causes_doc: tuple, sample: SimpleNamespace) -> None:
    _, doc = causes_doc
    causes = doc.by_id("summary").classed("cause")
    assert [c.attrs["id"] for c in causes] == ["cause-1", "cause-2", "cause-3", "cause-4"]
    first = causes[0]
    assert words(first.classed("cause-badges")[0]) == "high persisting 3 flags"
    assert words(first.classed("cause-headline")[0]) == sample.CAUSES[0].headline
    assert words(first.classed("next-step")[0]) == "Check next: " + sample.CAUSES[0].next_step
    assert words(first.classed("cause-rule")[0]) == "Grouped by R1 segments, R3 paid-price echo."
    assert words(causes[1].classed("cause-rule")[0]) == f"Not grouped: {GROUPING_RULES['alone']}."
    assert [words(c.classed("cause-badges")[0]) for c in causes[1:]] == [
        "high new 1 flag", "high new 1 flag", "medium new 1 flag"]
    assert sample.CAUSES[4].headline not in " ".join(words(c) for c in causes)  # resolved: listed apart
    resolved = [words(li) for li in doc.by_id("summary").classed("resolved-causes")[0].iter("li")]
    assert resolved == ["resolved Existing customers paid 6.2% more than new customers. (was high, 2 flags)"]
    assert words(doc.by_id("resolved")) == "Resolved since the previous run (1)"


def test_a_cause_expands_to_its_lead_then_the_related_flags(causes_doc: tuple, sample: SimpleNamespace) -> None:
    _, doc = causes_doc
    cause = doc.by_id("cause-1")
    (evidence,) = cause.iter("details")
    assert "open" not in evidence.attrs
    assert words(evidence.iter("summary")[0]) == "Evidence: the lead finding and 2 related flags"
    assert words(evidence.classed("cause-why")[0]) == (  # the rule as the cause records it
        f"Why these flags are one cause: {GROUPING_RULES['segments']}; {GROUPING_RULES['echo']}.")
    assert doc.by_id("cause-2").classed("cause-why") == []  # a flag of its own: its rule is in the card
    (lead,) = evidence.classed("drill")
    assert words(lead.iter("h4")[0]) == "Discount incidence: 65+ vs all others · all customers 0.64"
    assert [c.attrs["id"] for c in lead.classed("chart")] == ["cause-1-forest"]
    links = [a.attrs["href"] for a in evidence.classed("related")[0].iter("a")]
    assert links == [f"#f-{sample.INCIDENCE_65_GROCERY.id}", f"#f-{sample.GAP_65.id}"]
    rows = {tr.attrs["id"]: tr for tr in doc.by_id("findings-table").iter("tr") if "id" in tr.attrs}
    for link in links:  # each points at its row of the table, which links back to the cause
        assert rows[link[1:]].iter("a")[0].attrs["href"] == "#cause-1"


def test_coverage_in_the_drill_down_and_the_table(causes_doc: tuple, sample: SimpleNamespace) -> None:
    _, doc = causes_doc
    lead = doc.by_id("cause-1").classed("drill")[0]
    facts = {words(dt): words(dd) for dt, dd in zip(lead.iter("dt"), lead.iter("dd"), strict=True)}
    assert facts["Lines compared"] == "group 37.0%, reference 91.0%"
    assert facts["Customers compared"] == "group 91.4%, reference 99.7%"
    assert words(lead.classed("low-coverage-note")[0]) == (
        "Low coverage: only 37.0% of the group's lines had a comparable line of the other side in their cell. "
        "Most lines had no comparable line of the other side, so the comparison rests on a minority of them.")
    good = doc.by_id("cause-2").classed("drill")[0]
    assert good.classed("low-coverage-note") == [] and "group 77.2%, reference 75.2%" in words(good)

    def row(finding: object) -> object:
        return doc.by_id(f"f-{finding.id}")

    assert words(row(sample.GAP_65).iter("td")[8]) == "37.0% / 91.0% low coverage"
    assert words(row(sample.GAP_F).iter("td")[8]) == "77.2% / 75.2%"
    assert words(row(sample.CLEAR_X).iter("td")[8]) == "13.3% / 93.0% low coverage"
    assert words(row(sample.LIST_DISPERSION).iter("td")[8]) == ""
    coverage = {f.id: row(f).attrs["data-coverage"] for f in (sample.GAP_65, sample.GAP_F, sample.LIST_DISPERSION)}
    assert coverage == {sample.GAP_65.id: "low", sample.GAP_F.id: "half or more", sample.LIST_DISPERSION.id: ""}
    lede = words(doc.by_id("findings").classed("lede")[0])
    # low: incidence 65+ and gap 65+ (group 37%), gap X (group 13.3%); grocery's 62% (reference, against all
    # others) is not
    assert ("low coverage marks under half of the group's lines (against a fixed reference group, of either "
            "side's): most lines had no comparable line of the other side (3 findings)") in lede


def test_price_gaps_grouped_by_the_echo_rule_show_list_prices(causes_doc: tuple, sample: SimpleNamespace) -> None:
    _, doc = causes_doc
    related = doc.by_id("cause-1").classed("related")[0].iter("li")
    gap = [li for li in related if li.iter("a")[0].attrs["href"] == f"#f-{sample.GAP_65.id}"][0]
    assert words(gap.classed("list-prices")[0]) == (
        "List prices: +0.1% (95% CI -0.2% to +0.4%): the group was shown the same prices: it pays more because it "
        "gets fewer or shallower discounts (rule R3).")
    assert words(gap).startswith("Price gap medium 65+ vs all others (age_band) · all customers · +1.4% low coverage")


def test_list_prices_of_a_gap_the_echo_rule_did_not_group(tmp_path: Path, parse: Callable,
                                                            sample: SimpleNamespace) -> None:
    gap = sample.replace(sample.GAP_F, list_estimate=1.03, list_ci_low=1.02, list_ci_high=1.04)
    doc = render(sample.build_causes_result(findings=[gap]), tmp_path, parse)
    assert words(doc.by_id("cause-2").classed("list-prices")[0]) == (
        "List prices: +3.0% (95% CI +2.0% to +4.0%): the group's list prices differ as well, so the gap is not "
        "only in its discounts.")


def test_a_consistency_rule_says_where_to_look(causes_doc: tuple, sample: SimpleNamespace) -> None:
    text, doc = causes_doc
    drill = doc.by_id("cause-3").classed("drill")[0]
    assert words(drill.iter("h4")[0]) == "Price dispersion 2.7% of lines checked"
    facts = {words(dt): words(dd) for dt, dd in zip(drill.iter("dt"), drill.iter("dd"), strict=True)}
    assert facts == {"Lines breaking the rule": "27", "Share of the lines checked": "2.7%", "Lines checked": "1,000",
                     "Amount at stake": "34,438.15", "Revenue of the breaching lines": "886,773.33 (9.4% of revenue)",
                     "Status": "new"}
    link = drill.classed("breaches-link")[0]
    assert words(link) == "Review all 27 breaching lines: breaches.csv (next to this report)"
    assert [a.attrs["href"] for a in link.iter("a")] == ["breaches.csv"]
    tops = {words(t.iter("caption")[0]): [[words(td) for td in tr.iter("td")] for tr in t.iter("tbody")[0].iter("tr")]
            for t in drill.classed("top-values")}
    assert tops == {"Products": [["SB-0004", "20", "311.10"], [sample.HOSTILE_PRODUCT, "7", "41.50"]],
                    "Channels": [["app", "27", "352.60"]],
                    "Days": [["2026-05-19", "15", "200.00"], ["2026-05-20", "12", "152.60"]]}  # no codes: no table
    cells = doc.by_id("cause-3-cells")
    assert [words(th) for th in cells.iter("th")] == ["Cell", "List price, lowest to highest", "Spread", "Lines"]
    assert [[words(td) for td in tr.iter("td")] for tr in cells.iter("tbody")[0].iter("tr")] == [
        ["SB-0004 · 2026-05-19 · channel = app · EUR", "7.21 to 7.65 2 prices", "+6.1%", "8"],
        [f"{sample.HOSTILE_PRODUCT} · 2026-05-20 · channel = app · EUR", "10.00 to 10.50 3 prices", "+5.0%", "7"],
    ]
    assert "<script>alert(4)" not in text and "&lt;script&gt;alert(4)&lt;/script&gt;" in text
    assert words(doc.by_id("cause-4").classed("breaches-link")[0]) == (
        "Review the 20 breaching lines with the largest amounts (of 36): breaches.csv (next to this report)")


def test_a_rule_reported_not_judged_shows_why_and_where(causes_doc: tuple) -> None:
    _, doc = causes_doc
    noted = doc.by_id("noted-1")
    assert words(noted.iter("summary")[0]) == (
        "Price dispersion: One price paid by everyone for the same product on the same day and channel 660 lines, "
        "66.0% not assessed")
    assert words(noted.classed("not-assessed-text")[0]) == (
        "Not assessed: reported, not judged: with list prices, paid prices differ by design where discounts apply; "
        "list_price_dispersion judges whether one price was charged.")
    assert noted.classed("breaches-link") == []  # its lines are not in breaches.csv
    assert [[words(td) for td in tr.iter("td")] for tr in doc.by_id("noted-1-cells").iter("tbody")[0].iter("tr")] == [
        ["SB-0007 · 2026-05-16 · channel = online · EUR", "3.10 to 6.57 3 prices", "+111.9%", "3"]]
    row = doc.by_id("findings-table").iter("tbody")[0]
    paid = [tr for tr in row.iter("tr") if "One price paid" in words(tr)][0]
    assert paid.iter("a")[0].attrs["href"] == "#noted-1" and words(paid.iter("td")[10]) == "not assessed"
    assert "not assessed: reported, not judged" in words(paid.iter("td")[0])


def test_a_test_not_assessed_shows_its_reason_in_the_table(causes_doc: tuple, sample: SimpleNamespace) -> None:
    _, doc = causes_doc
    cells = [words(td) for td in doc.by_id(f"f-{sample.TOO_FEW.id}").iter("td")]
    assert cells[0] == f"Discount depth not assessed: {sample.TOO_FEW.reason}"
    assert cells[10] == "not assessed"
    options = {s.attrs["data-filter"]: [o.attrs["value"] for o in s.iter("option")] for s in doc.iter("select")}
    assert options["outcome"] == ["", "high", "medium", "not assessed", "suppressed", "clear"]
    assert options["coverage"] == ["", "half or more", "low"]


def test_since_the_previous_run_counts_causes_and_says_what_changed(causes_doc: tuple) -> None:
    _, doc = causes_doc
    since = doc.by_id("since-previous")
    assert "since-changed" in since.attrs["class"]
    assert words(since.iter("p")[0]) == (
        "Since the previous run (period end 2026-04-30): 3 new, 1 persisting, 1 resolved causes.")
    assert [words(li) for li in since.iter("li")] == [
        "The configuration changed since then: figures may differ for that reason, not only because customers were "
        "treated differently.",
        "Thresholds changed: min_price_gap 0.02 → 0.01; max_dearer_ratio unset → 1.25.",
        "Scope changed: attributes: gender → gender, age_band.",
    ]


@pytest.mark.parametrize(("since", "expected"), [
    ({}, ["First run of scope nightly: there is no previous run to compare with."]),
    ({"run_id": "r", "period_end": "2026-04-30", "causes": {"new": 0, "persisting": 2, "resolved": 0},
      "config_changed": False, "thresholds_changed": {}, "scope_changed": {}},
     ["Since the previous run (period end 2026-04-30): 0 new, 2 persisting, 0 resolved causes. Same configuration "
      "as then."]),
    ({"run_id": "r", "period_end": "2026-04-30", "causes": {"new": 1, "persisting": 0, "resolved": 2},
      "config_changed": True, "thresholds_changed": {}, "scope_changed": {}},
     ["Since the previous run (period end 2026-04-30): 1 new, 0 persisting, 2 resolved causes.",
      "The configuration changed since then (no threshold or scope setting: another setting)."]),
])
def test_since_the_previous_run_variants(tmp_path: Path, parse: Callable, sample: SimpleNamespace, since: dict,
                                         expected: list[str]) -> None:
    doc = render(sample.build_causes_result(since_previous=since), tmp_path, parse)
    node = doc.by_id("since-previous")
    assert [words(p) for p in node.iter("p")] + [words(li) for li in node.iter("li")] == expected
    assert ("since-changed" in node.attrs["class"]) is (len(expected) > 1)


def test_methodology_states_the_grouping_rules(causes_doc: tuple) -> None:
    _, doc = causes_doc
    rules = doc.by_id("grouping-rules-list")
    assert [words(dt) for dt in rules.iter("dt")] == [
        "R1 segments", "R2 intersection", "R3 paid-price echo", "R4 dispersion side", "R5 ordered bands", "No rule"]
    text = words(rules)
    for short in GROUPING_RULES.values():
        assert short in text
    assert "the group was shown the same prices and pays more because it gets fewer or shallower discounts" in text
    assert "`" not in words(doc.by_id("grouping-rules"))
    assert "Two flags share a cause only by one of the rules below" in words(doc.by_id("grouping-rules"))


def test_intervals_are_labelled_with_the_runs_confidence(tmp_path: Path, parse: Callable,
                                                         sample: SimpleNamespace) -> None:
    result = sample.build_causes_result()
    result = sample.replace(result, method={**result.method, "confidence": 0.9})
    doc = render(result, tmp_path, parse)
    lead = doc.by_id("cause-1").classed("drill")[0]
    assert "90% confidence interval" in [words(dt) for dt in lead.iter("dt")]
    assert doc.by_id("findings-table").iter("th")[4].classed("sub")[0].text == "90% CI"
    assert "Every estimate comes with a 90% confidence interval" in words(doc.by_id("methodology"))
    gap = [li for li in doc.by_id("cause-1").classed("related")[0].iter("li") if "List prices" in words(li)][0]
    assert "List prices: +0.1% (90% CI -0.2% to +0.4%)" in words(gap)
