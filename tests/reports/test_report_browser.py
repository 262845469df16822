"""The report in a real browser (Debian's chromium through Playwright), on a phone (390 px) and a laptop
(1366 px): offline under its CSP, no console message, charts drawn inside their boxes, details closed
until opened, the findings table sorted, filtered and paged. Full-page screenshots of each viewport go
to test-artifacts/ (git-ignored)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
VIEWPORTS = {390: 844, 1366: 900}  # width: height (an iPhone 14's CSS pixels, a common laptop)
PAGE_SIZE = 25


@pytest.fixture(scope="session")
def browser(chromium: Any) -> Any:
    """The session's one Chromium (tests/conftest.py): two Playwright sessions cannot share a thread."""
    return chromium


@pytest.fixture(scope="session")
def report_url(tmp_path_factory: pytest.TempPathFactory, sample: SimpleNamespace) -> str:
    from reports import render_report

    return render_report(sample.build_result(), tmp_path_factory.mktemp("browser")).as_uri()


@pytest.fixture(scope="session")
def demo_url(demo_report: Path) -> str:
    return demo_report.as_uri()


@pytest.fixture(scope="session")
def causes_url(tmp_path_factory: pytest.TempPathFactory, sample: SimpleNamespace) -> str:
    from reports import render_report

    return render_report(sample.build_causes_result(), tmp_path_factory.mktemp("browser-causes")).as_uri()


@pytest.fixture(scope="session")
def index_url(tmp_path_factory: pytest.TempPathFactory, sample: SimpleNamespace) -> str:
    """An index of three runs: one that could not look (the latest), one clear, one flagged."""
    from audits.findings import CheckRun
    from reports import index_entry, render_index

    flagged = sample.build_causes_result()
    clear = sample.build_result(run=sample.replace(flagged.run, run_id="run-2026-06", period_start="2026-06-01",
                                                   period_end="2026-06-30"),
                                findings=[sample.LOW_GAP], checks=[CheckRun("price_gap", "ok", 1.0, outcome="clear")])
    empty = sample.build_empty_result()
    empty = sample.replace(empty, run=sample.replace(empty.run, run_id="run-2026-07", period_start="2026-07-01",
                                                     period_end="2026-07-31"))
    path = tmp_path_factory.mktemp("browser-index") / "index.html"
    return render_index([index_entry(r) for r in (flagged, clear, empty)], path, report_links={}).as_uri()


@pytest.fixture(scope="session")
def empty_url(tmp_path_factory: pytest.TempPathFactory, sample: SimpleNamespace) -> str:
    from reports import render_report

    return render_report(sample.build_empty_result(), tmp_path_factory.mktemp("browser-empty")).as_uri()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., SimpleNamespace]]:
    """Opens a report in a fresh page of the given width, recording console messages, page errors,
    requests and dialogs; `seen.noise()` lists all but the requests."""
    contexts = []

    def open_(url: str, *, width: int = 1366, javascript: bool = True) -> SimpleNamespace:
        context = browser.new_context(viewport={"width": width, "height": VIEWPORTS[width]},
                                      java_script_enabled=javascript)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        seen = SimpleNamespace(page=page, console=[], errors=[], requests=[], dialogs=[])
        seen.noise = lambda: seen.console + seen.errors + seen.dialogs
        page.on("console", lambda m: seen.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: seen.errors.append(str(e)))
        page.on("request", lambda r: seen.requests.append(r.url))
        page.on("dialog", lambda d: (seen.dialogs.append(d.message), d.dismiss()))
        page.goto(url, wait_until="load")
        return seen

    yield open_
    for context in contexts:
        context.close()


def open_every_details(page: Any) -> int:
    """Open every collapsible section as a reader would (the script draws charts on opening); wait for
    every chart's SVG. Returns the number of charts."""
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.wait_for_function("() => [...document.querySelectorAll('div.chart')].every(d => d.querySelector('svg.main-svg'))")
    return page.locator("div.chart").count()


