"""Consistency checks: is the price list applied as published? Each check's SQL file counts rule breaches.

A consistency check's SQL (sql/checks/) reads `audit_lines` and returns one row per rule: (metric, count,
total). A rule with total 0 had nothing to check (the data lacks its columns) and is not reported; any
other rule is one finding, with its count of breaching lines.
"""

from __future__ import annotations

from dataclasses import replace

import duckdb

from audits.catalogue import CHECKS_BY_NAME
from audits.config import Config
from audits.findings import Finding
from audits.sqlfiles import load_sql
from audits.wording import summarize

# a rule breached on at least this share of its lines is high severity
HIGH_SHARE = 0.001


def run_consistency(con: duckdb.DuckDBPyConnection, check: str, config: Config) -> list[Finding]:
    """The check's findings, one per rule that had lines to check."""
    query = load_sql(CHECKS_BY_NAME[check].sql)
    rows = con.execute(query.sql, query.bind(config.sql_values())).fetchall()
    findings = []
    for metric, count, total in rows:
        if not total:
            continue
        severity = "low" if count == 0 else ("high" if count / total >= HIGH_SHARE else "medium")
        finding = Finding(
            check=check, attribute=None, group=None, reference=None, segment=None, metric=metric,
            estimate=count / total, ci_low=None, ci_high=None, p_value=None, q_value=None,
            n_customers_group=None, n_customers_reference=None, count=int(count), severity=severity,
            status="new", summary="", outcome="flagged" if count else "clear",
        )
        findings.append(replace(finding, summary=summarize(finding, config, total=int(total))))
    return findings

