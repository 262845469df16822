"""Several windows audited at once (audits.runner.run_audits): windows that mostly overlap share one build
and coding of their lines, and each window's findings are exactly those of an audit of it alone."""

from __future__ import annotations

import datetime as dt
import threading
import time

import duckdb
import pytest

from audits import runner
from audits.findings import DataQuality
from tests.audits.conftest import SMALL_SPEC, market_config

SPEC = SMALL_SPEC
DAY = dt.timedelta(days=1)
# The month's last night in small: a rolling window and a month to date one day longer; and a 1st: one day.
WINDOWS = {"rolling": (SPEC.start + DAY, SPEC.end), "month": (SPEC.start, SPEC.end), "day": (SPEC.end, SPEC.end)}
NUMBERS = ("estimate", "ci_low", "ci_high", "p_value", "q_value")


def test_windows_that_mostly_overlap_share_a_span_and_short_ones_get_their_own():
    day = dt.date(2026, 6, 30)
    assert runner._shared_spans({"rolling": (day - 29 * DAY, day), "month": (day - 30 * DAY, day)}) == \
        [["month", "rolling"]]
    assert runner._shared_spans({"rolling": (day - 29 * DAY, day), "month": (day, day)}) == [["rolling"], ["month"]]
    # half the span is enough; less is not
    assert runner._shared_spans({"a": (day - 9 * DAY, day), "b": (day - 4 * DAY, day)}) == [["a", "b"]]
    assert runner._shared_spans({"a": (day - 9 * DAY, day), "b": (day - 3 * DAY, day)}) == [["a"], ["b"]]


def test_each_window_audited_with_others_finds_what_it_finds_alone(con, monkeypatch):
    config = market_config()
    alone = {scope: runner.run_audit(con, config, period_start=start, period_end=end,
                                     data_quality=DataQuality(passed=True), scope=scope)
             for scope, (start, end) in WINDOWS.items()}
    built: list[tuple[dt.date, dt.date]] = []
    spans: dict[str, list[float]] = {}
    build, disparity = runner.build_audit_lines, runner._WindowRun.disparity_checks

    def counted_build(*args, **kwargs):
        built.append((kwargs["period_start"], kwargs["period_end"]))
        return build(*args, **kwargs)

    def timed(run, *args):
        started = time.monotonic()
        disparity(run, *args)
        spans[run.scope] = [started, time.monotonic()]

    monkeypatch.setattr(runner, "build_audit_lines", counted_build)
    monkeypatch.setattr(runner._WindowRun, "disparity_checks", timed)
    together = runner.run_audits(con, config, WINDOWS, data_quality=DataQuality(passed=True))

    assert list(together) == list(WINDOWS)
    assert sorted(built) == [(SPEC.start, SPEC.end), (SPEC.end, SPEC.end)]  # rolling and month share one build
    # the two windows of a span are audited side by side
    (a_start, a_end), (b_start, b_end) = spans["rolling"], spans["month"]
    assert a_start < b_end and b_start < a_end
    adjusted_in_segments = 0
    for scope in WINDOWS:
        a, b = alone[scope], together[scope]
        assert (b.run.period_start, b.run.period_end, b.run.transactions, b.run.customers, b.run.data_sha256) == \
            (a.run.period_start, a.run.period_end, a.run.transactions, a.run.customers, a.run.data_sha256)
        assert [(c.check, c.status, c.n_tests, c.reason) for c in b.checks] == \
            [(c.check, c.status, c.n_tests, c.reason) for c in a.checks]
        assert [f.key for f in b.findings] == [f.key for f in a.findings]
        for x, y in zip(a.findings, b.findings, strict=True):
            # the summary states the regression-adjusted estimate, rounded, where one was fitted
            assert (y.severity, y.status, y.n_customers_group, y.n_customers_reference, y.count, y.summary) == \
                (x.severity, x.status, x.n_customers_group, x.n_customers_reference, x.count, x.summary)
            for name in NUMBERS:
                expected = getattr(x, name)
                assert getattr(y, name) == (expected if expected is None else pytest.approx(expected, rel=1e-9, abs=1e-14))
            adjusted_in_segments += bool(x.segment) and "regression" in x.summary
    assert adjusted_in_segments  # within segments too (the rolling window's span has cells it has no lines in)


def test_a_failing_check_in_one_window_leaves_the_others_and_the_span_as_they_were(con, monkeypatch):
    """A check that errors in one window is recorded as errored there only; the span's database is detached."""
    config = market_config()
    original, disparity = runner.run_disparity, runner._WindowRun.disparity_checks
    current = threading.local()

    def in_scope(run, *args):
        current.scope = run.scope
        disparity(run, *args)

    def failing_in_month(cursor, check, *args, **kwargs):
        if check == "discount_depth" and current.scope == "month":
            raise duckdb.InvalidInputException("simulated failure")
        return original(cursor, check, *args, **kwargs)

    monkeypatch.setattr(runner._WindowRun, "disparity_checks", in_scope)
    monkeypatch.setattr(runner, "run_disparity", failing_in_month)
    results = runner.run_audits(con, config, {k: WINDOWS[k] for k in ("rolling", "month")},
                                data_quality=DataQuality(passed=True))
    status = {scope: {c.check: c.status for c in r.checks} for scope, r in results.items()}
    assert status["month"]["discount_depth"] == "errored"
    assert status["rolling"]["discount_depth"] == "ok"
    assert con.execute("select count(*) from duckdb_databases() where database_name like 'pp_span_%'").fetchone()[0] == 0
