"""The nightly flow: ingest every source, validate, audit the rolling window, compare, publish."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from audits.config import load_config
from flows.tasks import audit, ingest, latest_day, publish


@flow(name="nightly_audit")
def nightly_audit(config_path: str, as_of: dt.date | None = None, window_days: int | None = None) -> str:
    """Incremental ingest, then an audit of the last `window_days` days up to `as_of` (default: the newest data)."""
    config = load_config(Path(config_path))
    quality = ingest(config)
    end = as_of or latest_day(config)
    days = window_days or config.window_days
    start = end - dt.timedelta(days=days - 1)
    scope = f"rolling-{days}d"
    result = audit(config, start, end, scope=scope, data_quality=quality)
    report = publish(config, result, config.output_dir / scope / result.run.run_id)
    counts = result.severity_counts()
    create_markdown_artifact(
        key="nightly-audit",
        description="Headline counts of the nightly audit",
        markdown=(
            f"# Nightly audit {start} to {end}\n\n"
            f"| high | medium | low | quarantined rows |\n|---|---|---|---|\n"
            f"| {counts['high']} | {counts['medium']} | {counts['low']} | {result.data_quality.quarantined_rows} |\n\n"
            f"Report: `{report}`\n"
        ),
    )
    return str(report)
