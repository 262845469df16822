"""Faults: a run killed during ingest, during the audit or while writing the report leaves nothing
half-done; the next run converges to exactly the state a clean run reaches.

Compared: warehouse contents (row counts and a checksum of every loaded row, the quarantine), the
findings (every key, severity and estimate), and a complete report.html and findings.json.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import duckdb
import pytest

from audits.sample import MarketSpec, write_sample_market

pytestmark = pytest.mark.slow  # each test runs, kills and reruns the pipeline in processes: 15-20 s

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fault-market")
    write_sample_market(folder / "landing", spec=MarketSpec(n_customers=3_000, days=40, seed=3))
    config = resources.files("flows").joinpath("demo.toml").read_text(encoding="utf-8")
    (folder / "priceparity.toml").write_text(config.replace("window_days = 90", "window_days = 40"))
    return folder


def _copy(market: Path, target: Path) -> Path:
    shutil.copytree(market, target)
    return target


def _run(folder: Path, *, kill_after: tuple[str, float] | None = None) -> list[str]:
    """Run the worker; with kill_after=(stage, seconds), SIGKILL it that long after the stage starts."""
    log = folder / f"worker-{len(list(folder.glob('worker-*.log')))}.log"
    stages = []
    with log.open("w") as errors, subprocess.Popen(
        [sys.executable, "-m", "tests.fault_worker", str(folder / "priceparity.toml"), str(folder / "report")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        for line in process.stdout:
            if line.startswith("stage "):
                stages.append(line.split()[1])
                if kill_after and stages[-1] == kill_after[0]:
                    time.sleep(kill_after[1])
                    process.send_signal(signal.SIGKILL)
                    break
        process.stdout.read()
        process.wait(timeout=300)
    if not kill_after:
        assert process.returncode == 0, log.read_text()
    return stages


def _state(folder: Path) -> dict:
    con = duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True)
    try:
        tables = {
            table: con.execute(
                f"select count(*), coalesce(sum(hash(r)), 0) from (select * exclude (batch_id) from {table}) as r"
            ).fetchone()
            for table in ("transactions", "customers")
        }
        tables["quarantine"] = con.execute("select count(*) from quarantine").fetchone()
    finally:
        con.close()
    findings_path = folder / "report" / "findings.json"
    findings = json.loads(findings_path.read_text(encoding="utf-8"))["findings"]
    html = (folder / "report" / "report.html").read_text(encoding="utf-8")
    return {
        "tables": tables,
        "findings": sorted((f["check"], f["metric"], str(f["attribute"]), str(f["group"]), json.dumps(f["segment"]),
                            f["severity"], None if f["estimate"] is None else round(f["estimate"], 9))
                           for f in findings),
        "report_complete": html.rstrip().endswith("</html>"),
    }


@pytest.fixture(scope="module")
def clean(market, tmp_path_factory) -> dict:
    folder = _copy(market, tmp_path_factory.mktemp("clean") / "run")
    assert _run(folder) == ["ingest", "audit", "publish", "done"]
    return _state(folder)


@pytest.mark.parametrize(("stage", "delay"), [("ingest", 0.8), ("audit", 0.5), ("publish", 0.05)])
def test_killed_run_then_rerun_converges_to_a_clean_run(market, clean, tmp_path, stage, delay):
    folder = _copy(market, tmp_path / "run")
    stages = _run(folder, kill_after=(stage, delay))
    assert stages[-1] == stage and "done" not in stages
    assert _run(folder)[-1] == "done"
    state = _state(folder)
    assert state["tables"] == clean["tables"]
    assert state["findings"] == clean["findings"]
    assert state["report_complete"]


def test_a_half_written_report_never_replaces_a_good_one(market, tmp_path):
    folder = _copy(market, tmp_path / "run")
    _run(folder)
    good = (folder / "report" / "report.html").read_bytes()
    _run(folder, kill_after=("publish", 0.05))
    now = (folder / "report" / "report.html").read_bytes()
    assert now.rstrip().endswith(b"</html>")
    assert len(now) > 0.9 * len(good)
