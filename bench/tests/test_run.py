"""`make bench` end to end on a small market: every stage runs, and the warehouse is left as the first run left it.

Run from the repository root: `.venv/bin/python -m pytest bench/tests` (`make bench` runs it first).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_small_bench_runs_every_stage_and_restores_the_first_runs_warehouse(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--sizes", "20k", "--skip", "naive,pyfixest,floor,cold_cli",
         "--nightly-runs", "1", "--data-dir", str(tmp_path / "data"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    size = json.loads(out.read_text(encoding="utf-8"))["sizes"]["20k"]
    stages = size["stages"]
    assert {name: stage["status"] for name, stage in stages.items()} == dict.fromkeys(stages, "ok")
    assert {"ingest", "audit", "report", "nightly_ingest", "nightly_flow", "nightly_flow_late"} <= stages.keys()
    first = stages["ingest"]["result"]["rows_in_warehouse"]
    assert stages["nightly_ingest"]["result"]["rows_in_warehouse"] > first  # the night added its day
    # ... on copies: what runs on the warehouse next (an A/B of a night) starts from the first run's state
    with duckdb.connect(str(tmp_path / "data" / "20k" / "run" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from transactions").fetchone()[0] == first
    assert 0 < size["ratios"]["nightly_flow_over_first_run"] < 1