# Every text of every chart in view (tick labels, axis titles, annotations such as the forest's row labels on
# a phone) must lie inside the chart's box, which must lie inside the window; and each chart shows
# its x axis (ticks and title) and a label per row (y ticks or, narrow, annotations).
CHART_PROBLEMS = """() => {
  const problems = [];
  for (const div of document.querySelectorAll('div.chart')) {
    const box = div.getBoundingClientRect();
    if (!div.checkVisibility()) { continue; }  // in a closed section
    const name = div.id + ' (' + (div.dataset.layout || '?') + ', ' + Math.round(box.width) + ' px)';
    if (box.left < -0.5 || box.right > window.innerWidth + 0.5) { problems.push(name + ': outside the window'); }
    const texts = [...div.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text, .annotation-text')]
      .filter(t => t.textContent.trim() && getComputedStyle(t).display !== 'none');
    for (const t of texts) {
      const r = t.getBoundingClientRect();
      if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1) {
        problems.push(name + ': "' + t.textContent + '" at ' + [r.left, r.right, r.top, r.bottom].map(Math.round)
                      + ' outside ' + [box.left, box.right, box.top, box.bottom].map(Math.round));
      }
    }
    const count = selector => texts.filter(t => t.matches(selector)).length;
    if (count('.xtick text') < 2 || count('.g-xtitle text') !== 1) { problems.push(name + ': no x axis'); }
    if (div.id.endsWith('-forest')) {
      const rows = JSON.parse(document.getElementById(div.dataset.figure).textContent).data[0].y.length;
      const labels = div.dataset.layout === 'narrow' ? count('.annotation-text') - count('.annotation-text[data-unformatted^="four-fifths"]')
                                                     : count('.ytick text');
      if (labels !== rows) { problems.push(name + ': ' + labels + ' row labels for ' + rows + ' rows'); }
    }
  }
  return problems;
}"""


def chart_problems(page: Any) -> list[str]:
    # Plotly may move labels once more after the first draw (automargin): give it a moment. Functions
    # only: the report's CSP forbids eval, which Playwright uses for a bare expression.
    try:
        page.wait_for_function(f"() => ({CHART_PROBLEMS})().length === 0", timeout=3_000)
    except PlaywrightTimeout:
        pass  # the caller's assertion names what is wrong
    return page.evaluate(CHART_PROBLEMS)


def horizontal_overflow(page: Any) -> int:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


@pytest.mark.parametrize("width", VIEWPORTS)
def test_loads_offline_without_errors(open_page: Callable, report_url: str, width: int) -> None:
    seen = open_page(report_url, width=width)
    page = seen.page
    assert seen.noise() == []
    assert seen.requests == [report_url]  # the file itself, nothing else
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    csp = page.get_attribute("meta[http-equiv=Content-Security-Policy]", "content")
    scripts = page.eval_on_selector_all("script:not([type])", "els => els.map(s => s.textContent)")
    hashes = [base64.b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode("ascii") for s in scripts]
    assert len(scripts) == 2 and csp == (
        f"default-src 'none'; script-src 'sha256-{hashes[0]}' 'sha256-{hashes[1]}'; style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'none'")
    assert page.evaluate("typeof Plotly") == "object"  # both scripts ran: their hashes are the CSP's


def test_csp_blocks_a_script_it_does_not_list(open_page: Callable, report_url: str) -> None:
    seen = open_page(report_url)
    seen.page.evaluate("""() => { const s = document.createElement('script');
                                  s.textContent = 'window.injected = 1'; document.body.appendChild(s); }""")
    assert seen.page.evaluate("window.injected") is None
    assert len(seen.console) == 1 and "Content Security Policy" in seen.console[0]


@pytest.mark.parametrize("width", VIEWPORTS)
def test_demo_report_fits_the_width_with_every_section_open(open_page: Callable, demo_url: str, width: int) -> None:
    seen = open_page(demo_url, width=width)
    page = seen.page
    assert horizontal_overflow(page) == 0
    assert open_every_details(page) == 5  # a forest per cause led by a disparity finding; first run, no trends
    page.click("#findings-pager [data-page=all]")
    assert horizontal_overflow(page) == 0
    assert chart_problems(page) == []
    layouts = set(page.eval_on_selector_all("div.chart", "els => els.map(e => e.dataset.layout)"))
    assert layouts == ({"narrow"} if width == 390 else {"wide"})
    assert seen.noise() == []


