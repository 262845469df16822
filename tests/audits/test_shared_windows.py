"""Several windows audited at once (audits.runner.run_audits): windows that overlap share one build and
coding of their lines and one pass per check, and each window's findings are exactly those of an audit of
it alone."""

from __future__ import annotations

import datetime as dt
import time

import duckdb
import pytest

from audits import runner
from audits.findings import DataQuality
from tests.audits.conftest import SMALL_SPEC, assert_same_findings, market_config

SPEC = SMALL_SPEC
DAY = dt.timedelta(days=1)
# The month's last night in small: a rolling window and a month to date one day longer; a 1st's month to
# date, one day; and a window apart from them all.
WINDOWS = {"rolling": (SPEC.start + 10 * DAY, SPEC.end), "month": (SPEC.start + 9 * DAY, SPEC.end),
           "day": (SPEC.end, SPEC.end), "early": (SPEC.start, SPEC.start + 4 * DAY)}


def test_windows_that_overlap_share_a_span_and_others_get_their_own():
    day = dt.date(2026, 6, 30)
    spans = runner._shared_spans
    month_end = {"rolling": (day - 29 * DAY, day), "month": (day - 30 * DAY, day)}
    first = {"rolling": (day - 29 * DAY, day), "month": (day, day)}
    assert spans(month_end, min_share=0.0) == spans(month_end, min_share=0.5) == [["month", "rolling"]]
    assert spans(first, min_share=0.0) == [["rolling", "month"]]  # one pass per check for both
    assert spans(first, min_share=0.5) == [["rolling"], ["month"]]  # each window's own passes: apart
    # half the span is enough; less is not
    assert spans({"a": (day - 9 * DAY, day), "b": (day - 4 * DAY, day)}, min_share=0.5) == [["a", "b"]]
    assert spans({"a": (day - 9 * DAY, day), "b": (day - 3 * DAY, day)}, min_share=0.5) == [["a"], ["b"]]
    # days that touch share; a gap does not
    assert spans({"a": (day - 9 * DAY, day), "b": (day - 12 * DAY, day - 10 * DAY)}, min_share=0.0) == [["a", "b"]]
    assert spans({"a": (day - 9 * DAY, day), "b": (day - 12 * DAY, day - 11 * DAY)}, min_share=0.0) == [["a"], ["b"]]


def test_each_window_audited_with_others_finds_what_it_finds_alone(con, monkeypatch):
    """The rolling window, the month and the day share a span, one build and one pass per check (their lines
    carry their windows); the early window is audited apart, side by side with them."""
    config = market_config()
    alone = {scope: runner.run_audit(con, config, period_start=start, period_end=end,
                                     data_quality=DataQuality(passed=True), scope=scope)
             for scope, (start, end) in WINDOWS.items()}
    built: list[tuple[dt.date, dt.date]] = []
    together_passes: list[int] = []
    spans: dict[tuple[str, ...], list[float]] = {}
    build, jointly, audit_span = runner.build_audit_lines, runner.run_disparity_windows, runner._audit_span

    def counted_build(*args, **kwargs):
        built.append((kwargs["period_start"], kwargs["period_end"]))
        return build(*args, **kwargs)

    def counted_jointly(*args, **kwargs):
        together_passes.append(kwargs["windows"])
        return jointly(*args, **kwargs)

    def timed(cursor, config, windows, **kwargs):
        started = time.monotonic()
        out = audit_span(cursor, config, windows, **kwargs)
        spans[tuple(windows)] = [started, time.monotonic()]
        return out

    monkeypatch.setattr(runner, "build_audit_lines", counted_build)
    monkeypatch.setattr(runner, "run_disparity_windows", counted_jointly)
    monkeypatch.setattr(runner, "_audit_span", timed)
    together = runner.run_audits(con, config, WINDOWS, data_quality=DataQuality(passed=True))

    assert list(together) == list(WINDOWS)
    assert sorted(built) == [(SPEC.start, SPEC.start + 4 * DAY), (SPEC.start + 9 * DAY, SPEC.end)]
    # each disparity check in one pass for the three, and one for the early window alone
    assert sorted(together_passes) == [1] * len(runner.METRICS) + [3] * len(runner.METRICS)
    (a_start, a_end), (b_start, b_end) = spans[("month", "rolling", "day")], spans[("early",)]
    assert a_start < b_end and b_start < a_end  # the two spans side by side
    adjusted_in_segments = 0
    for scope in WINDOWS:
        a, b = alone[scope], together[scope]
        assert (b.run.period_start, b.run.period_end, b.run.transactions, b.run.customers, b.run.data_sha256) == \
            (a.run.period_start, a.run.period_end, a.run.transactions, a.run.customers, a.run.data_sha256)
        assert [(c.check, c.status, c.n_tests, c.reason) for c in b.checks] == \
            [(c.check, c.status, c.n_tests, c.reason) for c in a.checks]
        assert_same_findings(a.findings, b.findings)
        adjusted_in_segments += sum(bool(f.segment) and f.adjusted_estimate is not None for f in a.findings)
    assert adjusted_in_segments  # within segments too (the rolling window's span has cells it has no lines in)


def test_a_check_failing_in_a_shared_pass_errors_in_each_of_its_windows_only(con, monkeypatch):
    """A check that fails in the pass shared by two windows is errored in both, and only that check; the
    span's database is detached."""
    original = runner.run_disparity_windows

    def failing(cursor, check, *args, **kwargs):
        if check == "discount_depth":
            raise duckdb.InvalidInputException("simulated failure")
        return original(cursor, check, *args, **kwargs)

    monkeypatch.setattr(runner, "run_disparity_windows", failing)
    results = runner.run_audits(con, market_config(), {k: WINDOWS[k] for k in ("rolling", "month")},
                                data_quality=DataQuality(passed=True))
    for result in results.values():
        status = {c.check: c.status for c in result.checks}
        assert status.pop("discount_depth") == "errored"
        assert set(status.values()) == {"ok"}
    assert con.execute("select count(*) from duckdb_databases() where database_name like 'pp_span_%'").fetchone()[0] == 0


def test_a_check_failing_in_one_window_apart_leaves_the_others_as_they_were(con, monkeypatch):
    """Windows audited apart (days with a gap between them) each run their own checks: a failure in one
    stays there."""
    original = runner.run_disparity_windows
    first_day = WINDOWS["early"][0].isoformat()  # in no other window

    def failing_in_early(cursor, check, *args, **kwargs):
        # the cursor's view of the lines names its window's days
        view = cursor.execute("select sql from duckdb_views() where view_name = 'coded_lines'").fetchone()[0]
        if check == "discount_depth" and first_day in view:
            raise duckdb.InvalidInputException("simulated failure")
        return original(cursor, check, *args, **kwargs)

    monkeypatch.setattr(runner, "run_disparity_windows", failing_in_early)
    results = runner.run_audits(con, market_config(), {k: WINDOWS[k] for k in ("rolling", "early")},
                                data_quality=DataQuality(passed=True))
    status = {scope: {c.check: c.status for c in r.checks} for scope, r in results.items()}
    assert status["early"]["discount_depth"] == "errored"
    assert status["rolling"]["discount_depth"] == "ok"
