"""Kill `priceparity ingest` mid-batch and compare warehouses by content.

`run_until_paused` starts the real CLI in a subprocess through tests/flows/paused_cli.py, which wraps the
ingest's functions from outside, waits until the ingest says it is paused at that point (inside the batch's
transaction), and SIGKILLs it: no Python cleanup, no rollback, no close, like a power cut or the OOM killer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

PAUSED_CLI = Path(__file__).parents[2] / "flows" / "paused_cli.py"
_TABLES = {  # table -> columns left out of the comparison (batch ids and timings differ between runs)
    "transactions": {"batch_id"},
    "customers": {"batch_id"},
    "quarantine": {"batch_id"},
    "ingest_files": {"batch_id"},
    "ingest_batches": {"batch_id", "started_at", "finished_at", "seconds"},
}


def run_until_paused(config_path: Path, point: str, *, env: dict[str, str] | None = None,
                     timeout: float = 120.0) -> str:
    """Run `priceparity ingest --config` until it pauses at `point`, SIGKILL it, return its stderr."""
    environment = {**os.environ, **(env or {}),
                   "PREFECT_LOGGING_LEVEL": "CRITICAL", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    process = subprocess.Popen([sys.executable, str(PAUSED_CLI), point, "ingest", "--config", str(config_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                raise AssertionError(f"ingest ended (exit {process.returncode}) before pausing at {point}: {lines}")
            lines.append(line)
            if f"paused at {point}" in line:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
                assert process.returncode == -signal.SIGKILL
                return "".join(lines)
        raise AssertionError(f"ingest did not pause at {point} within {timeout} s: {lines}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def snapshot(path: Path) -> dict[str, Any]:
    """Row count and an order-independent checksum of every warehouse table's content."""
    with duckdb.connect(str(path)) as con:  # read-write: a killed run leaves a WAL to replay
        state: dict[str, Any] = {}
        for table, ignored in _TABLES.items():
            columns = [r[0] for r in con.execute(f"describe {table}").fetchall() if r[0] not in ignored]
            row = ", ".join(f'"{c}"' for c in columns)
            state[table] = con.execute(
                f"select count(*), md5(coalesce(string_agg(md5(cast(row({row}) as varchar)), '' "
                f"order by md5(cast(row({row}) as varchar))), '')) from {table}").fetchall()[0]
        return state