@pytest.mark.parametrize("width", VIEWPORTS)
def test_fixture_charts_fit_with_trends_and_hostile_labels(
    open_page: Callable, report_url: str, sample: SimpleNamespace, width: int
) -> None:
    seen = open_page(report_url, width=width)
    page = seen.page
    kinds = page.eval_on_selector_all("div.chart", "els => els.map(e => e.id.split('-').pop())")
    assert open_every_details(page) == 5 and kinds == ["forest", "trend", "forest", "forest", "trend"]
    assert chart_problems(page) == []
    assert horizontal_overflow(page) == 0
    labels = page.eval_on_selector_all("div.chart .ytick text, div.chart .annotation-text", "els => els.map(e => e.textContent)")
    assert any(t.startswith(sample.HOSTILE_GROUP) for t in labels)  # shown as text, not markup
    assert seen.noise() == []


def test_charts_switch_layout_when_the_window_narrows(open_page: Callable, demo_url: str) -> None:
    seen = open_page(demo_url, width=1366)
    page = seen.page
    page.click("#cause-1 summary")
    chart = page.locator("#cause-1 div.chart").first
    chart.locator("svg.main-svg").first.wait_for()
    assert chart.get_attribute("data-layout") == "wide"
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function("() => document.querySelector('#cause-1 div.chart').dataset.layout === 'narrow'")
    assert chart_problems(page) == []
    assert seen.noise() == []


@pytest.mark.parametrize("width", VIEWPORTS)
def test_details_closed_by_default_and_open_on_click(open_page: Callable, report_url: str, width: int) -> None:
    seen = open_page(report_url, width=width)
    page = seen.page
    state = "() => [...document.querySelectorAll('details')].map(d => [d.className, d.open])"
    # the fixture has a failed expectation, so its list starts open; everything else starts closed
    assert page.evaluate(state) == [["evidence", False]] * 4 + [["expand", True]] + [["part", False]] * 3
    assert page.evaluate("document.querySelectorAll('div.chart svg').length") == 0  # nothing drawn while closed
    first = page.locator("#cause-1")
    assert not first.locator("div.chart").first.is_visible()
    first.locator("summary").click()
    assert first.locator("details").get_attribute("open") == ""
    first.locator("div.chart svg.main-svg").first.wait_for()
    first.locator("summary").click()
    assert first.locator("details").get_attribute("open") is None
    second = page.locator("#cause-2 summary")  # by keyboard: a summary is a focusable control
    second.focus()
    page.keyboard.press("Enter")
    assert page.locator("#cause-2 details").get_attribute("open") == ""
    assert seen.noise() == []


def test_links_to_a_finding_open_its_cause(open_page: Callable, report_url: str) -> None:
    seen = open_page(report_url, width=390)
    page = seen.page
    page.click("#findings-table a[href='#cause-2']")  # a flagged row links to its cause's evidence
    cause = page.locator("#cause-2")
    assert cause.locator("details").get_attribute("open") == ""
    cause.locator("div.chart svg.main-svg").first.wait_for()
    assert page.evaluate("document.getElementById('cause-2').getBoundingClientRect().top") < 844
    page.goto(report_url + "#cause-3")  # an address with the cause (the same page: 2 stays open)
    assert page.locator("#cause-3 details").get_attribute("open") == ""
    page.click("nav.toc a[href='#causes']")  # a link to the list opens none of its causes
    assert page.evaluate("[...document.querySelectorAll('details.evidence')].map(d => d.open)") == [
        False, True, True, False]
    assert seen.noise() == []


def visible_rows(page: Any) -> list[str]:
    return page.eval_on_selector_all("#findings-table tbody tr", "rows => rows.filter(r => !r.hidden)"
                                     ".map(r => r.cells[0].textContent.trim() + ' | ' + r.cells[2].textContent"
                                     " + ' | ' + r.cells[3].textContent)")


