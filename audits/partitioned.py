"""Pass 2 of the disparity engine away from the warehouse: Parquet in, per-partition sums out.

The audit's process writes what pass 2 needs to a folder every worker can read: the measured lines
split into one folder per customer partition (a range of customer indexes), so a worker reads only its share,
and pass 1's state (unit statistics and coefficients, audits/contrasts.py) as one pickle. Each worker
reads its share and computes `contrasts.partition_sums`; every sum is over customers, so the parts
add up (`contrasts.add_sums`) to what one pass over all customers computes.

Nothing here knows Prefect or Dask (flows/dask_contrast.py runs `partition_sums_from` as a task per
partition), and workers never open the warehouse, so they never contend for its writer lock.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq

from audits.contrast_model import PartitionSums, PassState
from audits.contrasts import partition_of, partition_sums
from audits.errors import ConfigError

STATE_FILE = "state.pickle"
MISSING_INPUT = (
    "{path}: pass-2 input not found on this worker; the scratch folder must be storage every Dask "
    "worker can read (set the scale-out scratch_dir, --scratch-dir, to a shared path)"
)


def export_partitions(con: duckdb.DuckDBPyConnection, relation: str, state: PassState, folder: Path, *,
                      partitions: int) -> Path:
    """Write `relation`'s lines (the columns pass 2 reads, one folder per customer partition) and the state."""
    folder.mkdir(parents=True, exist_ok=True)
    # The relational API takes paths as values: no path is formatted into SQL; the columns are the
    # engine's own validated names and `partitions` is an int.
    con.table(relation).project(f"{', '.join(state.columns())}, {partition_of(state, partitions)} as part").write_parquet(
        str(folder / "lines"), partition_by=["part"])
    with open(folder / STATE_FILE, "wb") as handle:
        pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return folder


def partition_sums_from(folder: Path, *, partition: int) -> PartitionSums:
    """Pass-2 sums over one customer partition written by `export_partitions` to `folder`."""
    folder = Path(folder)
    state_file = folder / STATE_FILE
    if not state_file.exists():
        raise ConfigError(MISSING_INPUT.format(path=state_file))
    with open(state_file, "rb") as handle:  # our own file, written by export_partitions
        state: PassState = pickle.load(handle)
    share = folder / "lines" / f"part={partition}"
    if not share.exists():  # no customer in this partition
        return {}
    table = pq.read_table(share, columns=state.columns())
    return partition_sums(state, {name: np.asarray(table.column(name)) for name in state.columns()})
