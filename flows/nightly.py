"""The nightly flow: ingest every source, validate, audit the rolling window and the month to date,
compare each with its previous run, publish, and leave a Prefect artifact with the headline counts.

A data-quality stop is not a quiet success: the flow run ends Failed with the reason as its message
(and an artifact saying so), and the CLI exits with code 3. The parameters and the body are
flows/pipeline.py's `nightly`, which `priceparity nightly` also runs directly when no Prefect server is
configured.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import pipeline
from flows.processes import flow_run_process
from flows.tasks import PREFECT


@flow(name="nightly_audit")
@pipeline.flow_parameters(pipeline.nightly)
def nightly_audit(**parameters: Any) -> dict[str, str]:
    """Incremental ingest, then audits of the rolling window and of the month to date, each against its last run."""
    flow_run_process()
    return pipeline.nightly(**parameters, run=PREFECT)
