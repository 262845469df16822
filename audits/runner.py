"""The check runner: build a period's audited lines once, run each configured check on them, judge.

`run_audit` builds the audited lines of a period (temp table `audit_lines`, audits/lines.py), runs the
consistency checks on them (audits/consistency.py), codes them for the disparity engine (temp table
`coded_lines`, audits/coding.py) and runs each disparity check (audits/disparity.py), each in isolation:
a check that errors is recorded as errored and the others still run. The disparity tests' p-values are
then corrected together with Benjamini-Hochberg before severities are assigned (audits/judgement.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Mapping
from typing import Any

import duckdb

from audits import __version__
from audits.catalogue import CONSISTENCY_CHECKS, DISPARITY_CHECKS
from audits.coding import Coding, code_lines
from audits.config import Config
from audits.consistency import run_consistency
from audits.contrasts import load_in_background
from audits.disparity import ContrastExecutor, RawTest, in_process_contrast, run_disparity
from audits.errors import one_line
from audits.findings import AuditResult, CheckRun, DataQuality, Finding, RunInfo
from audits.judgement import is_candidate, judge, min_customers_to_judge
from audits.lines import build_audit_lines
from audits.sqlfiles import SQL_DIR, SqlFileError

NO_LIST_PRICE = "the data has no list price (the price customers were shown)"
NEEDS_LIST_PRICE = ("discount_incidence", "discount_depth", "price_dispersion", "discount_policy")
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
    filters = filters or {}
    loading = load_in_background() if set(config.checks) & set(DISPARITY_CHECKS) else None
    build_audit_lines(con, config, period_start=period_start, period_end=period_end, filters=filters)
    n_lines, n_customers, fingerprint, has_list_price = con.execute(
        "select count(*), count(distinct customer_id), "
        "coalesce(sum(hash(customer_id, product_id, day, unit_price, list_price, quantity))::varchar, '0'), "
        "count(list_price) > 0 from audit_lines").fetchone()
    checks: list[CheckRun] = []
    consistency: list[Finding] = []
    raw_tests: list[RawTest] = []
    for check in config.checks:
        if (reason := _skip_reason(check, has_list_price)) is not None:
            checks.append(CheckRun(check, "skipped", 0.0, reason))
    skipped = {c.check for c in checks}
    for check in (c for c in config.checks if c in CONSISTENCY_CHECKS and c not in skipped):
        clock = time.monotonic()
        try:
            found = run_consistency(con, check, config)
        except CHECK_ERRORS as err:
            checks.append(CheckRun(check, "errored", time.monotonic() - clock, _reason(err)))
            continue
        if not found:
            reason = NOTHING_TO_CHECK.get(check, "no line has the columns this check needs")
            checks.append(CheckRun(check, "skipped", time.monotonic() - clock, reason))
            continue
        consistency.extend(found)
        checks.append(CheckRun(check, "ok", time.monotonic() - clock, None, len(found)))
    disparity = [c for c in config.checks if c in DISPARITY_CHECKS and c not in skipped]
    if disparity:
        coding = code_audit_lines(con, config)
        con.execute("drop table audit_lines")  # its narrow coded copy is all the disparity checks read
        if loading is not None:
            loading.result()  # the compiled loops and scipy, loaded while DuckDB built the lines
        for check in disparity:
            clock, notes = time.monotonic(), []
            try:
                tests = run_disparity(con, check, config, coding, contrast, notes=notes,
                                      is_candidate=lambda test: is_candidate(test, config))
            except CHECK_ERRORS as err:
                checks.append(CheckRun(check, "errored", time.monotonic() - clock, _reason(err)))
                continue
            raw_tests.extend(tests)
            checks.append(CheckRun(check, "ok", time.monotonic() - clock, "; ".join(notes) or None, len(tests)))
    elif loading is not None:
        loading.result()

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
    return AuditResult(run=run, data_quality=data_quality, findings=consistency + judge(raw_tests, config),
                       checks=sorted(checks, key=lambda c: config.checks.index(c.check)),
                       method=_method(config, filters))


def run_audits(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    windows: Mapping[str, tuple[dt.date, dt.date]],
    *,
    data_quality: DataQuality,
    filters: Mapping[str, str] | None = None,
    run_ids: Mapping[str, str] | None = None,
    contrast: ContrastExecutor = in_process_contrast,
) -> dict[str, AuditResult]:
    """Audit each window (scope -> first and last day), one after another, as `run_audit` would."""
    return {scope: run_audit(con, config, period_start=start, period_end=end, data_quality=data_quality,
                             scope=scope, filters=filters, run_id=(run_ids or {}).get(scope), contrast=contrast)
            for scope, (start, end) in windows.items()}


def code_audit_lines(con: duckdb.DuckDBPyConnection, config: Config) -> Coding:
    """Temp table `coded_lines`: the audited lines with the integer codes the disparity engine groups by."""
    groupings = [(a,) for a in config.attributes] + [tuple(i) for i in config.intersections]
    if "loyalty_penalty" in config.checks:
        groupings.append(("tenure",))
    return code_lines(con, groupings=groupings, segment_by=tuple(config.segment_by), controls=tuple(config.controls))


def _skip_reason(check: str, has_list_price: bool) -> str | None:
    if not (SQL_DIR / "checks" / f"{check}.sql").exists():
        return "not available in this version"
    if check in NEEDS_LIST_PRICE and not has_list_price:
        return NO_LIST_PRICE
    return None


def _reason(err: BaseException) -> str:
    return one_line(f"{type(err).__name__}: {err}", limit=300)


def _method(config: Config, filters: Mapping[str, str]) -> dict[str, Any]:
    """How the run's figures were reached, as findings.json states it."""
    return {
        "thresholds": config.thresholds(),
        "attributes": list(config.attributes),
        "intersections": [list(i) for i in config.intersections],
        "segment_by": list(config.segment_by),
        "controls": list(config.controls),
        "reference": dict(config.reference),
        "checks": list(config.checks),
        "filters": dict(filters),
        "tenure_days": config.tenure_days,
        "confidence": config.confidence,
        "min_customers_to_judge": min_customers_to_judge(config),
        "inference": "within-cell fixed-effects contrasts; customer-clustered variance with residuals "
                     "scaled for the cell means' leverage; Welch-Satterthwaite degrees of freedom; "
                     "Benjamini-Hochberg across all tests of the run",
        "adjusted_estimate": "additive fixed effects for product x day and for each control (price checks; "
                             "fitted for the tests that could be flagged)",
        "intersection_rule": "an intersection whose excess over its components is not adverse is noted as "
                             "explained_by its flagged components instead of flagged",
    }
