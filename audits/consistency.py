"""Consistency checks: is the price list applied as published? Each check's SQL file marks rule breaches.

A consistency check's SQL file (sql/checks/) reads `audit_lines` and returns one row per line and rule
that applies to it: the rule (`metric`), the line (its rowid), whether it breaches the rule, the amount
the breach is about and the line's revenue. Each rule with lines to check is one finding: its count of
breaching lines out of those checked (summed straight from the check's rows), and where they concentrate
(`details`): for a judged rule the top products, codes, channels and days by lines and amount, from its
breaching lines (only those are kept); for dispersion rules, the worst cells, from the audited lines per
cell. A judged rule's breaching lines go to breaches.csv (at most `output.max_breach_rows` per rule,
largest amount first): transaction ids, product, day, amounts, never a customer id.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import duckdb

from audits.catalogue import CHECKS_BY_NAME
from audits.config import Config
from audits.findings import Finding
from audits.sqlfiles import Fragment, Ident, idents, load_sql
from audits.wording import summarize

TOP_VALUES = 5  # values listed per column in a finding's details
TOP_CELLS = 10  # worst cells listed for a dispersion rule
WHERE_TO_LOOK = ("product_id", "discount_code", "channel", "day")
# the price each dispersion rule compares within a cell, and whether two prices closer than
# audit.price_tolerance count as one (as sql/checks/price_dispersion.sql has it)
DISPERSION_PRICE = {"list_price_dispersion": ("list_price", False), "paid_price_dispersion": ("unit_price", True)}
NOT_JUDGED = ("reported, not judged: with list prices, paid prices differ by design where discounts apply; "
              "list_price_dispersion judges whether one price was charged")


def run_consistency(con: duckdb.DuckDBPyConnection, check: str, config: Config, *, has_list_price: bool,
                    currency: str | None) -> tuple[list[Finding], Any]:
    """The check's findings (one per rule that had lines to check) and its breaching lines (Arrow).
    `currency`: the audited lines' one currency, or None when they have several (their amounts add them)."""
    query = load_sql(CHECKS_BY_NAME[check].sql)
    rules, values = Fragment(query.sql), query.bind(config.sql_values())
    summary = con.execute(load_sql("audit/breach_summary").render(rules=rules), values).fetchall()
    judged = {metric: not (metric == "paid_price_dispersion" and has_list_price) for metric, *_ in summary}
    # the breaching lines, kept only for the rules whose details list lines
    listed = [metric for metric, count, *_ in summary if count and judged[metric]]
    findings, tables = [], []
    try:
        if listed:
            con.execute(load_sql("audit/breaches").render(rules=rules), {**values, "metrics": listed})
        for metric, count, total, amount, revenue, revenue_total in summary:
            details: dict[str, Any] = {"lines_checked": int(total), "currency": currency, "amount": float(amount),
                                       "revenue": float(revenue),
                                       "revenue_share": float(revenue) / float(revenue_total) if revenue_total else None}
            if metric in listed:  # where to look: not for differences the rule expects (discounts)
                details["top"] = _top(con, metric)
            if count and metric in DISPERSION_PRICE:
                details["cells"] = _cells(con, metric, config)
            if metric in listed and config.max_breach_rows:
                sql, params = load_sql("audit/breach_lines").prepare(
                    {"check": check, "metric": metric, "max_rows": config.max_breach_rows})
                tables.append(con.sql(sql, params=params).to_arrow_table())
                details["breach_rows"] = min(int(count), config.max_breach_rows)
            findings.append(_finding(check, metric, int(count), int(total), details, config, judged=judged[metric]))
    finally:
        con.execute("drop table if exists breaches")
    return findings, tables


def _finding(check: str, metric: str, count: int, total: int, details: dict[str, Any], config: Config, *,
             judged: bool) -> Finding:
    share = count / total
    severity = "low" if count == 0 or not judged else ("high" if share >= config.consistency_high_share else "medium")
    outcome = "not_assessed" if not judged else ("flagged" if count else "clear")
    finding = Finding(
        check=check, attribute=None, group=None, reference=None, segment=None, metric=metric,
        estimate=share, ci_low=None, ci_high=None, p_value=None, q_value=None,
        n_customers_group=None, n_customers_reference=None, count=count, severity=severity,
        status="new", summary="", outcome=outcome, reason=None if judged else NOT_JUDGED, details=details,
    )
    return replace(finding, summary=summarize(finding, config, total=total))


def _top(con: duckdb.DuckDBPyConnection, metric: str) -> dict[str, list[dict[str, Any]]]:
    """The values of each WHERE_TO_LOOK column with the most breaching lines of `metric` (one query for all)."""
    sql, params = load_sql("audit/breach_top").prepare({"metric": metric, "top": TOP_VALUES},
                                                       columns=idents(WHERE_TO_LOOK))
    top: dict[str, list[dict[str, Any]]] = {column: [] for column in WHERE_TO_LOOK}
    for position, value, lines, amount in con.execute(sql, params).fetchall():
        top[WHERE_TO_LOOK[position]].append({"value": value, "lines": int(lines), "amount": float(amount)})
    return top


def _cells(con: duckdb.DuckDBPyConnection, metric: str, config: Config) -> list[dict[str, Any]]:
    """The worst cells of a dispersion rule (sql/audit/breach_cells.sql), read from the audited lines."""
    price, tolerance = DISPERSION_PRICE[metric]
    sql, params = load_sql("audit/breach_cells").prepare(
        {"tolerance": config.price_tolerance if tolerance else 0, "top": TOP_CELLS}, price=Ident(price),
        controls=idents(config.controls))
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    out = []
    for row in cursor.fetchall():
        cell = dict(zip(names, row, strict=True))
        out.append({"product_id": cell["product_id"], "day": str(cell["day"]), "currency": cell["currency"],
                    "controls": {c: cell[c] for c in config.controls},
                    "low": float(cell["low"]), "high": float(cell["high"]),
                    "spread": float(cell["spread"]) if cell["spread"] is not None else None,
                    "lines": int(cell["lines"]), "prices": int(cell["prices"])})
    return out
