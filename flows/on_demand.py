"""The on-demand flow: audit any period, attributes, segments and filters, without ingesting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow

from audits.config import load_config
from flows.tasks import audit, latest_day, publish


@flow(name="on_demand_audit")
def on_demand_audit(
    config_path: str,
    period_start: dt.date | None = None,
    period_end: dt.date | None = None,
    attributes: list[str] | None = None,
    segment_by: list[str] | None = None,
    filters: dict[str, str] | None = None,
    thresholds: dict[str, float] | None = None,
    out_dir: str | None = None,
) -> str:
    """Audit [period_start, period_end] (default: the configured window up to the newest data)."""
    overrides: dict[str, Any] = {}
    if attributes is not None:
        overrides["audit.attributes"] = attributes
    if segment_by is not None:
        overrides["audit.segment_by"] = segment_by
    for name, value in (thresholds or {}).items():
        overrides[f"thresholds.{name}"] = value
    config = load_config(Path(config_path), overrides=overrides)
    end = period_end or latest_day(config)
    start = period_start or end - dt.timedelta(days=config.window_days - 1)
    scope = "on-demand"
    result = audit(config, start, end, scope=scope, filters=filters)
    target = Path(out_dir) if out_dir else config.output_dir / scope / result.run.run_id
    return str(publish(config, result, target))
