"""The report in a real browser (Debian's chromium through Playwright): offline, charts drawn, table works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def browser(chromium: Any) -> Any:
    """The session's one Chromium (tests/conftest.py): two Playwright sessions cannot share a thread."""
    return chromium


@pytest.fixture(scope="session")
def report_url(tmp_path_factory: pytest.TempPathFactory, sample: SimpleNamespace) -> str:
    from reports import render_report

    return render_report(sample.build_result(), tmp_path_factory.mktemp("browser")).as_uri()


@pytest.fixture
def opened(browser: Any, report_url: str) -> Iterator[SimpleNamespace]:
    """A fresh page on the report, recording console messages, errors, requests and dialogs."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(5_000)
    page = context.new_page()
    seen = SimpleNamespace(page=page, console=[], errors=[], requests=[], dialogs=[])
    page.on("console", lambda m: seen.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    page.on("request", lambda r: seen.requests.append(r.url))
    page.on("dialog", lambda d: (seen.dialogs.append(d.message), d.dismiss()))
    page.goto(report_url, wait_until="load")
    yield seen
    context.close()


def test_loads_offline_without_errors(opened: SimpleNamespace, report_url: str) -> None:
    page = opened.page
    assert opened.console == [] and opened.errors == []
    assert opened.requests == [report_url]  # the file itself, nothing else
    assert opened.dialogs == []
    assert page.evaluate("document.querySelectorAll('img').length") == 0


def scroll_through_charts(page: Any) -> int:
    """Charts are drawn as they come near the screen: bring each there and wait for its SVG."""
    charts = page.locator("div.chart")
    for index in range(charts.count()):
        charts.nth(index).scroll_into_view_if_needed()
        charts.nth(index).locator("svg.main-svg").first.wait_for()
    page.evaluate("window.scrollTo(0, 0)")
    return charts.count()


def test_every_chart_is_drawn(opened: SimpleNamespace) -> None:
    assert scroll_through_charts(opened.page) == 5
    counts = opened.page.eval_on_selector_all("div.chart", "els => els.map(e => e.querySelectorAll('svg').length)")
    assert all(counts)
    assert opened.console == [] and opened.errors == []


def test_printing_draws_every_chart_and_opens_sections(opened: SimpleNamespace) -> None:
    page = opened.page
    page.emulate_media(media="print")
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    assert page.evaluate("[...document.querySelectorAll('div.chart')].every(d => d.querySelector('svg'))")
    assert page.evaluate("[...document.querySelectorAll('details')].every(d => d.open)")
    assert page.is_hidden(".filters")


def test_hostile_label_is_text_in_the_chart(opened: SimpleNamespace, sample: SimpleNamespace) -> None:
    scroll_through_charts(opened.page)
    ticks = opened.page.eval_on_selector_all("div.chart .ytick text", "els => els.map(e => e.textContent)")
    assert any(t.startswith(sample.HOSTILE_GROUP) for t in ticks)


def test_clicking_a_header_sorts(opened: SimpleNamespace) -> None:
    page = opened.page
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


def test_filter_hides_rows(opened: SimpleNamespace) -> None:
    page = opened.page
    visible = "() => [...document.querySelectorAll('#findings-table tbody tr')].filter(r => !r.hidden)" \
              ".map(r => r.dataset.severity)"
    assert len(page.evaluate(visible)) == 9
    page.select_option("select[data-filter=severity]", "medium")
    assert page.evaluate(visible) == ["medium"] * 3
    page.select_option("select[data-filter=check]", "discount_incidence")
    assert page.evaluate(visible) == ["medium"] * 2
    assert page.text_content("#findings-shown") == "2 of 9 findings shown"
    page.select_option("select[data-filter=severity]", "")
    page.select_option("select[data-filter=check]", "")
    assert len(page.evaluate(visible)) == 9


def test_screenshot(opened: SimpleNamespace) -> None:
    scroll_through_charts(opened.page)
    ARTIFACTS.mkdir(exist_ok=True)
    opened.page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