@pytest.mark.parametrize("width", VIEWPORTS)
def test_findings_table_is_paged(open_page: Callable, demo_url: str, width: int) -> None:
    seen = open_page(demo_url, width=width)
    page = seen.page
    every_row = page.eval_on_selector_all("#findings-table tbody tr", "rows => rows.map(r => r.cells[0].textContent.trim()"
                                          " + ' | ' + r.cells[2].textContent + ' | ' + r.cells[3].textContent)")
    assert len(every_row) == 641
    assert visible_rows(page) == every_row[:PAGE_SIZE]
    assert page.text_content("#findings-page") == "Page 1 of 26 (rows 1\u201325)"
    previous, following = page.locator("[data-page=previous]"), page.locator("[data-page=next]")
    assert previous.is_disabled() and following.is_enabled()
    following.click()
    assert visible_rows(page) == every_row[PAGE_SIZE:2 * PAGE_SIZE]
    following.focus()  # by keyboard
    page.keyboard.press("Enter")
    assert visible_rows(page) == every_row[2 * PAGE_SIZE:3 * PAGE_SIZE]
    assert page.text_content("#findings-page") == "Page 3 of 26 (rows 51\u201375)"
    previous.focus()
    page.keyboard.press("Space")
    assert visible_rows(page) == every_row[PAGE_SIZE:2 * PAGE_SIZE]
    while following.is_enabled():
        following.click()
    assert visible_rows(page) == every_row[625:] and page.text_content("#findings-page") == "Page 26 of 26 (rows 626–641)"
    page.click("[data-page=all]")
    assert visible_rows(page) == every_row and page.text_content("#findings-page") == "All 641 rows"
    page.click("[data-page=all]")
    assert visible_rows(page) == every_row[:PAGE_SIZE]
    assert seen.noise() == []


def test_paging_follows_filters_and_sorting(open_page: Callable, demo_url: str) -> None:
    seen = open_page(demo_url)
    page = seen.page
    page.select_option("select[data-filter=check]", "price_gap")
    gaps = page.evaluate("[...document.querySelectorAll('#findings-table tbody tr[data-check=price_gap]')].length")
    assert gaps == 210  # 33 high, 9 medium, 168 low in the demo market
    assert len(visible_rows(page)) == PAGE_SIZE and all(r.startswith("Price gap") for r in visible_rows(page))
    assert page.text_content("#findings-page") == "Page 1 of 9 (rows 1\u201325)"
    assert page.text_content("#findings-shown") == "210 of 641 findings shown"
    page.click("[data-page=next]")
    page.click("#findings-table thead th:nth-child(7) button")  # sort by q: back to the first page
    assert page.text_content("#findings-page") == "Page 1 of 9 (rows 1\u201325)"
    q_values = page.eval_on_selector_all("#findings-table tbody tr", "rows => rows.filter(r => !r.hidden)"
                                         ".map(r => parseFloat(r.cells[6].dataset.value))")
    assert q_values == sorted(q_values) and len(q_values) == PAGE_SIZE
    page.select_option("select[data-filter=outcome]", "medium")  # 9 rows: one page, no pager
    assert len(visible_rows(page)) == 9 and page.is_hidden("#findings-pager")
    assert seen.noise() == []


def test_without_javascript_every_row_shows(open_page: Callable, demo_url: str) -> None:
    seen = open_page(demo_url, width=390, javascript=False)
    page = seen.page
    rows = page.eval_on_selector_all("#findings-table tbody tr", "rows => rows.map(r => r.hidden)")
    assert len(rows) == 641 and not any(rows)
    assert page.is_hidden("#findings-pager") and page.is_visible("noscript p")
    page.click("#cause-1 summary")  # details open without script too
    assert page.locator("#cause-1 .facts").is_visible()
    assert horizontal_overflow(page) == 0


def test_printing_draws_every_chart_and_opens_sections(open_page: Callable, report_url: str) -> None:
    page = open_page(report_url).page
    page.emulate_media(media="print")
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    assert page.evaluate("[...document.querySelectorAll('div.chart')].every(d => d.querySelector('svg'))")
    assert page.evaluate("[...document.querySelectorAll('details')].every(d => d.open)")
    assert page.is_hidden(".filters")


def test_clicking_a_header_sorts(open_page: Callable, report_url: str) -> None:
    page = open_page(report_url).page
    q_values = "() => [...document.querySelectorAll('#findings-table tbody tr')].map(r => r.cells[6].dataset.value)"
    header = page.locator("#findings-table thead th:nth-child(7) button")
    assert header.text_content() == "q"
    header.click()
    ascending = page.evaluate(q_values)
    numbers = [float(v) for v in ascending if v]
    assert numbers == sorted(numbers) and ascending[-len([v for v in ascending if not v]):] == [""] * 2
    header.click()
    descending = [float(v) for v in page.evaluate(q_values) if v]
    assert descending == sorted(numbers, reverse=True)
    assert page.get_attribute("#findings-table th:nth-child(7)", "aria-sort") == "descending"


