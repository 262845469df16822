"""The pipeline's stages as Prefect tasks, and the runner that calls them inside a flow run.

PREFECT runs each stage of flows/stages.py as the task of the same name (`ingest`, `data_days`, `audit`,
`audit_each_window`, `publish`), so the flow run of flows/nightly.py or flows/on_demand.py shows one task run per stage with
its logs, and keeps the flows' markdown artifacts. Only ingest touches sources, so only ingest retries,
and only on source I/O: the flow sets the number of retries and the backoff. (Scale-out's partition task
is flows/partition_task.py's.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Task, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from flows import stages

T = TypeVar("T")


def _retry_on_source_io(task: Task, task_run, state) -> bool:
    try:
        state.result()
    except Exception as err:
        return stages.is_source_io_error(err)
    return False


ingest = task(stages.ingest, cache_policy=NONE, retry_condition_fn=_retry_on_source_io)
data_days = task(stages.data_days, cache_policy=NONE)
audit = task(stages.audit, cache_policy=NONE)
audit_each_window = task(stages.audit_each_window, cache_policy=NONE)
publish = task(stages.publish, cache_policy=NONE)
TASKS: dict[Callable[..., Any], Task] = {t.fn: t for t in (ingest, data_days, audit, audit_each_window, publish)}


class PrefectRunner:
    """Runs each stage as its Prefect task (in the current flow run) and keeps artifacts on the flow run."""

    def __call__(self, stage: Callable[..., T], /, *args: Any, retries: int = 0, retry_delay_seconds: float = 0.0,
                 **kwargs: Any) -> T:
        prefect_task = TASKS[stage]
        if retries:
            prefect_task = prefect_task.with_options(
                retries=retries, retry_delay_seconds=stages.retry_delays(retries, retry_delay_seconds))
        return prefect_task(*args, **kwargs)

    def artifact(self, *, key: str, description: str, markdown: str) -> None:
        create_markdown_artifact(key=key, description=description, markdown=markdown)


PREFECT = PrefectRunner()
