"""Every input a user can get wrong: one clear line on stderr, the right exit code, no traceback,
and the warehouse either unchanged or holding the bad rows in quarantine, counted.

Each folder under `cases/` is one case: `config.toml`, its data files, and `case.toml` listing the
commands to run (`[[steps]]`) with what each must produce. Most run in-process through the CLI
(typer's CliRunner); `test_real_process` runs a few as real subprocesses to prove that what reaches
a terminal is one line with no traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app

CASES = Path(__file__).parent / "cases"
ALL = sorted(p.name for p in CASES.iterdir() if (p / "case.toml").exists())


def _steps(name: str) -> list[dict]:
    return tomllib.loads((CASES / name / "case.toml").read_text(encoding="utf-8"))["steps"]


def _needs(name: str) -> set[str]:
    needs = set()
    for step in _steps(name):
        if step["command"][0] == "audit" and step["exit_code"] != 2 or any(
                a in step["command"] for a in ("--out",)) or "unknown_audit" in name:
            needs.add("prefect")
        if step.get("postgres"):
            needs.add("postgres")
    return needs


def _warehouse_counts(folder: Path) -> tuple[int, int, list[str]]:
    path = folder / "warehouse.duckdb"
    if not path.exists():
        return 0, 0, []
    con = duckdb.connect(str(path), read_only=True)
    try:
        transactions = con.execute("select count(*) from transactions").fetchone()[0]
        quarantined = con.execute("select count(*) from quarantine").fetchone()[0]
        reasons = [r[0] for r in con.execute("select reason from quarantine").fetchall()]
    finally:
        con.close()
    return transactions, quarantined, reasons


def test_the_corpus_is_large_enough():
    assert len(ALL) >= 25


def _case(name: str) -> object:
    """The case as a test parameter, marked at collection (so `-m` selects it) by what it needs: the
    PostgreSQL server, or a Prefect server (slow: it takes 10-30 s to start)."""
    needs = _needs(name)
    marks = [mark for need, mark in (("postgres", pytest.mark.postgres), ("prefect", pytest.mark.slow)) if need in needs]
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_case(name) for name in ALL])
def test_bad_input(name, tmp_path, request, monkeypatch):
    if "prefect" in _needs(name):
        request.getfixturevalue("prefect_harness")
    folder = tmp_path / name
    shutil.copytree(CASES / name, folder)
    monkeypatch.chdir(folder)
    runner = CliRunner()
    for number, step in enumerate(_steps(name), start=1):
        result = runner.invoke(app, [*step["command"], "--config", "config.toml"])
        where = f"{name} step {number}: exit {result.exit_code}, stderr {result.stderr!r}"
        assert result.exit_code == step["exit_code"], where + f", exception {result.exception!r}"
        assert "Traceback" not in result.output and "Traceback" not in result.stderr, where
        if step["exit_code"] == 0:
            assert result.stderr.strip() == "", where
        else:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1, where
            assert step["stderr"] in lines[0], where
            assert lines[0].startswith("error: "), where
        if "stderr_absent" in step:
            assert step["stderr_absent"] not in result.stderr + result.output, where
        transactions, quarantined, reasons = _warehouse_counts(folder)
        if "transactions" in step:
            assert transactions == step["transactions"], where
        if "quarantined" in step:
            assert quarantined == step["quarantined"], where
        if "reason" in step:
            assert reasons and all(step["reason"] in r for r in reasons), (where, reasons)


@pytest.mark.parametrize("name", ["text_in_most_prices", "missing_mapped_column", "non_utf8_csv"])
def test_real_process(name, tmp_path):
    folder = tmp_path / name
    shutil.copytree(CASES / name, folder)
    step = _steps(name)[0]
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *step["command"], "--config", "config.toml"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == step["exit_code"], done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and step["stderr"] in lines[0], done.stderr