def test_filter_hides_rows(open_page: Callable, report_url: str) -> None:
    page = open_page(report_url).page
    visible = "() => [...document.querySelectorAll('#findings-table tbody tr')].filter(r => !r.hidden)" \
              ".map(r => r.dataset.outcome)"
    assert len(page.evaluate(visible)) == 9 and page.locator("#findings-pager").count() == 0  # one page
    page.select_option("select[data-filter=outcome]", "medium")
    assert page.evaluate(visible) == ["medium"] * 3
    page.select_option("select[data-filter=check]", "discount_incidence")
    assert page.evaluate(visible) == ["medium"] * 2
    assert page.text_content("#findings-shown") == "2 of 9 findings shown"
    page.select_option("select[data-filter=outcome]", "")
    page.select_option("select[data-filter=check]", "")
    assert len(page.evaluate(visible)) == 9


# The demo report's page height with details closed and the table paged, as measured when this was
# written (390 px: 11,300; 1366 px: 6,400, with the summary listing 8 causes and what to check next; before
# the page was made short: 85,300 and 60,200), with room to grow a little.
MAX_HEIGHT = {390: 13_500, 1366: 8_000}


@pytest.mark.parametrize("width", VIEWPORTS)
def test_screenshots_and_page_height(open_page: Callable, demo_url: str, report_url: str, causes_url: str,
                                     empty_url: str, index_url: str, width: int) -> None:
    """Full-page screenshots: the demo report as it opens, the fixture reports with every section open
    (charts, trends, hostile names; causes, coverage, where to look), and a run that could not look."""
    ARTIFACTS.mkdir(exist_ok=True)
    demo = open_page(demo_url, width=width).page
    height = demo.evaluate("document.documentElement.scrollHeight")
    assert height < MAX_HEIGHT[width]
    demo.screenshot(path=str(ARTIFACTS / f"report-demo-{width}.png"), full_page=True)
    fixture = open_page(report_url, width=width).page
    open_every_details(fixture)
    fixture.screenshot(path=str(ARTIFACTS / f"report-fixture-open-{width}.png"), full_page=True)
    causes = open_page(causes_url, width=width).page
    open_every_details(causes)
    causes.screenshot(path=str(ARTIFACTS / f"report-causes-open-{width}.png"), full_page=True)
    empty = open_page(empty_url, width=width).page
    empty.screenshot(path=str(ARTIFACTS / f"report-not-assessed-{width}.png"), full_page=True)
    index = open_page(index_url, width=width).page
    assert horizontal_overflow(index) == 0
    index.screenshot(path=str(ARTIFACTS / f"index-{width}.png"), full_page=True)
    for name in (f"report-demo-{width}.png", f"report-fixture-open-{width}.png", f"report-causes-open-{width}.png",
                 f"report-not-assessed-{width}.png", f"index-{width}.png"):
        png = (ARTIFACTS / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == width
    (ARTIFACTS / f"report-demo-{width}.height").write_text(f"{height}\n")  # beside the screenshot, for the record


RED_BG, GREEN_BG, AMBER_BG = "rgb(254, 243, 242)", "rgb(236, 253, 243)", "rgb(255, 250, 235)"
GREEN = "rgb(6, 118, 71)"
COLOURS = """id => { const s = getComputedStyle(document.getElementById(id));
                     return [s.backgroundColor, getComputedStyle(document.querySelector('#' + id + ' .verdict-word')).color]; }"""


@pytest.mark.parametrize("width", VIEWPORTS)
def test_the_verdict_is_red_green_or_amber_never_green_over_nothing(
    open_page: Callable, causes_url: str, empty_url: str, tmp_path: Path, sample: SimpleNamespace, width: int
) -> None:
    from audits.findings import CheckRun
    from reports import render_report

    flagged = open_page(causes_url, width=width)
    assert flagged.page.evaluate(COLOURS, "verdict") == [RED_BG, "rgb(180, 35, 24)"]
    clear = sample.build_result(findings=[sample.LOW_GAP], history=[],
                                checks=[CheckRun("price_gap", "ok", 1.0, n_tests=1, outcome="clear")])
    green = open_page(render_report(clear, tmp_path).as_uri(), width=width)
    assert green.page.evaluate(COLOURS, "verdict") == [GREEN_BG, GREEN]
    empty = open_page(empty_url, width=width)
    page = empty.page
    assert page.evaluate(COLOURS, "verdict") == [AMBER_BG, "rgb(147, 55, 13)"]
    assert page.text_content("#verdict-word") == "Not assessed"
    assert page.locator("#verdict").bounding_box()["y"] < 844  # on the first screen, phone or laptop
    # nothing in the summary is green: no "clear", no "passed" verdict colour, tiles all grey
    greens = page.evaluate("""() => [...document.querySelectorAll('#summary *:not(#dq-verdict):not(#dq-verdict *)')]
        .filter(e => e.checkVisibility() && e.textContent.trim()
                && [getComputedStyle(e).color, getComputedStyle(e).backgroundColor].some(c => c === '%s' || c === '%s'))
        .map(e => e.className || e.tagName)""" % (GREEN, GREEN_BG))
    assert greens == []
    assert horizontal_overflow(page) == 0
    assert flagged.noise() + green.noise() + empty.noise() == []


@pytest.mark.parametrize("width", VIEWPORTS)
def test_causes_fixture_fits_with_every_section_open(open_page: Callable, causes_url: str, width: int) -> None:
    seen = open_page(causes_url, width=width)
    page = seen.page
    assert open_every_details(page) == 2  # the forests of the two causes led by a disparity finding
    assert horizontal_overflow(page) == 0
    assert chart_problems(page) == []
    for box in ("#cause-3-cells", "#noted-1-cells"):  # the worst cells fit their box, phone or laptop
        assert page.evaluate("s => { const t = document.querySelector(s); "
                             "return t.parentElement.scrollWidth - t.parentElement.clientWidth; }", box) == 0
    assert page.is_visible("#cause-3 .breaches-link a[href='breaches.csv']")
    assert seen.noise() == []


@pytest.mark.parametrize("width", VIEWPORTS)
def test_a_related_flag_links_to_its_row_on_any_page(open_page: Callable, demo_url: str, width: int) -> None:
    seen = open_page(demo_url, width=width)
    page = seen.page
    page.click("#cause-1 summary")
    page.locator("#cause-1 div.chart svg.main-svg").first.wait_for()
    last = page.locator("#cause-1 ul.related a").last
    target = last.get_attribute("href")[1:]
    index = page.evaluate("id => [...document.querySelectorAll('#findings-table tbody tr')]"
                          ".findIndex(r => r.id === id)", target)
    assert index >= PAGE_SIZE and page.is_hidden(f"#{target}")  # on a later page of the table
    page.select_option("select[data-filter=check]", "price_arithmetic")  # and filtered out
    last.click()
    assert page.is_visible(f"#{target}")
    assert page.evaluate("() => [...document.querySelectorAll('select[data-filter]')].every(s => s.value === '')")
    assert page.text_content("#findings-page").startswith(f"Page {index // PAGE_SIZE + 1} of 26")
    top = page.evaluate("id => document.getElementById(id).getBoundingClientRect().top", target)
    nav = page.evaluate("document.querySelector('nav.toc').getBoundingClientRect().bottom")
    assert nav <= top < VIEWPORTS[width]  # in view, not under the sticky navigation
    assert page.evaluate("location.hash") == f"#{target}"
    assert seen.noise() == []


def test_an_address_naming_a_row_shows_its_page(open_page: Callable, demo_url: str) -> None:
    seen = open_page(demo_url, width=390)
    target = seen.page.evaluate("document.querySelectorAll('#findings-table tbody tr')[60].id")
    seen.page.goto(f"{demo_url}#{target}")
    seen.page.reload()  # the address is read when the page loads
    assert seen.page.is_visible(f"#{target}")
    assert seen.page.text_content("#findings-page") == "Page 3 of 26 (rows 51\u201375)"
    assert seen.noise() == []


@pytest.mark.parametrize("width", VIEWPORTS)
def test_index_shows_each_runs_verdict_in_colour(open_page: Callable, index_url: str, width: int) -> None:
    seen = open_page(index_url, width=width)
    page = seen.page
    assert page.evaluate("() => getComputedStyle(document.getElementById('latest-verdict')).backgroundColor") == AMBER_BG
    badges = page.eval_on_selector_all("#runs-table .verdict-badge", "els => els.map(e => [e.textContent, "
                                       "getComputedStyle(e).color])")
    assert badges == [["Not assessed", "rgb(147, 55, 13)"], ["Clear", GREEN], ["Flagged", "rgb(180, 35, 24)"]]
    assert horizontal_overflow(page) == 0
    assert seen.noise() == []
