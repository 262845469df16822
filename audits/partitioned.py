"""Phase 2 of the within-cell contrast away from the warehouse: Parquet in, per-partition sums out.

The audit's process writes phase 2's inputs to Parquet in a folder every worker can read:
`measurements` split into one folder per customer partition (hash(customer_id) % partitions, the
split sql/stats/within_cell_contrast.sql filters on), so a worker reads only its share, and
`contrast_tests` (phase 1's per-cell statistics) whole. Each worker opens its own in-memory DuckDB
over the files and sums its partition (`contrast_partition` over the share as a whole: the split is
made once, at export, so a worker with another DuckDB build, whose hash may differ, still sums
exactly its share). The sums are additive over disjoint sets of customers, so `merge_partitions`
adds the parts up to what one pass over all customers computes.

Nothing here knows Prefect or Dask (flows/dask_contrast.py runs `partition_sums` as a task per
partition), and workers never open the warehouse, so they never contend for its writer lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from audits.errors import ConfigError
from audits.runner import contrast_partition

# The columns of `measurements` that sql/stats/within_cell_contrast.sql reads (its header's Input).
PHASE_TWO_COLUMNS = ("dim_id", "segment_value", "cell_key", "customer_id", "group_value", "y")
MISSING_INPUT = (
    "{path}: phase-2 input not found on this worker; the scratch folder must be storage every Dask "
    "worker can read (set the scale-out scratch_dir, --scratch-dir, to a shared path)"
)


def export_contrast_inputs(con: duckdb.DuckDBPyConnection, folder: Path, *, partitions: int) -> Path:
    """Write this connection's `measurements` (one folder per customer partition) and `contrast_tests` to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    # The relational API takes paths as values: no path is formatted into SQL; `partitions` is an int.
    columns = ", ".join(PHASE_TWO_COLUMNS)
    con.table("measurements").project(f"{columns}, hash(customer_id) % {int(partitions)} as part").write_parquet(
        str(folder / "measurements"), partition_by=["part"])
    con.table("contrast_tests").write_parquet(str(folder / "contrast_tests.parquet"))
    return folder


def partition_sums(folder: Path, *, partition: int, threads: int = 0, memory_limit: str = "2GB") -> list[dict[str, Any]]:
    """Phase-2 sums over one customer partition written by `export_contrast_inputs` to `folder`."""
    folder = Path(folder)
    tests = folder / "contrast_tests.parquet"
    if not tests.exists():
        raise ConfigError(MISSING_INPUT.format(path=tests))
    share = folder / "measurements" / f"part={partition}"
    if not share.exists():  # no customer hashed into this partition
        return []
    config: dict[str, Any] = {"memory_limit": memory_limit}
    if threads:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute("set enable_progress_bar = false")  # a worker's stdout is nobody's terminal
        con.read_parquet(str(share / "*.parquet")).create_view("measurements")
        con.read_parquet(str(tests)).create_view("contrast_tests")
        return contrast_partition(con, partitions=1, partition=0)
    finally:
        con.close()
