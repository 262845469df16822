"""The on-demand flow: audit any period, attributes, segments, filters and thresholds.

Every parameter is typed so that the Prefect UI renders a form for it (dates get a date picker,
thresholds a field each). The parameters and the body are flows/pipeline.py's `on_demand`, which
`priceparity audit` also runs directly when no Prefect server is configured.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import pipeline
from flows.processes import flow_run_process
from flows.tasks import PREFECT


@flow(name="on_demand_audit")
@pipeline.flow_parameters(pipeline.on_demand)
def on_demand_audit(**parameters: Any) -> str:
    """Audit [period_start, period_end] for the chosen attributes, segments and filters; returns the report's path."""
    flow_run_process()
    return pipeline.on_demand(**parameters, run=PREFECT)
