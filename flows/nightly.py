"""The nightly flow: ingest every source, validate, audit the rolling window and the month to date,
compare each with its previous run, publish, and leave a Prefect artifact with the headline counts.

A data-quality stop is not a quiet success: the flow run ends Failed with the reason as its message
(and an artifact saying so), and the CLI exits with code 3.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from audits.config import load_config
from audits.errors import DataQualityError
from audits.findings import AuditResult
from flows.dask_contrast import ScaleOut
from flows.tasks import audit_each_window, latest_day, publish, with_source_retries

ARTIFACT_KEY = "nightly-audit"
MONTH_TO_DATE = "month-to-date"


def audit_windows(end: dt.date, *, window_days: int, month_to_date: bool) -> dict[str, tuple[dt.date, dt.date]]:
    """Scope name -> (first day, last day): the rolling window ending `end`, and the month to date."""
    windows = {f"rolling-{window_days}d": (end - dt.timedelta(days=window_days - 1), end)}
    if month_to_date:
        windows[MONTH_TO_DATE] = (end.replace(day=1), end)
    return windows


def headline_markdown(results: Mapping[str, AuditResult], reports: Mapping[str, Path]) -> str:
    """The artifact's text: per scope, its period, flagged counts by severity and status, and its report."""
    lines = ["# Nightly audit", "",
             "| scope | period | lines | high | medium | low | new | persisting | resolved | quarantined rows | report |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for scope, result in results.items():
        counts = result.severity_counts()
        status = {s: sum(f.status == s for f in result.flagged) for s in ("new", "persisting")}
        resolved = sum(f.status == "resolved" for f in result.findings)
        lines.append(
            f"| {scope} | {result.run.period_start} to {result.run.period_end} | {result.run.transactions:,} "
            f"| {counts['high']} | {counts['medium']} | {counts['low']} | {status['new']} | {status['persisting']} "
            f"| {resolved} | {result.data_quality.quarantined_rows} | `{reports[scope]}` |")
    return "\n".join(lines) + "\n"


@flow(name="nightly_audit")
def nightly_audit(
    config_path: str,
    as_of: dt.date | None = None,
    window_days: int | None = None,
    month_to_date: bool = True,
    source_retries: int = 3,
    source_retry_delay_seconds: float = 10.0,
    scale_out: ScaleOut = ScaleOut(),
) -> dict[str, str]:
    """Incremental ingest, then audits of the rolling window and of the month to date, each compared with its last run.

    Args:
        config_path: The TOML config file, as seen by the process that runs the flow.
        as_of: Last day audited; empty: the day of the newest transaction.
        window_days: Length of the rolling window in days; empty: audit.window_days from the config.
        month_to_date: Also audit from the first of as_of's month to as_of.
        source_retries: Retries of the ingest when a source cannot be read (I/O only, never bad data).
        source_retry_delay_seconds: Wait before the first retry; each further retry waits twice as long.
        scale_out: Where pass 2 of the disparity checks runs (this process or a Dask cluster).
    """
    config = load_config(Path(config_path))
    try:
        quality = with_source_retries(source_retries, source_retry_delay_seconds)(config)
    except DataQualityError as err:
        create_markdown_artifact(key=ARTIFACT_KEY, description="The nightly audit stopped on data quality",
                                 markdown=f"# Nightly audit stopped: data quality\n\n{err}\n\nNothing was audited.\n")
        raise
    end = as_of or latest_day(config)
    windows = audit_windows(end, window_days=window_days or config.window_days, month_to_date=month_to_date)
    # The windows' audits in one task: their days overlap, so they share one build and coding of their lines
    # and one pass per check (audits.runner.run_audits); the month to date is at most 31 days, so the memory
    # it adds is bounded. On Dask each audit fans out to the cluster, one at a time. Reports are published
    # once both are done.
    results = audit_each_window(config, windows, data_quality=quality, scale_out=scale_out)
    reports: dict[str, Path] = {}
    for scope, result in results.items():
        reports[scope] = publish(config, result, config.output_dir / scope / result.run.run_id)
    create_markdown_artifact(key=ARTIFACT_KEY, description="Headline counts of the nightly audit",
                             markdown=headline_markdown(results, reports))
    return {scope: str(path) for scope, path in reports.items()}
