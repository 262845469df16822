"""An audit that could not look says so (issue 20), and a request that would single customers out or change
what an audit concludes is refused (issue 21): through the real CLI as a subprocess, as a user meets it.

Each refusal: exit 2, one line on stderr naming what the user typed, no traceback, no data value (no
customer id) in any output, and the warehouse as it was. Each stop over nothing: exit 3, one line naming
the period and filters, and a report that says 'not assessed' (amber), never green.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import duckdb
import pytest

from audits.findings import AuditResult
from tests.flows.conftest import PRICEPARITY, direct_env


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PRICEPARITY), *args], capture_output=True, text=True, env=direct_env(), timeout=300)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


def _customer_ids(config: Path) -> list[str]:
    warehouse = config.parent / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return [row[0] for row in con.execute("select distinct customer_id from transactions").fetchall()]
    finally:
        con.close()


def _counts(config: Path) -> tuple[int, int]:
    con = duckdb.connect(str(config.parent / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute("select (select count(*) from transactions), (select count(*) from audit_runs)").fetchone()
    finally:
        con.close()


@pytest.mark.parametrize(("args", "says"), [
    (("--from", "2030-01-01", "--to", "2030-01-31"), "nothing to audit in on-demand 2030-01-01 to 2030-01-31: no lines"),
    (("--filter", "category=toys"), "with category=toys: no lines"),
])
def test_an_audit_over_nothing_stops_with_exit_3_and_an_amber_report(filled_workspace, tmp_path, args, says):
    out = tmp_path / "nothing"
    done = _cli("audit", "--config", str(filled_workspace), "--no-ingest", "--out", str(out), *args)
    assert done.returncode == 3, done.stderr
    line = _one_error_line(done)
    assert says in line and "the report says 'not assessed'" in line and str(out) in line
    result = AuditResult.read(out / "findings.json")
    assert result.verdict == "not_assessed" and result.run.transactions == 0
    assert {c.outcome for c in result.checks} == {"not_assessed"}
    assert {c.reason for c in result.checks} == {"no lines in the period after filters"}
    page = (out / "report.html").read_text(encoding="utf-8")
    assert re.search(r'class="[^"]*verdict[^"]*not-assessed', page) and "Not assessed" in page


def test_the_period_is_stated_where_it_is_decided(filled_workspace, tmp_path):
    """No --from/--to: all the data in the warehouse, and the console and findings.json say so and why."""
    out = tmp_path / "all"
    done = _cli("audit", "--config", str(filled_workspace), "--no-ingest", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "all the data in the warehouse (narrow with --from/--to)" in done.stdout.splitlines()[0]
    result = AuditResult.read(out / "findings.json")
    assert (result.run.period_start, result.run.period_end) == ("2026-08-01", "2026-09-14")  # the whole market
    assert result.run.period_reason == ("all the data in the warehouse, 2026-08-01 to 2026-09-14: no period was "
                                        "given (--from/--to)")
    assert f"({result.run.period_reason})" in done.stdout
    assert re.search(r"^(flagged|clear): \d+ causes? \(\d+ flagged tests\), \d+ clear, \d+ suppressed, \d+ not "
                     r"assessed; \d+ rows quarantined$", done.stdout.splitlines()[-2])
    help_text = _cli("audit", "--help").stdout
    assert "default: the first day of data" in " ".join(re.sub("[│╭╮╰╯─]", " ", help_text).split())


@pytest.mark.parametrize(("args", "says"), [
    (("--attribute", "customer_id"), "--attribute customer_id"),
    (("--segment-by", "customer_id"), "--segment-by customer_id"),
    (("--attribute", "transaction_id"), "--attribute transaction_id"),
])
def test_an_identifier_is_never_an_attribute_or_segment(filled_workspace, tmp_path, args, says):
    before = _counts(filled_workspace)
    done = _cli("audit", "--config", str(filled_workspace), "--no-ingest", "--out", str(tmp_path / "ids"), *args)
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done)
    assert "identifies" in line and "must never list them" in line, line
    ids = set(_customer_ids(filled_workspace))
    assert not any(token in ids for token in re.findall(r"[\w-]+", done.stdout + done.stderr))
    assert not (tmp_path / "ids" / "report.html").exists()
    assert _counts(filled_workspace) == before


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert old in text
    config.write_text(text.replace(old, new), encoding="utf-8")


def test_a_reference_group_that_does_not_exist_is_refused_not_used_to_hide_gaps(filled_workspace, tmp_path):
    _edit(filled_workspace, "[audit]\n", '[audit]\nreference.gender = "Q"\n')
    before = _counts(filled_workspace)
    done = _cli("audit", "--config", str(filled_workspace), "--no-ingest", "--out", str(tmp_path / "q"))
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done)
    assert "audit.reference.gender" in line and "'Q'" in line and "F, M, X" in line
    assert _counts(filled_workspace) == before


def test_an_attribute_with_about_one_value_per_customer_is_refused(filled_workspace, tmp_path):
    """A column of the customers table that singles customers out (a postcode, say), added to the warehouse."""
    con = duckdb.connect(str(filled_workspace.parent / "warehouse.duckdb"))
    con.execute("alter table customers add column postcode varchar")
    con.execute("update customers set postcode = 'PC' || substr(md5(customer_id), 1, 6)")
    con.close()
    done = _cli("audit", "--config", str(filled_workspace), "--no-ingest", "--attribute", "postcode",
                "--out", str(tmp_path / "pc"))
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done)
    assert "postcode" in line and ("one value per customer" in line or "audit.max_groups" in line)
    assert "PC" not in done.stdout + done.stderr.replace("postcode", "")


def test_an_attribute_with_more_groups_than_max_groups_is_refused(filled_workspace, tmp_path):
    """150 values over the market's customers, about ten customers each: no single customer stands out, but a
    run would test each value against the rest (issue 21 item 11)."""
    con = duckdb.connect(str(filled_workspace.parent / "warehouse.duckdb"))
    con.execute("alter table customers add column store varchar")
    con.execute("update customers set store = 'S' || (hash(customer_id) % 150)")
    con.close()
    before = _counts(filled_workspace)
    done = _cli("audit", "--config", str(filled_workspace), "--no-ingest", "--attribute", "store",
                "--out", str(tmp_path / "st"))
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done)
    assert "names column 'store', which has about" in line and "more than audit.max_groups = 100" in line, line
    assert not (tmp_path / "st" / "report.html").exists()
    assert _counts(filled_workspace) == before


def test_the_nightly_audits_a_snapshot_once_and_says_so(tmp_path):
    """A loan book without dates has no window to roll: the nightly audits its rows once, as the scope
    'snapshot' dated the day of the run, and says why, instead of 'the last 30 days' and 'the month to
    date' over the same rows."""
    import datetime as dt
    import shutil

    from audits.sample import write_market
    from flows.pipeline import DIRECT, PERIOD_SNAPSHOT, SNAPSHOT_SCOPE, nightly

    (tmp_path / "examples").mkdir()
    config = shutil.copy(Path(__file__).resolve().parents[2] / "examples" / "lending.toml", tmp_path / "examples")
    write_market(tmp_path / "out" / "lending" / "landing", kind="lending", size=600)
    reports = nightly(str(config), run=DIRECT)
    assert list(reports) == [SNAPSHOT_SCOPE]
    result = AuditResult.read(Path(reports[SNAPSHOT_SCOPE]).parent / "findings.json")
    assert result.run.period_reason == PERIOD_SNAPSHOT
    assert result.run.period_start == result.run.period_end == dt.date.today().isoformat()
    assert result.run.transactions == 600 and result.run.scope == SNAPSHOT_SCOPE
