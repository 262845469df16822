"""The nightly flow: ingest every source, validate, audit the rolling window and the month to date,
compare each with its previous run, publish, and leave a Prefect artifact with the headline counts.

A data-quality stop is not a quiet success: the flow run ends Failed with the reason as its message
(and an artifact saying so), and the CLI exits with code 3. The body is flows/pipeline.py's `nightly`,
which `priceparity nightly` also runs directly when no Prefect server is configured.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows import pipeline
from flows.dask_contrast import ScaleOut
from flows.processes import flow_run_process
from flows.tasks import PREFECT


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
    flow_run_process()
    return pipeline.nightly(config_path, as_of, window_days, month_to_date, source_retries,
                            source_retry_delay_seconds, scale_out, run=PREFECT)
