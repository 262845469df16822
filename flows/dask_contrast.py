"""Scale-out: pass 2 of the disparity engine as one Prefect task per customer partition on Dask.

The audit runs pass 1 (unit statistics and coefficients, audits/contrasts.py) in the warehouse's
process as usual; `DaskContrast` then writes the measured lines (one Parquet folder per customer
partition) and pass 1's state to a run-scoped scratch folder, submits one task per partition to
prefect-dask's DaskTaskRunner (audits/partitioned.py), and adds the partial sums up.
On a real cluster the scratch folder must be storage every worker can read (docs/orchestration.md).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import duckdb
from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict, Field

from audits.config import Config
from audits.errors import ConfigError, one_line
from audits.contrasts import PartitionSums, PassState, add_sums
from audits.partitioned import export_partitions, partition_sums_from
from audits.runner import ContrastExecutor, in_process_contrast

Executor = Literal["local", "dask"]
SCRATCH_UNWRITABLE = "{path}: cannot create the scratch folder ({reason}); set --scratch-dir to a writable shared folder"
DASK_UNREACHABLE = (
    "cannot reach the Dask scheduler at {address} ({reason}); check --dask-address and that the cluster is up"
)


class ScaleOut(BaseModel):
    """Where pass 2 of the disparity checks runs: in the flow's process, or on a Dask cluster."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    executor: Executor = Field("local", description="local: in the flow's process; dask: one task per partition.")
    dask_address: str | None = Field(
        None, description="Scheduler of an existing Dask cluster (tcp://host:8786); empty: a temporary local one.")
    dask_workers: int = Field(2, ge=1, description="Workers of the temporary local cluster.")
    partitions: int | None = Field(
        None, ge=1, description="Customer partitions (one task each); empty: one per Dask worker.")
    scratch_dir: str | None = Field(
        None, description="Folder for the run's Parquet files; on a real cluster, storage every worker can read.")


@task(cache_policy=NONE)
def contrast_partition_task(folder: str, partition: int) -> PartitionSums:
    """Pass-2 sums of one customer partition, read from the run's scratch files."""
    return partition_sums_from(Path(folder), partition=partition)


class DaskContrast:
    """A ContrastExecutor that sums each customer partition in a Prefect task on a Dask cluster."""

    def __init__(self, runner: Any, *, scratch: Path, partitions: int) -> None:
        self.runner, self.scratch, self.partitions = runner, scratch, partitions

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, state: PassState, _: int) -> PartitionSums:
        folder = export_partitions(con, relation, state, Path(tempfile.mkdtemp(prefix="pass-", dir=self.scratch)),
                                   partitions=self.partitions)
        try:
            futures = [self.runner.submit(contrast_partition_task, parameters={
                "folder": str(folder), "partition": partition}) for partition in range(self.partitions)]
            total: PartitionSums = {}
            for future in futures:
                add_sums(total, future.result())
            return total
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def contrast_executor(scale_out: ScaleOut, config: Config, *, run_label: str = "run") -> Iterator[ContrastExecutor]:
    """The pass-2 executor `scale_out` asks for; a Dask one holds its cluster and scratch folder until exit."""
    if scale_out.executor == "local":
        yield in_process_contrast
        return
    from prefect_dask import DaskTaskRunner  # imports distributed: only when asked for

    if scale_out.dask_address:
        runner = DaskTaskRunner(address=scale_out.dask_address)
    else:
        # Threads, not processes: workers in this process share its Prefect API (an embedded server
        # is only reachable from here), and DuckDB does its work outside the GIL anyway.
        runner = DaskTaskRunner(cluster_kwargs={
            "n_workers": scale_out.dask_workers, "processes": False, "threads_per_worker": 1,
            "dashboard_address": ":0"})
    scratch_root = Path(scale_out.scratch_dir) if scale_out.scratch_dir else None
    try:
        if scratch_root is not None:
            scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"priceparity-{run_label}-", dir=scratch_root))
    except OSError as err:
        raise ConfigError(SCRATCH_UNWRITABLE.format(path=scratch_root or tempfile.gettempdir(),
                                                    reason=err.strerror)) from err
    try:
        with runner:
            try:
                workers = len(runner.client.nthreads())
            except OSError as err:
                reason = one_line(err, limit=200)
                raise ConfigError(DASK_UNREACHABLE.format(address=scale_out.dask_address, reason=reason)) from err
            partitions = scale_out.partitions or max(1, workers)
            yield DaskContrast(runner, scratch=scratch, partitions=partitions)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
