"""The on-demand flow: audit any period, attributes, segments, filters and thresholds.

Every parameter is typed so that the Prefect UI renders a form for it (dates get a date picker,
thresholds a field each); the CLI's `priceparity audit` calls the same flow.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from audits.config import load_config
from audits.errors import ConfigError
from flows.dask_contrast import ScaleOut
from flows.tasks import audit, latest_day, publish, with_source_retries

SCOPE = "on-demand"
PERIOD_REVERSED = "period_start {start} is after period_end {end}; swap them"


class Thresholds(BaseModel):
    """Thresholds for this run only; an empty field keeps the config's value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_price_gap: float | None = Field(None, gt=0, description="Practical significance for price ratios (0.01 = 1%).")
    adverse_impact_ratio: float | None = Field(None, gt=0, le=1, description="Discount-rate ratios below this flag.")
    min_discount_depth: float | None = Field(None, gt=0, description="Practical significance for discount depth.")
    fdr: float | None = Field(None, gt=0, le=1, description="Benjamini-Hochberg false discovery rate.")
    min_group_customers: int | None = Field(None, ge=1, description="Smaller groups are suppressed, never shown.")
    max_discount_pct: float | None = Field(None, gt=0, le=1, description="Deepest discount the policy allows.")

    def overrides(self) -> dict[str, Any]:
        """Config keys (dotted) for the fields that are set."""
        section = {"max_discount_pct": "policy"}
        return {f"{section.get(name, 'thresholds')}.{name}": value
                for name, value in self.model_dump(exclude_none=True).items()}


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
        period_start: First day audited; empty: period_end minus the configured window.
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
    overrides: dict[str, Any] = thresholds.overrides()
    if attributes is not None:
        overrides["audit.attributes"] = attributes
    if segment_by is not None:
        overrides["audit.segment_by"] = segment_by
    config = load_config(Path(config_path), overrides=overrides)
    if period_start and period_end and period_start > period_end:
        raise ConfigError(PERIOD_REVERSED.format(start=period_start, end=period_end))
    quality = with_source_retries(source_retries, source_retry_delay_seconds)(config) if ingest_first else None
    end = period_end or latest_day(config)
    start = period_start or end - dt.timedelta(days=config.window_days - 1)
    if start > end:
        raise ConfigError(PERIOD_REVERSED.format(start=start, end=end))
    result = audit(config, start, end, scope=SCOPE, data_quality=quality, filters=filters, scale_out=scale_out)
    target = Path(out_dir) if out_dir else config.output_dir / SCOPE / result.run.run_id
    return str(publish(config, result, target))
