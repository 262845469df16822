"""The pipeline's stages as Prefect tasks, shared by the nightly and on-demand flows.

Each task opens the warehouse for itself (waiting for another run's writer lock up to
`warehouse.lock_timeout_seconds`), so a stage is atomic and a flow holds no connection between
stages. Only ingest touches sources, so only ingest retries, and only on source I/O: a flow sets
the number of retries and the backoff (`with_source_retries`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import duckdb
from prefect import Task, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.exceptions import MissingContextError
from prefect.tasks import exponential_backoff

from audits.config import Config
from audits.errors import InputError
from audits.findings import AuditResult, DataQuality
from audits.history import all_runs, compare_with_previous, record_run
from audits.ingest import data_quality_summary, ingest_all
from audits.runner import run_audits
from audits.warehouse import open_warehouse
from flows.dask_contrast import ScaleOut, contrast_executor

NO_TRANSACTIONS = "{path}: the warehouse has no transactions; run `priceparity ingest` first"
UNWRITABLE_OUTPUT = "{path}: cannot write the report there ({reason}); choose another --out folder or output.dir"


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


def is_source_io_error(err: BaseException) -> bool:
    """Whether a failure is transient source I/O (unreachable database, failed read), never bad data or config."""
    if not isinstance(err, InputError):
        return False
    cause = err.__cause__
    if isinstance(cause, OSError | duckdb.IOException):  # OSError covers timeouts and refused connections
        return True
    # The PostgreSQL driver is imported lazily and raises its own DB-API hierarchy.
    return type(cause).__name__ in ("OperationalError", "InterfaceError")


def _retry_on_source_io(task: Task, task_run, state) -> bool:
    try:
        state.result()
    except Exception as err:
        return is_source_io_error(err)
    return False


@task(cache_policy=NONE, retry_condition_fn=_retry_on_source_io)
def ingest(config: Config) -> DataQuality:
    """Load every source's new rows into the warehouse; returns the data-quality summary of these batches."""
    with _open(config) as con:
        batches = ingest_all(con, config, progress=_say)
        return data_quality_summary(con, batch_ids=[b.batch_id for b in batches])


def with_source_retries(retries: int, delay_seconds: float) -> Task:
    """The ingest task retrying source I/O `retries` times, waiting delay, 2 x delay, 4 x delay, ..."""
    delays = exponential_backoff(backoff_factor=delay_seconds)(retries) if retries else 0
    return ingest.with_options(retries=retries, retry_delay_seconds=delays)


@task(cache_policy=NONE)
def latest_day(config: Config) -> dt.date:
    """The day of the newest transaction: the end of a window over the data."""
    with _open(config) as con:
        day = con.execute("select max(timestamp)::date from transactions").fetchone()[0]
    if day is None:
        raise InputError(NO_TRANSACTIONS.format(path=config.warehouse_path))
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
    scale_out: ScaleOut | None = None,
) -> AuditResult:
    """Run every configured check on the period and compare with the previous run of the scope."""
    return _audits(config, {scope: (period_start, period_end)}, data_quality=data_quality, filters=filters,
                   scale_out=scale_out)[scope]


@task(cache_policy=NONE)
def audit_each_window(
    config: Config,
    windows: Mapping[str, tuple[dt.date, dt.date]],
    *,
    data_quality: DataQuality | None = None,
    scale_out: ScaleOut | None = None,
) -> dict[str, AuditResult]:
    """Run every configured check on each window (scope -> first and last day) and compare each with its
    scope's previous run: overlapping windows share their lines and one pass per check
    (audits.runner.run_audits); one after another on Dask, where each audit fans out to the cluster."""
    return _audits(config, windows, data_quality=data_quality, scale_out=scale_out)


def _audits(config: Config, windows: Mapping[str, tuple[dt.date, dt.date]], *, data_quality: DataQuality | None,
            scale_out: ScaleOut | None, filters: Mapping[str, str] | None = None) -> dict[str, AuditResult]:
    scale_out = scale_out or ScaleOut()
    with contrast_executor(scale_out, config, run_label="-".join(windows)) as contrast, _open(config) as con:
        quality = data_quality if data_quality is not None else data_quality_summary(con)
        results = run_audits(con, config, windows, data_quality=quality, filters=filters, contrast=contrast)
        results = {scope: compare_with_previous(con, result) for scope, result in results.items()}
    for scope, result in results.items():
        start, end = windows[scope]
        _say(f"audit {scope} {start} to {end}: {result.run.transactions:,} lines, "
             f"{len(result.findings)} tests, {len(result.flagged)} flagged")
    return results


@task(cache_policy=NONE)
def publish(config: Config, result: AuditResult, out_dir: Path) -> Path:
    """Write findings.json and report.html, remember the run, refresh the index of all runs."""
    from reports.render import render_index, render_report

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        result.write(out_dir / "findings.json")
        report = render_report(result, out_dir)
    except OSError as err:
        raise InputError(UNWRITABLE_OUTPUT.format(path=out_dir, reason=err.strerror or err)) from err
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
    _say(f"report written to {report}")
    return report
