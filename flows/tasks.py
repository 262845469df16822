"""The pipeline's stages as Prefect tasks, shared by the nightly and on-demand flows.

Each task opens the warehouse for itself (waiting for another run's writer lock up to the
configured timeout), so a stage is atomic and the flow holds no connection between stages.
Only ingest touches sources, so only ingest retries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.exceptions import MissingContextError

from audits.config import Config
from audits.errors import InputError
from audits.findings import AuditResult, DataQuality
from audits.history import all_runs, compare_with_previous, record_run
from audits.ingest import data_quality_summary, ingest_all
from audits.runner import run_audit
from audits.warehouse import open_warehouse


def _open(config: Config, *, read_only: bool = False):
    return open_warehouse(config.warehouse_path, read_only=read_only, memory_limit=config.memory_limit,
                          threads=config.threads, lock_timeout_seconds=config.lock_timeout_seconds)


def _say(message: str) -> None:
    """Progress for the person at the terminal and for the Prefect UI's log."""
    print(message, flush=True)
    try:
        get_run_logger().info(message)
    except MissingContextError:  # called through .fn, outside a run
        pass


def _retry_on_io(task, task_run, state) -> bool:
    """Retry source I/O failures (an unreachable database), never bad data or bad config."""
    try:
        state.result()
    except InputError as err:
        return "cannot connect" in str(err)
    except Exception:
        return False
    return False


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_retry_on_io)
def ingest(config: Config) -> DataQuality:
    """Load every source into the warehouse; returns the data-quality summary of these batches."""
    with _open(config) as con:
        batches = ingest_all(con, config, progress=_say)
        return data_quality_summary(con, batch_ids=[b.batch_id for b in batches])


@task(cache_policy=NONE)
def latest_day(config: Config) -> dt.date:
    """The day of the newest transaction: the end of a rolling window over the data."""
    with _open(config) as con:
        day = con.execute("select max(timestamp)::date from transactions").fetchone()[0]
    if day is None:
        raise InputError(f"{config.warehouse_path}: the warehouse has no transactions; run `priceparity ingest` first")
    return day


@task(cache_policy=NONE)
def audit(
    config: Config,
    period_start: dt.date,
    period_end: dt.date,
    *,
    scope: str,
    data_quality: DataQuality | None = None,
    filters: Mapping[str, str] | None = None,
) -> AuditResult:
    """Run every configured check on the period and compare with the previous run of the scope."""
    with _open(config) as con:
        quality = data_quality if data_quality is not None else data_quality_summary(con)
        result = run_audit(con, config, period_start=period_start, period_end=period_end,
                           data_quality=quality, scope=scope, filters=filters)
        result = compare_with_previous(con, result)
    flagged = len(result.flagged)
    _say(f"audit {scope}: {result.run.transactions:,} lines, {len(result.findings)} tests, {flagged} flagged")
    return result


@task(cache_policy=NONE)
def publish(config: Config, result: AuditResult, out_dir: Path) -> Path:
    """Write findings.json and report.html, remember the run, refresh the index of all runs."""
    from reports.render import render_index, render_report

    out_dir = Path(out_dir)
    result.write(out_dir / "findings.json")
    report = render_report(result, out_dir)
    with _open(config) as con:
        record_run(con, result)
        runs = all_runs(con)
    index_root = config.output_dir
    links = {}
    for run in runs:
        candidate = index_root / run.run.scope / run.run.run_id / "report.html"
        if candidate.exists():
            links[run.run.run_id] = str(candidate.relative_to(index_root))
    render_index(runs, index_root / "index.html", report_links=links)
    get_run_logger().info("report written to %s", report)
    return report
