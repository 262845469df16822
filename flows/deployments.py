"""Prefect deployments of both flows, served from this process with `serve()`.

Without a Prefect server, `serve` runs against a temporary local one; point PREFECT_API_URL at a
server (`prefect server start`) to see and start runs from the UI.
"""

from __future__ import annotations

from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from audits.config import Config
from flows.nightly import nightly_audit
from flows.on_demand import on_demand_audit


def build_deployments(config: Config, *, config_path: Path) -> list:
    """The nightly deployment on the configured cron, and the on-demand one with no schedule."""
    parameters = {"config_path": str(config_path)}
    return [
        nightly_audit.to_deployment(
            name="nightly", parameters=parameters,
            schedule=Cron(config.nightly_cron, timezone=config.timezone),
            description="Incremental ingest, rolling-window audit, comparison with the last run, report.",
        ),
        on_demand_audit.to_deployment(
            name="on-demand", parameters=parameters,
            description="Audit any period, attributes, segments, filters and thresholds.",
        ),
    ]


def serve_deployments(config: Config, *, config_path: Path) -> None:
    serve(*build_deployments(config, config_path=config_path))
