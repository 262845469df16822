"""The on-demand flow: audit any period, attributes, segments, filters and thresholds.

Every parameter is typed so that the Prefect UI renders a form for it (dates get a date picker,
thresholds a field each). The body is flows/pipeline.py's `on_demand`, which `priceparity audit` also
runs directly when no Prefect server is configured.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows import pipeline
from flows.dask_contrast import ScaleOut
from flows.pipeline import Thresholds
from flows.processes import flow_run_process
from flows.tasks import PREFECT


@flow(name="on_demand_audit")
def on_demand_audit(
    config_path: str,
    period_start: dt.date | None = None,
    period_end: dt.date | None = None,
    attributes: list[str] | None = None,
    segment_by: list[str] | None = None,
    filters: dict[str, str] | None = None,
    thresholds: Thresholds = Thresholds(),
    ingest_first: bool = False,
    out_dir: str | None = None,
    source_retries: int = 3,
    source_retry_delay_seconds: float = 10.0,
    scale_out: ScaleOut = ScaleOut(),
) -> str:
    """Audit [period_start, period_end] for the chosen attributes, segments and filters; returns the report's path.

    Args:
        config_path: The TOML config file, as seen by the process that runs the flow.
        period_start: First day audited; empty: the first day of data (an on-demand question covers all the data loaded).
        period_end: Last day audited; empty: the day of the newest transaction.
        attributes: Customer attributes audited; empty: audit.attributes from the config.
        segment_by: Columns whose every value gets its own findings; empty: audit.segment_by.
        filters: Only lines with these column values, e.g. {"category": "grocery"} or {"channel": "web"}.
        thresholds: Thresholds for this run; empty fields keep the config's values.
        ingest_first: Load the sources' new rows before auditing.
        out_dir: Folder for report.html and findings.json; empty: output.dir/on-demand/RUN_ID.
        source_retries: Retries of the ingest when a source cannot be read (I/O only).
        source_retry_delay_seconds: Wait before the first retry; each further retry waits twice as long.
        scale_out: Where pass 2 of the disparity checks runs (this process or a Dask cluster).
    """
    flow_run_process()
    return pipeline.on_demand(
        config_path, period_start, period_end, attributes, segment_by, filters, thresholds, ingest_first, out_dir,
        source_retries, source_retry_delay_seconds, scale_out, run=PREFECT)
