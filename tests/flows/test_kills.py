"""SIGKILL, as a supervisor or the OOM killer sends it, at each stage of a real `priceparity audit` process:
no process of the run survives it (none holds the command's pipes), and a report folder holds one run's
files, all or nothing. The runs stop at named points (tests/flows/paused_cli.py wraps the real functions
there) to be killed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from audits.findings import AuditResult
from tests.flows.conftest import direct_env
from tests.flows.paused_cli import PAUSED

pytestmark = pytest.mark.slow  # each test runs and kills real CLI processes: 10-40 s

PAUSING = Path(__file__).with_name("paused_cli.py")


def _audit(config: Path, out: Path, *, pause_at: str = "none") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PAUSING), pause_at, "audit", "--config", str(config), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=direct_env(), start_new_session=True)


def _kill_at(process: subprocess.Popen, point: str) -> None:
    """Wait until the process pauses at `point`, then SIGKILL it; its pipes must close at once."""
    for line in process.stderr:
        if line.strip() == PAUSED.format(point=point):  # tests/flows/paused_cli.py says so
            break
    else:
        raise AssertionError(f"the run ended without pausing at {point} (exit {process.wait()})")
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=10)  # a child outliving the command would hold the pipes open: this would hang


def _session(sid: int) -> list[psutil.Process]:
    """Processes still alive in the session the killed command led."""
    alive = []
    for candidate in psutil.process_iter():
        try:
            if os.getsid(candidate.pid) == sid and candidate.status() != psutil.STATUS_ZOMBIE:
                alive.append(candidate)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            pass
    return alive


@pytest.mark.parametrize("stage", ["ingest", "data_days", "audit", "publish"])
def test_a_command_killed_in_any_stage_leaves_no_process_behind(filled_workspace, tmp_path, stage):
    process = _audit(filled_workspace, tmp_path / "report", pause_at=stage)
    _kill_at(process, stage)
    assert _session(process.pid) == []


def _run_id_of_report(folder: Path) -> str:
    """The run id in report.html's title (`... (RUN_ID)</title>`)."""
    [run_id] = re.findall(r"<title>[^<]*\(([^)<]+)\)</title>", (folder / "report.html").read_text(encoding="utf-8"))
    return run_id


@pytest.mark.parametrize(("point", "holds"), [
    ("publish_between_files", "first"), ("publish_before_swap", "first"), ("publish_after_swap", "second")])
def test_a_kill_during_publication_leaves_one_runs_files(filled_workspace, tmp_path, point, holds):
    out = tmp_path / "report"
    first = _audit(filled_workspace, out, pause_at="none")
    assert first.wait(timeout=300) == 0, first.stderr.read()
    first.communicate()
    first_id = AuditResult.read(out / "findings.json").run.run_id

    _kill_at(_audit(filled_workspace, out, pause_at=point), point)
    assert sorted(os.listdir(out)) == ["breaches.csv", "findings.json", "report.html"]
    run_id = AuditResult.read(out / "findings.json").run.run_id
    assert _run_id_of_report(out) == run_id
    assert (run_id == first_id) is (holds == "first")
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.publishing-")]
    assert len(left) == 1  # the killed run's folder (before the swap: its files; after: the first run's)

    third = _audit(filled_workspace, out)
    stdout, stderr = third.communicate(timeout=300)
    assert third.returncode == 0, stderr
    run_id = AuditResult.read(out / "findings.json").run.run_id
    assert _run_id_of_report(out) == run_id and run_id != first_id
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.")] == []  # cleaned up
