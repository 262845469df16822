"""The check runner: one SQL file per check, run over the warehouse; Python receives aggregates only.

`run_audit` builds the audited lines for a period once (temp table `audit_lines`), then runs each
configured check in isolation: a check that errors is recorded as errored and the others still run.
Consistency checks (price_arithmetic, price_dispersion, discount_policy) count rule breaches; disparity
checks (audits/disparity.py) estimate every group against its reference within cells of product x day
x controls; their p-values are corrected together with Benjamini-Hochberg before severities are
assigned (audits/judgement.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import duckdb

from audits import __version__
from audits.config import Config
from audits.coding import Coding, code_lines
from audits.contrasts import load_in_background
from audits.disparity import (  # noqa: F401  (re-exported: the runner is the audit's public face)
    INTERSECTION,
    METRICS,
    ContrastExecutor,
    Dimension,
    RawTest,
    in_process_contrast,
    plan_dimensions,
    run_disparity,
)
from audits.errors import ConfigError, one_line
from audits.findings import CONSISTENCY_CHECKS, AuditResult, CheckRun, DataQuality, Finding, RunInfo
from audits.judgement import is_candidate, judge, min_customers_to_judge
from audits.sqlfiles import SQL_DIR, SqlFileError, load_sql
from audits.warehouse import quote_identifier, table_columns
from audits.wording import summarize

UNKNOWN_COLUMN = (
    "config key '{key}' names column {column!r}, which is not in the warehouse; "
    "known columns are {known}. Fix the config or map the column in the source"
)
COMPUTED_COLUMNS = ("quantity_band", "tenure")
NEEDS_LIST_PRICE = ("discount_incidence", "discount_depth", "price_dispersion", "discount_policy")
NO_LIST_PRICE = "the data has no list price (the price customers were shown)"
NOTHING_TO_CHECK = {
    "price_arithmetic": "the data has none of the amounts this check compares (line_total; discount_amount "
                        "with list_price)",
}
# What a failing check may raise; anything else is a bug of ours and stops the run.
CHECK_ERRORS = (duckdb.Error, ArithmeticError, ValueError, SqlFileError)


def run_audit(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    *,
    period_start: dt.date,
    period_end: dt.date,
    data_quality: DataQuality,
    scope: str = "default",
    filters: Mapping[str, str] | None = None,
    run_id: str | None = None,
    contrast: ContrastExecutor = in_process_contrast,
) -> AuditResult:
    """Audit the lines in [period_start, period_end] and return the findings (status not yet compared)."""
    started_at = dt.datetime.now(dt.timezone.utc)
    loading = load_in_background() if set(config.checks) & set(METRICS) else None
    build_audit_lines(con, config, period_start=period_start, period_end=period_end, filters=filters or {})
    n_lines, n_customers, fingerprint = con.execute(
        "select count(*), count(distinct customer_id), "
        "coalesce(sum(hash(customer_id, product_id, day, unit_price, list_price, quantity))::varchar, '0') "
        "from audit_lines"
    ).fetchone()
    has_list_price = con.execute("select count(list_price) > 0 from audit_lines").fetchone()[0]

    coding: Coding | None = None
    checks: list[CheckRun] = []
    raw_tests: list[RawTest] = []
    consistency: list[Finding] = []
    # consistency checks first: they read audit_lines, which the disparity checks no longer need
    for check in sorted(config.checks, key=lambda c: c in METRICS):
        if check in METRICS and coding is None:
            coding = code_audit_lines(con, config)
            con.execute("drop table audit_lines")  # its narrow coded copy is all that is read from now on
        clock = time.monotonic()
        if not (SQL_DIR / "checks" / f"{check}.sql").exists():
            checks.append(CheckRun(check, "skipped", 0.0, "not available in this version"))
            continue
        if check in NEEDS_LIST_PRICE and not has_list_price:
            checks.append(CheckRun(check, "skipped", 0.0, NO_LIST_PRICE))
            continue
        notes: list[str] = []
        try:
            if check in CONSISTENCY_CHECKS:
                found = _run_consistency(con, check, config)
                if not found:
                    reason = NOTHING_TO_CHECK.get(check, "no line has the columns this check needs")
                    checks.append(CheckRun(check, "skipped", time.monotonic() - clock, reason))
                    continue
                consistency.extend(found)
                n_tests = len(found)
            else:
                assert coding is not None
                tests = run_disparity(con, check, config, coding, contrast, notes=notes,
                                      is_candidate=lambda test: is_candidate(test, config))
                raw_tests.extend(tests)
                n_tests = len(tests)
        except CHECK_ERRORS as err:
            reason = one_line(f"{type(err).__name__}: {err}", limit=300)
            checks.append(CheckRun(check, "errored", time.monotonic() - clock, reason))
            continue
        checks.append(CheckRun(check, "ok", time.monotonic() - clock, "; ".join(notes) or None, n_tests))

    if loading is not None:
        loading.join()
    checks.sort(key=lambda c: config.checks.index(c.check))
    findings = consistency + judge(raw_tests, config)
    finished_at = dt.datetime.now(dt.timezone.utc)
    run = RunInfo(
        run_id=run_id or f"{finished_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
        period_start=period_start.isoformat(),
        period_end=period_end.isoformat(),
        transactions=int(n_lines),
        customers=int(n_customers),
        config_sha256=config.sha256,
        data_sha256=hashlib.sha256(f"{n_lines}:{fingerprint}".encode()).hexdigest(),
        version=__version__,
        scope=scope,
        started_at=started_at.isoformat(timespec="seconds"),
        finished_at=finished_at.isoformat(timespec="seconds"),
    )
    method = {
        "thresholds": config.thresholds(),
        "attributes": list(config.attributes),
        "intersections": [list(i) for i in config.intersections],
        "segment_by": list(config.segment_by),
        "controls": list(config.controls),
        "reference": dict(config.reference),
        "checks": list(config.checks),
        "filters": dict(filters or {}),
        "tenure_days": config.tenure_days,
        "confidence": 0.95,
        "min_customers_to_judge": min_customers_to_judge(config),
        "inference": "within-cell fixed-effects contrasts; customer-clustered variance with residuals "
                     "scaled for the cell means' leverage; Welch-Satterthwaite degrees of freedom; "
                     "Benjamini-Hochberg across all tests of the run",
        "adjusted_estimate": "additive fixed effects for product x day and for each control (price checks; "
                             "fitted for the tests that could be flagged)",
        "intersection_rule": "an intersection whose excess over its components is not adverse is noted as "
                             "explained_by its flagged components instead of flagged",
    }
    return AuditResult(run=run, data_quality=data_quality, findings=findings, checks=checks, method=method)


def build_audit_lines(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    *,
    period_start: dt.date,
    period_end: dt.date,
    filters: Mapping[str, str],
) -> dict[str, str]:
    """Create temp table `audit_lines`; returns audited column -> SQL source (validated identifiers)."""
    tx_columns = set(table_columns(con, "transactions"))
    customer_columns = set(table_columns(con, "customers"))

    def resolve(key: str, column: str) -> str:
        if column in COMPUTED_COLUMNS:
            return column
        if column in customer_columns and column not in ("customer_id", "batch_id"):
            return f"c.{quote_identifier(column)}"
        if column in tx_columns and column not in ("batch_id", "source"):
            return f"t.{quote_identifier(column)}"
        known = sorted((tx_columns | customer_columns | set(COMPUTED_COLUMNS)) - {"batch_id", "source"})
        raise ConfigError(UNKNOWN_COLUMN.format(key=key, column=column, known=", ".join(known)))

    wanted: dict[str, str] = {}
    for key, names in (
        ("audit.attributes", config.attributes),
        ("audit.intersections", tuple(c for combo in config.intersections for c in combo)),
        ("audit.segment_by", config.segment_by),
        ("audit.controls", config.controls),
        ("filters", tuple(filters)),
    ):
        for name in names:
            wanted[name] = resolve(key, name)
    extra = "".join(
        f", cast({source} as varchar) as {quote_identifier(name)}"
        for name, source in wanted.items()
        if name not in COMPUTED_COLUMNS and name not in ("category", "channel")
    )
    where = "".join(
        f" and cast({wanted[name]} as varchar) = $filter_{i}" for i, name in enumerate(filters)
    )
    # non-product lines (postage, fees, manual adjustments) priced per order, not per product
    excluded = [str(p) for p in config.exclude_products]
    if excluded:
        where += " and not list_contains($excluded_products, t.product_id)"
    params: dict[str, Any] = {
        "start": dt.datetime.combine(period_start, dt.time()),
        "end": dt.datetime.combine(period_end + dt.timedelta(days=1), dt.time()),
        **{f"band_{i}": float(b) for i, b in enumerate(config.quantity_bands)},
        "tenure_days": config.tenure_days,
        **{f"filter_{i}": str(value) for i, value in enumerate(filters.values())},
        **({"excluded_products": excluded} if excluded else {}),
    }
    controls = [quote_identifier(c) for c in config.controls]
    # the highest band at or below the quantity (bands ascending), '≥<band>'; a CASE rather than a lambda
    # over the list of bands, which costs 8 times as much (10M lines: 0.63 -> 0.08 s)
    bands = "".join(f"when t.quantity >= $band_{i} then '≥' || cast($band_{i} as varchar) "
                    for i in reversed(range(len(config.quantity_bands))))
    quantity_band = f"case {bands}else 'other' end" if bands else "'other'"
    con.execute(f"""
        create or replace temp table audit_lines as
        with
        first_purchase as (
            select customer_id, min(timestamp)::date as first_day from transactions group by customer_id),
        data_start as (
            select min(timestamp)::date as first_day from transactions),
        lines as (
            select
                t.customer_id, t.product_id, t.timestamp::date as day, t.currency,
                t.category, t.channel, t.quantity, t.list_price, t.unit_price, t.discount_amount,
                t.line_total, t.discount_code,
                coalesce(t.unit_price < t.list_price, false) or coalesce(t.discount_amount > 0, false)
                    as is_discounted,
                -- the discount as a fraction of the list price, from the unit price or from a line
                -- discount amount when the unit price was recorded before the discount
                case when t.list_price > 0 then greatest(1 - t.unit_price / t.list_price,
                    coalesce(t.discount_amount / (t.list_price * t.quantity), 0)) end as discount_pct,
                -- without customer_since, tenure comes from the first purchase in the warehouse, which
                -- says nothing about customers seen within tenure_days of the data's start: unknown (null)
                case when c.customer_since is null
                          and date_diff('day', s.first_day, t.timestamp::date) <= $tenure_days then null
                     when date_diff('day', coalesce(c.customer_since, f.first_day), t.timestamp::date)
                          > $tenure_days then 'existing'
                     else 'new' end as tenure,
                {quantity_band} as quantity_band
                {extra}
            from transactions as t
            left join customers as c using (customer_id)
            left join first_purchase as f using (customer_id)
            cross join data_start as s
            where t.timestamp >= $start and t.timestamp < $end {where}
        )
        select
            *,
            -- the fixed effect every comparison shares: the same product on the same day, in one currency
            hash(product_id, day, currency) as fe_key,
            -- the within-cell comparison's cell: that, and every configured control
            hash(product_id, day, currency{"".join(", " + c for c in controls)}) as cell_key
        from lines""", params)
    return wanted


def code_audit_lines(con: duckdb.DuckDBPyConnection, config: Config) -> Coding:
    """Temp table `coded_lines`: the audit lines with the integer codes the disparity engine groups by."""
    groupings = [(a,) for a in config.attributes] + [tuple(i) for i in config.intersections]
    if "loyalty_penalty" in config.checks:
        groupings.append(("tenure",))
    return code_lines(con, groupings=groupings, segment_by=tuple(config.segment_by),
                      controls=tuple(config.controls))


def _run_consistency(con: duckdb.DuckDBPyConnection, check: str, config: Config) -> list[Finding]:
    """Consistency checks return one row per rule: (metric, count, total); a count above 0 is a finding.

    A rule with total 0 had nothing to check (the data lacks its columns) and is not reported.
    """
    query = load_sql(f"checks/{check}")
    rows = con.execute(query.sql, _params(query.params, config)).fetchall()
    findings = []
    for metric, count, total in rows:
        if not total:
            continue
        severity = "low" if count == 0 else ("high" if count / total >= 0.001 else "medium")
        finding = Finding(
            check=check, attribute=None, group=None, reference=None, segment=None, metric=metric,
            estimate=count / total, ci_low=None, ci_high=None, p_value=None, q_value=None,
            n_customers_group=None, n_customers_reference=None, count=int(count), severity=severity,
            status="new", summary="",
        )
        findings.append(replace(finding, summary=summarize(finding, controls=config.controls,
                                                            total=int(total))))
    return findings


def _params(declared: tuple[str, ...], config: Config) -> dict[str, Any]:
    available = {
        "max_discount_pct": config.max_discount_pct,
        "tenure_days": config.tenure_days,
        "min_price_gap": config.min_price_gap,
    }
    return {name: available[name] for name in declared}
