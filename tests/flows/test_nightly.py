"""The nightly flow: incremental ingest, two audit windows, comparison with the last run, artifact,
retries on source I/O only, and a Failed flow run (not a quiet success) on a data-quality stop."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import duckdb
import pytest

from audits.config import load_config
from audits.errors import ConfigError, DataQualityError, InputError
from audits.findings import AuditResult
from flows import stages
from flows.nightly import nightly_audit
from flows.pipeline import NIGHTLY_ARTIFACT as ARTIFACT_KEY, audit_windows
from flows.stages import is_source_io_error
from tests.audits.conftest import assert_same_findings
from tests.flows.conftest import SMALL_MARKET


def _artifact(flow_run_id) -> str:
    """The markdown of the flow run's nightly artifact.

    A raw filter request: prefect 3.8's client sends null limit/sort, which the server rejects or
    reads as "no rows".
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client.request("POST", "/artifacts/filter", json={"artifacts": {
            "key": {"any_": [ARTIFACT_KEY]}, "flow_run_id": {"any_": [str(flow_run_id)]}}})
    artifacts = response.json()
    assert len(artifacts) == 1
    return artifacts[0]["data"]


def _finished_task_runs(flow_run_id, name_prefix: str, count: int) -> list[dict]:
    """The flow run's task runs whose name starts with `name_prefix`, once `count` of them have ended
    (a raw filter request: see _artifact). Task runs reach the API through events, which may still be
    on their way when the flow returns: waits up to 30 s for them."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            response = client.request("POST", "/task_runs/filter", json={
                "flow_runs": {"id": {"any_": [str(flow_run_id)]}}})
        runs = [run for run in response.json() if run["name"].startswith(name_prefix)]
        if sum(run["end_time"] is not None for run in runs) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def _task_log(task_run_id: str, *, until) -> list[str]:
    """A task run's log messages, once `until(messages)` holds (logs reach the API in batches: waits up to
    30 s, then returns what there is)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            response = client.request("POST", "/logs/filter", json={
                "logs": {"task_run_id": {"any_": [task_run_id]}}, "limit": 200})
        messages = [log["message"] for log in response.json()]
        if until(messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.2)


def test_audit_windows_are_the_rolling_window_and_the_month_to_date():
    windows = audit_windows(dt.date(2026, 3, 5), window_days=30, month_to_date=True)
    # 30 days ending 5 March 2026 start on 4 February (February 2026 has 28 days: 25 + 5 = 30).
    assert windows == {"rolling-30d": (dt.date(2026, 2, 4), dt.date(2026, 3, 5)),
                       "month-to-date": (dt.date(2026, 3, 1), dt.date(2026, 3, 5))}
    assert audit_windows(dt.date(2026, 3, 5), window_days=1, month_to_date=False) == {
        "rolling-1d": (dt.date(2026, 3, 5), dt.date(2026, 3, 5))}


@pytest.mark.parametrize(("err", "transient"), [
    (InputError("source 'pg': cannot connect to PostgreSQL (timeout)"), False),  # no underlying I/O cause
    (DataQualityError("too many bad rows"), False),
    (ConfigError("bad key"), False),
    (OSError("disk"), False),  # not a source error
])
def test_only_source_io_errors_are_retried(err, transient):
    assert is_source_io_error(err) is transient


def test_a_source_error_caused_by_io_is_retried():
    for cause in (OSError("NFS stale handle"), duckdb.IOException("read failed"), TimeoutError()):
        try:
            raise InputError("source 'shop': cannot read") from cause
        except InputError as err:
            assert is_source_io_error(err)

    class OperationalError(Exception):  # what the PostgreSQL driver raises for a refused connection
        pass

    try:
        raise InputError("source 'pg': cannot connect to PostgreSQL") from OperationalError("refused")
    except InputError as err:
        assert is_source_io_error(err)


