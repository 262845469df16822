"""Scale-out's one Prefect task: the pass-2 sums of one customer partition. Inside a Prefect run,
flows/dask_contrast.py submits it on prefect-dask's DaskTaskRunner, once per partition, so each partition
is a task run of the flow run; it imports Prefect, so it is imported only there."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from audits.contrast_model import PartitionSums
from audits.partitioned import partition_sums_from


@task(cache_policy=NONE)
def contrast_partition_task(folder: str, partition: int) -> PartitionSums:
    """Pass-2 sums of one customer partition, read from the run's scratch files."""
    return partition_sums_from(Path(folder), partition=partition)
