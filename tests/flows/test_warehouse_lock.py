"""Two runs at once, in two real processes: the second waits for the writer lock, then fails clearly."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb

from audits.config import load_config
from audits.ingest import ingest_all
from audits.warehouse import open_warehouse
from tests.flows.conftest import PRICEPARITY, cli_env

HOLD = """
import sys, time
from pathlib import Path
from audits.warehouse import open_warehouse
with open_warehouse(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold_lock(warehouse: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the warehouse's writer lock; returns once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(warehouse), str(seconds)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_fails_clearly_after_the_lock_timeout(prefect_harness, workspace):
    config_path = workspace(lock_timeout_seconds=1)
    holder = _hold_lock(config_path.parent / "warehouse.duckdb", 120)
    try:
        started = time.monotonic()
        done = subprocess.run([str(PRICEPARITY), "audit", "--config", str(config_path), "--no-ingest"],
                              capture_output=True, text=True, env=cli_env(), timeout=300)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert "warehouse.duckdb: the warehouse is in use by another PriceParity run (waited 1 s)" in line
    assert "raise warehouse.lock_timeout_seconds" in line
    assert "Traceback" not in done.stdout + done.stderr
    assert waited >= 1


def test_nightly_and_on_demand_at_once_take_turns_and_both_finish(prefect_harness, workspace, tmp_path):
    config_path = workspace(lock_timeout_seconds=240)
    config = load_config(config_path)
    with open_warehouse(config.warehouse_path) as con:
        ingest_all(con, config)
        n_before = con.execute("select count(*) from transactions").fetchone()[0]
    # The on-demand run starts while another process holds the lock: it must wait, not fail or corrupt.
    holder = _hold_lock(config.warehouse_path, 6)
    env = cli_env()
    runs = [
        subprocess.Popen([str(PRICEPARITY), "nightly", "--config", str(config_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
        subprocess.Popen([str(PRICEPARITY), "audit", "--config", str(config_path), "--out", str(tmp_path / "od")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    holder.wait()
    holder.stdout.close()
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr
        assert "report: " in stdout
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        n_after, n_keys = con.execute(
            "select count(*), count(distinct (source, transaction_id)) from transactions").fetchone()
        scopes = sorted(r[0] for r in con.execute("select scope from audit_runs").fetchall())
        statuses = {r[0] for r in con.execute("select status from ingest_batches").fetchall()}
    assert n_after == n_keys == n_before  # both runs ingested: nothing twice, nothing lost
    assert scopes == ["month-to-date", "on-demand", "rolling-30d"]
    assert statuses == {"loaded"}  # no batch failed half-way