def test_nightly_twice_loads_nothing_twice_and_marks_findings_persisting(prefect_harness, workspace):
    config_path = workspace()  # no audit.window_days: the default 30-day window
    first = nightly_audit(config_path=str(config_path))
    second_state = nightly_audit(config_path=str(config_path), return_state=True)
    assert second_state.is_completed()
    second = second_state.result()
    assert list(first) == list(second) == ["rolling-30d", "month-to-date"]

    with duckdb.connect(str(config_path.parent / "warehouse.duckdb"), read_only=True) as con:
        n_transactions, n_ids = con.execute(
            "select count(*), count(distinct (source, transaction_id)) from transactions").fetchone()
        batches = con.execute(
            "select source, rows_loaded, rows_replaced from ingest_batches order by batch_id").fetchall()
    assert n_transactions == n_ids  # nothing loaded twice
    assert len(batches) == 4  # transactions and customers, twice
    assert [b[1:] for b in batches[2:]] == [(0, 0), (0, 0)]  # the second night found nothing new

    end = SMALL_MARKET.end
    for scope, start in (("rolling-30d", end - dt.timedelta(days=29)), ("month-to-date", end.replace(day=1))):
        before = AuditResult.read(Path(first[scope]).parent / "findings.json")
        after = AuditResult.read(Path(second[scope]).parent / "findings.json")
        assert (after.run.period_start, after.run.period_end) == (start.isoformat(), end.isoformat())
        assert after.flagged, f"{scope}: the sample market's planted effects should be flagged"
        assert {f.status for f in before.findings} == {"new"}
        assert {f.status for f in after.findings} == {"persisting"}
        assert [f.key for f in after.flagged] == [f.key for f in before.flagged]

    markdown = _artifact(second_state.state_details.flow_run_id)
    for scope, report in second.items():
        assert f"| {scope} |" in markdown and report in markdown
    rolling = AuditResult.read(Path(second["rolling-30d"]).parent / "findings.json")
    counts = rolling.severity_counts()
    assert f"| {counts['high']} | {counts['medium']} | {counts['low']} | 0 | {len(rolling.flagged)} |" in markdown
    index = json.dumps(sorted(p.name for p in (config_path.parent / "reports").iterdir()))
    assert index == json.dumps(["index.html", "month-to-date", "rolling-30d"])

    # the two windows were audited in one task (side by side: tests/audits/test_runner_checks.py), each
    # window's line reached the task run's log from its thread, and each found what it finds alone
    # (statuses included: a third run compares with the second, as the second did with the first),
    # numbers to their last digits
    audits = _finished_task_runs(second_state.state_details.flow_run_id, "audit_each_window-", 1)
    assert len(audits) == 1
    done = [re.compile(rf"audit {scope} \S+ to \S+: [\d,]+ lines, \d+ tests, \d+ flagged in \d+\.\d s")
            for scope in ("rolling-30d", "month-to-date")]
    logged = _task_log(audits[0]["id"], until=lambda messages: all(any(d.fullmatch(m) for m in messages)
                                                                 for d in done))
    assert all(any(d.fullmatch(m) for m in logged) for d in done), logged
    config = load_config(config_path)
    for scope, start in (("rolling-30d", end - dt.timedelta(days=29)), ("month-to-date", end.replace(day=1))):
        alone = stages.audit(config, start, end, scope=scope)
        together = AuditResult.read(Path(second[scope]).parent / "findings.json")
        assert_same_findings(alone.findings, together.findings)


def test_a_data_quality_stop_fails_the_flow_run_with_the_reason(prefect_harness, bad_market_config, monkeypatch):
    calls = []
    real = stages.ingest_all
    monkeypatch.setattr(stages, "ingest_all", lambda *a, **k: calls.append(1) or real(*a, **k))
    state = nightly_audit(config_path=str(bad_market_config), source_retry_delay_seconds=0, return_state=True)
    assert state.is_failed()
    assert "DataQualityError" in state.message and "8 of 20 rows" in state.message
    assert "max_bad_share" in state.message
    assert len(calls) == 1  # bad data is never retried
    assert "stopped: data quality" in _artifact(state.state_details.flow_run_id)
    with pytest.raises(DataQualityError):
        state.result()


def test_source_io_failures_are_retried_with_backoff(prefect_harness, workspace, monkeypatch):
    config_path = workspace()
    calls = []
    real = stages.ingest_all

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) < 3:
            raise InputError("source 'shop': cannot read") from OSError("stale file handle")
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, "ingest_all", flaky)
    state = nightly_audit(config_path=str(config_path), month_to_date=False, source_retries=2,
                          source_retry_delay_seconds=0, return_state=True)
    assert state.is_completed(), state.message
    assert len(calls) == 3
    assert stages.retry_delays(3, 2.0) == [2.0, 4.0, 8.0]
