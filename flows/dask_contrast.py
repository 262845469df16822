"""Scale-out: phase 2 of the disparity checks as one Prefect task per customer partition on Dask.

The audit builds phase 1 (`measurements`, `contrast_tests`) in the warehouse's process as usual;
`DaskContrast` then writes both tables to Parquet in a run-scoped scratch folder, submits one task
per partition of customers to prefect-dask's DaskTaskRunner (each worker opens its own in-memory
DuckDB over the files: audits/partitioned.py), and adds the partial sums up with `merge_partitions`.
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
from audits.partitioned import export_contrast_inputs, partition_sums
from audits.runner import ContrastExecutor, in_process_contrast, merge_partitions

Executor = Literal["local", "dask"]
SCRATCH_UNWRITABLE = "{path}: cannot create the scratch folder ({reason}); set --scratch-dir to a writable shared folder"
DASK_UNREACHABLE = (
    "cannot reach the Dask scheduler at {address} ({reason}); check --dask-address and that the cluster is up"
)


class ScaleOut(BaseModel):
    """Where phase 2 of the disparity checks runs: in the flow's process, or on a Dask cluster."""

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
def contrast_partition_task(folder: str, partition: int, threads: int, memory_limit: str) -> list[dict[str, Any]]:
    """Phase-2 sums of one customer partition, read from the run's Parquet files."""
    return partition_sums(Path(folder), partition=partition, threads=threads, memory_limit=memory_limit)


class DaskContrast:
    """A ContrastExecutor that sums each customer partition in a Prefect task on a Dask cluster."""

    def __init__(self, runner: Any, *, scratch: Path, partitions: int, threads: int, memory_limit: str) -> None:
        self.runner, self.scratch, self.partitions = runner, scratch, partitions
        self.threads, self.memory_limit = threads, memory_limit

    def __call__(self, con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
        folder = export_contrast_inputs(con, Path(tempfile.mkdtemp(prefix="check-", dir=self.scratch)),
                                        partitions=self.partitions)
        try:
            futures = [
                self.runner.submit(contrast_partition_task, parameters={
                    "folder": str(folder), "partition": partition, "threads": self.threads,
                    "memory_limit": self.memory_limit})
                for partition in range(self.partitions)
            ]
            return merge_partitions([future.result() for future in futures])
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def contrast_executor(scale_out: ScaleOut, config: Config, *, run_label: str = "run") -> Iterator[ContrastExecutor]:
    """The phase-2 executor `scale_out` asks for; a Dask one holds its cluster and scratch folder until exit."""
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
            yield DaskContrast(runner, scratch=scratch, partitions=partitions, threads=config.threads,
                               memory_limit=config.memory_limit)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
