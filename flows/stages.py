"""The pipeline's stages as plain functions: the one place in flows/ that calls audits/ and reports/.

Each stage opens the warehouse for itself (waiting for another run's writer lock up to
`warehouse.lock_timeout_seconds`, saying so when it has to wait), so a stage is atomic and a run holds
no connection between stages. The same functions run as Prefect tasks (flows/tasks.py) or directly
(flows/pipeline.py's DIRECT runner); nothing here imports Prefect.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import glob
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NamedTuple

import duckdb

from audits.config import Config
from audits.errors import ConfigError, InputError, ResourceError, WarehouseBusyError
from audits.findings import AuditResult, DataQuality
from audits.history import compare_with_previous, record_run, run_index
from audits.ingest import data_quality_summary, ingest_all
from audits.columns import COMPUTED_COLUMNS
from audits.lines import BOOKKEEPING, IDENTIFYING
from audits.lines import UNKNOWN_COLUMN as RUNNER_UNKNOWN_COLUMN
from audits.runner import run_audits
from audits.sources import NO_FILES
from audits.warehouse import is_disk_full, open_warehouse, table_columns
from flows.dask_contrast import ScaleOut, contrast_executor
from flows.progress import say
from flows.publication import publish_folder

NO_TRANSACTIONS = "{path}: the warehouse has no transactions; run `priceparity ingest` first"
UNWRITABLE_OUTPUT = "{path}: cannot write the report there ({reason}); choose another --out folder or output.dir"
OUTPUT_DISK_FULL = ("{path}: no space left on the device for the report; nothing was published and no partial "
                    "folder is left: free space there or choose another --out folder or output.dir")
UNKNOWN_COLUMN = "{asker}: no column {column!r} in the warehouse; known: {known}"
IDENTIFIER_COLUMN = ("{asker}: column {column!r} identifies {what}; a report must never list them: audit an "
                     "attribute that groups customers instead")
CONFIG_UNKNOWN_COLUMN = "{file}: " + RUNNER_UNKNOWN_COLUMN  # what the audit itself would say, sooner
WAITING = "{path}: in use by another PriceParity run; waiting up to {seconds:.0f} s ..."
HEARTBEAT_SECONDS = 10.0
KNOWN_SHOWN = 40  # columns listed in an unknown-column error


def is_source_io_error(err: BaseException) -> bool:
    """Whether a failure is transient source I/O (unreachable database, failed read), never bad data or config."""
    if not isinstance(err, InputError):
        return False
    cause = err.__cause__
    if isinstance(cause, OSError | duckdb.IOException):  # OSError covers timeouts and refused connections
        return True
    # The PostgreSQL driver is imported lazily and raises its own DB-API hierarchy.
    return type(cause).__name__ in ("OperationalError", "InterfaceError")


def retry_delays(retries: int, delay_seconds: float) -> list[float]:
    """Waits before each retry: delay, 2 x delay, 4 x delay, ..."""
    return [delay_seconds * 2 ** i for i in range(retries)]


@contextmanager
def _open(config: Config, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse; when another run holds it, say so before waiting for it."""
    def warehouse(timeout: float):
        return open_warehouse(config.warehouse_path, read_only=read_only, memory_limit=config.memory_limit,
                              threads=config.threads, lock_timeout_seconds=timeout)

    with ExitStack() as stack:
        try:
            con = stack.enter_context(warehouse(0))
        except WarehouseBusyError:
            say(WAITING.format(path=config.warehouse_path, seconds=config.lock_timeout_seconds))
            con = stack.enter_context(warehouse(config.lock_timeout_seconds))
        yield con


@contextmanager
def _heartbeat(label: str, *, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Say `label: still running (N s)` every `every` seconds until the block ends: a long step is never silent."""
    done = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not done.wait(every):
            say(f"{label}: still running ({time.monotonic() - started:.0f} s)")

    # in a copy of this context: inside a Prefect run, the beats reach the run's log (say)
    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def check_source_files(config: Config) -> None:
    """Fail at once, naming the file and the source, when a file source's path matches no file (what the
    ingest would find only after opening the warehouse)."""
    for source in (*config.sources, *([config.customers] if config.customers else [])):
        if source.kind in ("parquet", "csv") and source.path is not None:
            path = os.path.abspath(source.path)
            if not os.path.exists(path) and not glob.glob(path, recursive=True):
                raise InputError(NO_FILES.format(path=source.path, source=source.name))


class Asked(NamedTuple):
    """A column a run will read, and who asked for it: a flag or flow parameter (`by`), or a config key (`key`)."""

    column: str
    by: str | None = None
    key: str | None = None
    groups: bool = True  # the audit groups customers by it (an attribute, intersection part, segment, control)


def unknown_column(config: Config, asked: Sequence[Asked]) -> ConfigError | None:
    """The error for the first column the audit cannot group by (one that identifies customers or lines, as
    audits.lines refuses) or the warehouse lacks, naming who asked for it (a flag, a flow parameter or a config
    key); None when all are there, or when there is no warehouse (or no table) yet to look at. A read-only
    look at the warehouse's columns."""
    for column, by, key, groups in asked:
        if groups and column in IDENTIFYING:
            return ConfigError(IDENTIFIER_COLUMN.format(asker=by or f"config key '{key}'", column=column,
                                                        what=IDENTIFYING[column]))
    if not asked or not config.warehouse_path.exists():
        return None
    with _open(config, read_only=True) as con:
        columns = set(table_columns(con, "transactions")) | set(table_columns(con, "customers"))
    if not columns:
        return None
    known = sorted((columns | set(COMPUTED_COLUMNS)) - set(BOOKKEEPING))
    shown = ", ".join(known[:KNOWN_SHOWN]) + (", ..." if len(known) > KNOWN_SHOWN else "")
    for column, by, key, _ in asked:
        if column in known:
            continue
        if key is not None:
            return ConfigError(CONFIG_UNKNOWN_COLUMN.format(file=config.path, key=key, column=column, known=shown))
        return ConfigError(UNKNOWN_COLUMN.format(asker=by, column=column, known=shown))
    return None


