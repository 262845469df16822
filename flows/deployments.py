"""Prefect deployments of both flows, served from this process.

`priceparity serve` registers the nightly deployment on `schedule.nightly_cron` in
`schedule.timezone` and the on-demand one without a schedule, then runs what the scheduler or the
UI asks for (each flow run in a process of its own, started by Prefect's runner). The Prefect server is
the one PREFECT_API_URL names, or one `serve --ui` starts (flows/prefect_server.py; docs/orchestration.md).
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import warnings
from pathlib import Path

from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import TerminationSignal
from prefect.runner import Runner
from prefect.schedules import Cron

from audits.config import Config
from audits.errors import ConfigError, one_line
from flows.dask_contrast import ScaleOut
from flows.nightly import nightly_audit
from flows.on_demand import on_demand_audit

NIGHTLY, NIGHTLY_FLOW = "nightly", "nightly_audit"
ON_DEMAND, ON_DEMAND_FLOW = "on-demand", "on_demand_audit"
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


def serve_deployments(config: Config, *, config_path: Path, api_url: str, scale_out: ScaleOut | None = None) -> None:
    """Register both deployments, say how to reach them, and run their flow runs until interrupted (Ctrl-C,
    SIGTERM), then pause the nightly schedule."""
    deployments = build_deployments(config, config_path=config_path, scale_out=scale_out)
    runner = Runner(pause_on_shutdown=True)
    for deployment in deployments:
        runner.add_deployment(deployment)
    print(serving_message(config, api_url=api_url), flush=True)
    # prefect 3.8's runner calls its async stop without awaiting it on SIGTERM; the shutdown works regardless
    warnings.filterwarnings("ignore", message="coroutine 'Runner.astop' was never awaited", category=RuntimeWarning)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):  # how a person or a supervisor stops it
        pass


def serving_message(config: Config, *, api_url: str) -> str:
    """What `serve` prints once its deployments are registered: where the UI is and a command that starts an
    on-demand run, both working as printed."""
    prefect = Path(sys.executable).parent / "prefect"
    command = (f"PREFECT_API_URL={shlex.quote(api_url)} {shlex.quote(str(prefect))} deployment run "
               f"{ON_DEMAND_FLOW}/{ON_DEMAND}")
    lines = [f"serving {NIGHTLY_FLOW}/{NIGHTLY} (cron {config.nightly_cron!r}, {config.timezone}) and "
             f"{ON_DEMAND_FLOW}/{ON_DEMAND}"]
    if api_url.rstrip("/").endswith("/api"):
        lines.append(f"Prefect UI: {api_url.rstrip('/').removesuffix('/api')}")
    lines += [f"on-demand audit: {command}",
              "  (add --param period_start=YYYY-MM-DD --param period_end=YYYY-MM-DD for a period; "
              "default: all the data in the warehouse)",
              "stop with Ctrl-C"]
    return "\n".join(lines)
