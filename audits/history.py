"""Run-over-run: compare a result with the previous run of the same scope, and remember runs.

Causes keep their status the same way (audits/causes.py gives a cause the same id run over run): new,
persisting, or resolved (in the previous run, not in this one: listed with status resolved).

A finding is `new` when it is flagged now but was not in the previous run, `persisting` when it
was flagged in both (or unflagged in both), and `resolved` when it was flagged before and is not
now. The last runs' estimates travel with the result (`history`) so the report can draw trends
without touching the warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import duckdb

from audits.findings import AuditResult, HistoryPoint

HISTORY_RUNS = 12


def compare_with_previous(con: duckdb.DuckDBPyConnection, result: AuditResult) -> AuditResult:
    """Set each finding's and cause's status against the previous run of the same scope, say what changed
    since then (config, thresholds), and attach history."""
    rows = con.execute(
        "select findings_json from audit_runs where scope = $scope and run_id <> $run "
        "order by finished_at desc limit $n",
        {"scope": result.run.scope, "run": result.run.run_id, "n": HISTORY_RUNS},
    ).fetchall()
    previous_runs = [AuditResult.from_dict(json.loads(r[0])) for r in rows]
    if not previous_runs:
        return result
    last = previous_runs[0]
    previous = {f.key: f for f in last.findings}
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
    before_causes = {c.id: c for c in last.causes if c.status != "resolved"}
    causes = [replace(c, status="persisting" if c.id in before_causes else "new") for c in result.causes]
    now = {c.id for c in causes}
    causes += [replace(c, status="resolved") for c in before_causes.values() if c.id not in now]
    history = [
        HistoryPoint(
            run_id=run.run.run_id,
            period_end=run.run.period_end,
            estimates={f.key: {"estimate": f.estimate, "ci_low": f.ci_low, "ci_high": f.ci_high}
                       for f in run.findings if not f.suppressed},
        )
        for run in reversed(previous_runs)
    ]
    return replace(result, findings=findings, history=history, causes=causes,
                   since_previous=_since(last, result, causes))


def _since(last: AuditResult, result: AuditResult, causes: list) -> dict:
    """What a reader of this run should know about the previous one: causes new / persisting / resolved, and
    whether the config or the thresholds changed in between."""
    before = last.method.get("thresholds", {})
    now = result.method.get("thresholds", {})
    return {
        "run_id": last.run.run_id,
        "period_end": last.run.period_end,
        "causes": {status: sum(c.status == status for c in causes) for status in ("new", "persisting", "resolved")},
        "config_changed": last.run.config_sha256 != result.run.config_sha256,
        "thresholds_changed": {name: [before.get(name), value] for name, value in now.items()
                               if before.get(name) != value},
        "scope_changed": {key: [last.method.get(key), result.method.get(key)]
                          for key in ("attributes", "intersections", "segment_by", "controls", "checks", "filters")
                          if last.method.get(key) != result.method.get(key)},
    }


def record_run(con: duckdb.DuckDBPyConnection, result: AuditResult, *, index: Mapping[str, Any]) -> None:
    """Store the result so the next run of the same scope can compare with it, with `index`: what the index
    page shows of it (reports/render.py: index_entry), so the page never parses the runs' findings."""
    con.execute(
        "insert into audit_runs (run_id, scope, period_start, period_end, finished_at, findings_json, index_json) "
        "values ($run, $scope, $start, $end, $finished, $json, $index)",
        {"run": result.run.run_id, "scope": result.run.scope,
         "start": dt.date.fromisoformat(result.run.period_start), "end": dt.date.fromisoformat(result.run.period_end),
         "finished": dt.datetime.now(), "json": result.to_json(), "index": json.dumps(index, ensure_ascii=False)},
    )


def run_index(con: duckdb.DuckDBPyConnection, *, entry_of: Callable[[AuditResult], Mapping[str, Any]]
              ) -> list[dict[str, Any]]:
    """What the index shows of every recorded run, newest first. Runs recorded before index entries were
    stored get theirs from their findings once (`entry_of`), written back."""
    for run_id, findings_json in con.execute(
            "select run_id, findings_json from audit_runs where index_json is null").fetchall():
        entry = entry_of(AuditResult.from_dict(json.loads(findings_json)))
        con.execute("update audit_runs set index_json = $index where run_id = $run",
                    {"index": json.dumps(entry, ensure_ascii=False), "run": run_id})
    rows = con.execute("select index_json from audit_runs order by finished_at desc").fetchall()
    return [json.loads(r[0]) for r in rows]
