"""The index page's entries are stored with each run: publishing reads them, never every run's findings;
a warehouse whose runs were recorded before gets each entry from its findings once."""

from __future__ import annotations

import json

import duckdb

from audits.findings import AuditResult
from audits.history import record_run, run_index
from audits.sample import MarketSpec, generate_market
from audits.warehouse import apply_schema
from tests.audits.conftest import audit, load_market, market_config

SPEC = MarketSpec(n_customers=200, days=3, n_products=10, seed=11)


def _result(con: duckdb.DuckDBPyConnection) -> AuditResult:
    return audit(con, market_config(), start=SPEC.start, end=SPEC.end)


def test_the_index_reads_stored_entries_and_fills_those_of_older_runs_once():
    con = duckdb.connect(":memory:")
    apply_schema(con)
    load_market(con, generate_market(SPEC))
    result = _result(con)
    record_run(con, result, index={"run": {"run_id": result.run.run_id}, "stored": True})
    older = result.run.run_id + "-older"
    con.execute("insert into audit_runs (run_id, scope, period_start, period_end, finished_at, findings_json) "
                "select $older, scope, period_start, period_end, finished_at - interval 1 day, findings_json "
                "from audit_runs", {"older": older})  # as a warehouse of before index entries holds it
    seen = []

    def entry_of(run: AuditResult) -> dict:
        seen.append(run.run.run_id)
        return {"run": {"run_id": older}, "stored": False}

    assert run_index(con, entry_of=entry_of) == [{"run": {"run_id": result.run.run_id}, "stored": True},
                                                 {"run": {"run_id": older}, "stored": False}]
    assert run_index(con, entry_of=entry_of)[1]["stored"] is False
    assert len(seen) == 1  # written back: the older run's findings were read once
    stored = con.execute("select index_json from audit_runs where run_id = $older", {"older": older}).fetchone()[0]
    assert json.loads(stored)["run"]["run_id"] == older
    con.close()
