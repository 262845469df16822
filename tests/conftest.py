"""Shared fixtures: an in-memory warehouse built from the real sql/schema, and one Prefect harness."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from audits.warehouse import apply_schema


@pytest.fixture
def warehouse() -> Iterator[duckdb.DuckDBPyConnection]:
    """An empty in-memory warehouse with the real schema."""
    con = duckdb.connect(":memory:")
    apply_schema(con)
    yield con
    con.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the Prefect server is slow: starting it alone takes 10-30 s (`make test-fast` skips it)."""
    for item in items:
        if "prefect_harness" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (it takes 10-30 s to start): every test that
    asks for it is marked slow (`pytest_collection_modifyitems`)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium driven by Playwright, one for the session (Playwright cannot download its own)."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    # No skip: `make test` installs chromium, so its absence is a broken set-up, not an optional test.
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium):
    """A fresh page that records console errors in `page.console_errors`."""
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
