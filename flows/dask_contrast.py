"""Scale-out: pass 2 of the disparity engine, one task per customer partition on Dask.

The audit runs pass 1 (unit statistics and coefficients, audits/contrasts.py) in the warehouse's
process as usual; `DaskContrast` then writes the measured lines (one Parquet folder per customer
partition) and pass 1's state to a run-scoped scratch folder, submits one task per partition, and adds
the partial sums up. Inside a Prefect run each partition is a Prefect task
(flows/partition_task.py) on prefect-dask's DaskTaskRunner, recorded with the flow run;
in a direct run (no Prefect server) it is a plain Dask future of `audits.partitioned.partition_sums_from`.
On a real cluster the scratch folder must be storage every worker can read (docs/orchestration.md).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field

from audits.config import Config
from audits.contrast_model import PartitionSums, PassState
from audits.contrasts import add_sums
from audits.errors import ConfigError, one_line
from audits.partitioned import export_partitions, partition_sums_from
from audits.runner import ContrastExecutor, in_process_contrast

Executor = Literal["local", "dask"]
SCRATCH_UNWRITABLE = "{path}: cannot create the scratch folder ({reason}); set --scratch-dir to a writable shared folder"
DASK_UNREACHABLE = (
    "cannot reach the Dask scheduler at {address} ({reason}); check --dask-address and that the cluster is up"
)
Submit = Callable[[str, int], Any]  # (scratch folder, partition) -> a future whose result() is the partition's sums


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


class DaskContrast:
    """A ContrastExecutor that sums each customer partition in a task on a Dask cluster."""

    def __init__(self, submit: Submit, *, scratch: Path, partitions: int) -> None:
        self.submit, self.scratch, self.partitions = submit, scratch, partitions

    def __call__(self, con: duckdb.DuckDBPyConnection, relation: str, state: PassState, _: int) -> PartitionSums:
        folder = export_partitions(con, relation, state, Path(tempfile.mkdtemp(prefix="pass-", dir=self.scratch)),
                                   partitions=self.partitions)
        try:
            futures = [self.submit(str(folder), partition) for partition in range(self.partitions)]
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
    scratch_root = Path(scale_out.scratch_dir) if scale_out.scratch_dir else None
    try:
        if scratch_root is not None:
            scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"priceparity-{run_label}-", dir=scratch_root))
    except OSError as err:
        raise ConfigError(SCRATCH_UNWRITABLE.format(path=scratch_root or tempfile.gettempdir(),
                                                    reason=err.strerror)) from err
    try:
        with _dask(scale_out) as (submit, workers):
            yield DaskContrast(submit, scratch=scratch, partitions=scale_out.partitions or max(1, workers))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# The temporary local cluster: workers are threads of this process, so they share its Prefect API (a flow run's
# partition tasks report to it), and DuckDB does its work outside the GIL anyway.
def _local_cluster(scale_out: ScaleOut) -> dict[str, Any]:
    return {"n_workers": scale_out.dask_workers, "processes": False, "threads_per_worker": 1,
            "dashboard_address": ":0"}


@contextmanager
def _dask(scale_out: ScaleOut) -> Iterator[tuple[Submit, int]]:
    """(submit, number of workers) on the cluster `scale_out` names (or a temporary local one)."""
    from flows.progress import in_prefect_run

    if in_prefect_run():
        from prefect_dask import DaskTaskRunner  # imports distributed: only when asked for

        from flows.partition_task import contrast_partition_task

        runner = DaskTaskRunner(address=scale_out.dask_address) if scale_out.dask_address else \
            DaskTaskRunner(cluster_kwargs=_local_cluster(scale_out))
        with runner:
            workers = _workers(lambda: runner.client.nthreads(), scale_out)
            yield (lambda folder, partition: runner.submit(
                contrast_partition_task, parameters={"folder": folder, "partition": partition})), workers
        return
    from distributed import Client, LocalCluster

    with _reaching(scale_out):
        client = Client(scale_out.dask_address) if scale_out.dask_address else \
            Client(LocalCluster(**_local_cluster(scale_out)))
    with client:
        workers = _workers(client.nthreads, scale_out)
        try:
            yield (lambda folder, partition: client.submit(
                partition_sums_from, Path(folder), partition=partition, pure=False)), workers
        finally:
            if client.cluster is not None:  # the temporary local cluster: the client does not close it
                client.cluster.close()


def _workers(nthreads: Callable[[], dict], scale_out: ScaleOut) -> int:
    with _reaching(scale_out):
        return len(nthreads())


@contextmanager
def _reaching(scale_out: ScaleOut) -> Iterator[None]:
    """Turn a scheduler that cannot be reached into the error naming --dask-address."""
    try:
        yield
    except OSError as err:
        reason = one_line(err, limit=200)
        raise ConfigError(DASK_UNREACHABLE.format(address=scale_out.dask_address, reason=reason)) from err
