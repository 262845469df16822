"""Run-over-run: compare a result with the previous run of the same scope, and remember runs.

A finding is `new` when it is flagged now but was not in the previous run, `persisting` when it
was flagged in both (or unflagged in both), and `resolved` when it was flagged before and is not
now. The last runs' estimates travel with the result (`history`) so the report can draw trends
without touching the warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import duckdb

from audits.findings import AuditResult, HistoryPoint

HISTORY_RUNS = 12


def compare_with_previous(con: duckdb.DuckDBPyConnection, result: AuditResult) -> AuditResult:
    """Set each finding's status against the previous run of the same scope and attach history."""
    rows = con.execute(
        "select findings_json from audit_runs where scope = $scope and run_id <> $run "
        "order by finished_at desc limit $n",
        {"scope": result.run.scope, "run": result.run.run_id, "n": HISTORY_RUNS},
    ).fetchall()
    previous_runs = [AuditResult.from_dict(json.loads(r[0])) for r in rows]
    if not previous_runs:
        return result
    previous = {f.key: f for f in previous_runs[0].findings}
    findings = []
    for finding in result.findings:
        before = previous.get(finding.key)
        if before is None:
            status = "new"
        elif finding.is_flagged:
            status = "persisting" if before.is_flagged and before.status != "resolved" else "new"
        else:
            status = "resolved" if before.is_flagged and before.status != "resolved" else "persisting"
        findings.append(replace(finding, status=status))
    history = [
        HistoryPoint(
            run_id=run.run.run_id,
            period_end=run.run.period_end,
            estimates={f.key: {"estimate": f.estimate, "ci_low": f.ci_low, "ci_high": f.ci_high}
                       for f in run.findings if not f.suppressed},
        )
        for run in reversed(previous_runs)
    ]
    return replace(result, findings=findings, history=history)


def record_run(con: duckdb.DuckDBPyConnection, result: AuditResult) -> None:
    """Store the result so the next run of the same scope can compare with it."""
    con.execute(
        "insert into audit_runs values ($run, $scope, $start, $end, $finished, $json)",
        {"run": result.run.run_id, "scope": result.run.scope,
         "start": dt.date.fromisoformat(result.run.period_start), "end": dt.date.fromisoformat(result.run.period_end),
         "finished": dt.datetime.now(), "json": result.to_json()},
    )


def all_runs(con: duckdb.DuckDBPyConnection) -> list[AuditResult]:
    """Every recorded run, newest first (for the index page)."""
    rows = con.execute("select findings_json from audit_runs order by finished_at desc").fetchall()
    return [AuditResult.from_dict(json.loads(r[0])) for r in rows]