def ingest(config: Config) -> DataQuality:
    """Load every source's new rows into the warehouse; returns the data-quality summary of these batches."""
    with _open(config) as con:
        batches = ingest_all(con, config, progress=say)
        return data_quality_summary(con, batch_ids=[b.batch_id for b in batches])


def data_days(config: Config) -> tuple[dt.date | None, dt.date | None]:
    """The days of the oldest and the newest transaction: what an on-demand audit covers by default, and where
    the nightly's window ends; None and None when every row is of a snapshot without dates (in every period)."""
    with _open(config) as con:
        first, last, lines = con.execute(
            "select min(timestamp)::date, max(timestamp)::date, count(*) from transactions").fetchone()
    if not lines:
        raise InputError(NO_TRANSACTIONS.format(path=config.warehouse_path))
    return first, last


def audit(
    config: Config,
    period_start: dt.date,
    period_end: dt.date,
    *,
    scope: str,
    data_quality: DataQuality | None = None,
    filters: Mapping[str, str] | None = None,
    scale_out: ScaleOut | None = None,
    period_reason: str = "",
) -> AuditResult:
    """Run every configured check on the period and compare with the previous run of the scope."""
    return audit_each_window(config, {scope: (period_start, period_end)}, data_quality=data_quality,
                             filters=filters, scale_out=scale_out, period_reasons={scope: period_reason})[scope]


def audit_each_window(
    config: Config,
    windows: Mapping[str, tuple[dt.date, dt.date]],
    *,
    data_quality: DataQuality | None = None,
    filters: Mapping[str, str] | None = None,
    scale_out: ScaleOut | None = None,
    period_reasons: Mapping[str, str] | None = None,
) -> dict[str, AuditResult]:
    """Run every configured check on each window (scope -> first and last day), side by side
    (audits.runner.run_audits), and compare each with its scope's previous run; `period_reasons` says why
    each window's days."""
    scale_out = scale_out or ScaleOut()

    def finish(con: duckdb.DuckDBPyConnection, result: AuditResult) -> AuditResult:
        result = compare_with_previous(con, result)
        run = result.run
        say(f"audit {run.scope} {run.period_start} to {run.period_end}: {run.transactions:,} lines, "
            f"{len(result.findings)} tests, {len(result.flagged)} flagged in {time.monotonic() - started:.1f} s")
        return result

    with contrast_executor(scale_out, config, run_label="-".join(windows)) as contrast, _open(config) as con:
        quality = data_quality if data_quality is not None else data_quality_summary(con)
        for scope, (start, end) in windows.items():
            why = (period_reasons or {}).get(scope)
            say(f"audit {scope} {start} to {end}{f' ({why})' if why else ''} ...")
        started = time.monotonic()
        with _heartbeat(f"audit {', '.join(windows)}"):
            return run_audits(con, config, windows, data_quality=quality, filters=filters, contrast=contrast,
                              period_reasons=period_reasons, then=finish)


def publish(config: Config, result: AuditResult, out_dir: Path) -> Path:
    """Publish findings.json, report.html and breaches.csv (when a consistency rule is breached) into `out_dir`,
    all or nothing (flows/publication.py); remember the run; refresh the index of all runs."""
    from reports.breaches import write_breaches
    from reports.render import index_entry, render_index, render_report

    out_dir = Path(out_dir)

    def write(folder: Path) -> None:
        result.write(folder / "findings.json")
        render_report(result, folder)
        write_breaches(result, folder)  # the consistency rules' breaching lines the findings point to

    try:
        publish_folder(out_dir, write)
    except OSError as err:
        if is_disk_full(err):
            raise ResourceError(OUTPUT_DISK_FULL.format(path=out_dir)) from err
        raise InputError(UNWRITABLE_OUTPUT.format(path=out_dir, reason=err.strerror or err)) from err
    report = out_dir / "report.html"
    with _open(config) as con:
        record_run(con, result, index=index_entry(result))
        runs = run_index(con, entry_of=index_entry)
    index_root = config.output_dir
    links = {}
    for run in runs:
        run_id = run["run"]["run_id"]
        candidate = index_root / run["run"]["scope"] / run_id / "report.html"
        if candidate.exists():
            links[run_id] = str(candidate.relative_to(index_root))
    render_index(runs, index_root / "index.html", report_links=links)
    say(f"report written to {report}")
    return report
