"""Prefect deployments of both flows, served from this process with `serve()`.

`priceparity serve` registers the nightly deployment on `schedule.nightly_cron` in
`schedule.timezone` and the on-demand one without a schedule, then runs what the scheduler or the
UI asks for in this process. With PREFECT_API_URL pointing at a server (`prefect server start`) the
runs and their artifacts show in its UI; without one, Prefect runs an embedded temporary server
that lives as long as this process (docs/orchestration.md).
"""

from __future__ import annotations

from pathlib import Path

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from audits.config import Config
from audits.errors import ConfigError, one_line
from flows.dask_contrast import ScaleOut
from flows.nightly import nightly_audit
from flows.on_demand import on_demand_audit

NIGHTLY = "nightly"
ON_DEMAND = "on-demand"
BAD_SCHEDULE = (
    "{file}: keys 'schedule.nightly_cron' = {cron!r} and 'schedule.timezone' = {timezone!r} do not make a "
    "schedule ({reason}); use five cron fields (e.g. \"0 2 * * *\") and an IANA time zone (e.g. \"Europe/Paris\")"
)


def build_deployments(config: Config, *, config_path: Path, scale_out: ScaleOut | None = None) -> list[RunnerDeployment]:
    """The nightly deployment on the configured cron (one run at a time), and the on-demand one with no schedule."""
    parameters = {"config_path": str(config_path), "scale_out": (scale_out or ScaleOut()).model_dump()}
    try:
        nightly = nightly_audit.to_deployment(
            name=NIGHTLY, parameters=parameters, concurrency_limit=1, tags=["priceparity"],
            schedule=Cron(config.nightly_cron, timezone=config.timezone),
            description="Incremental ingest, rolling-window and month-to-date audits, comparison with the last run, reports.",
        )
    except ValueError as err:  # pydantic's ValidationError is one
        errors = getattr(err, "errors", None)
        reason = errors()[0]["msg"] if callable(errors) else str(err)
        raise ConfigError(BAD_SCHEDULE.format(file=config_path, cron=config.nightly_cron, timezone=config.timezone,
                                              reason=one_line(reason, limit=200))) from err
    return [
        nightly,
        on_demand_audit.to_deployment(
            name=ON_DEMAND, parameters=parameters, tags=["priceparity"],
            description="Audit any period, attributes, segments, filters and thresholds.",
        ),
    ]


def serve_deployments(config: Config, *, config_path: Path, scale_out: ScaleOut | None = None) -> None:
    """Register both deployments and run their flow runs in this process until interrupted."""
    serve(*build_deployments(config, config_path=config_path, scale_out=scale_out))
