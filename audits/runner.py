"""The check runner: build a period's audited lines once, run each configured check on them, judge.

`run_audit` builds the audited lines of a period (temp table `audit_lines`, audits/lines.py), runs the
consistency checks on them (audits/consistency.py), codes them for the disparity engine (temp table
`coded_lines`, audits/coding.py) and runs each disparity check (audits/disparity.py), each in isolation:
a check that errors is recorded as errored and the others still run. The disparity tests' p-values are
then corrected together with Benjamini-Hochberg before severities are assigned (audits/judgement.py).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import replace
from typing import Any, NamedTuple

import duckdb

from audits import __version__
from audits.catalogue import CHECKS_BY_NAME, CONSISTENCY_CHECKS, DISPARITY_CHECKS
from audits.coding import Coding, code_lines
from audits.config import Config
from audits.consistency import run_consistency
from audits.causes import DISCOUNT_CHECKS, group_causes
from audits.disparity import (
    ContrastExecutor,
    RawTest,
    in_process_contrast,
    list_price_gaps,
    plan_dimensions,
    run_disparity,
)
from audits.errors import ConfigError, one_line, scrub
from audits.findings import OUTCOMES, AuditResult, CheckRun, DataQuality, Finding, RunInfo
from audits.judgement import is_candidate, judge, min_customers_to_judge
from audits.lines import build_audit_lines, ordered_columns, ordered_levels, refuse_identifying_columns
from audits.sqlfiles import SQL_DIR, SqlFileError, idents, load_sql
from audits.trend import trend_tests
from audits.warehouse import threads
from audits.wording import cell_words

NO_LINES = "no lines in the period after filters"
NO_SQL = "not available in this version"
NO_TESTS = "no group of the audited attributes had lines to compare"
UNKNOWN_REFERENCE = ("config key 'audit.reference.{attribute}' names group {group!r}, which is not in the audited "
                     "lines; its groups are {known}")
# columns whose presence on any audited line decides which checks can run (audits/catalogue.py: needs)
PRESENCE = ("list_price", "unit_price", "discount_amount", "line_total", "quantity", "tenure", "outcome_y")
# What a failing check may raise; anything else is a bug of ours and stops the run.
CHECK_ERRORS = (duckdb.Error, ArithmeticError, ValueError, SqlFileError)
# ... except an interrupted query (run_audits stopping a window): that stops the audit


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
    period_reason: str = "",
) -> AuditResult:
    """Audit the lines in [period_start, period_end] and return the findings (status not yet compared).

    `period_reason` says why these days (it travels with the result into the report)."""
    started_at = dt.datetime.now(dt.timezone.utc)
    filters = filters or {}
    build_audit_lines(con, config, period_start=period_start, period_end=period_end, filters=filters)
    refuse_identifying_columns(con, config)
    lines = _summary(con)
    checks = [CheckRun(check, "skipped", 0.0, reason) for check in config.checks
              if (reason := _skip_reason(check, lines.n_lines, lines.present)) is not None]
    skipped = {c.check for c in checks}
    consistency, breaches = _consistency_checks(
        con, config, [c for c in config.checks if c in CONSISTENCY_CHECKS and c not in skipped], lines, checks)
    judged = _disparity_checks(
        con, config, [c for c in config.checks if c in DISPARITY_CHECKS and c not in skipped], lines, contrast, checks)

    findings = consistency + judged
    checks = [_with_outcome(c, [f for f in findings if f.check == c.check]) for c in checks]
    finished_at = dt.datetime.now(dt.timezone.utc)
    run = RunInfo(
        run_id=run_id or f"{finished_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
        period_start=period_start.isoformat(),
        period_end=period_end.isoformat(),
        transactions=lines.n_lines,
        customers=lines.n_customers,
        config_sha256=config.sha256,
        data_sha256=hashlib.sha256(f"{lines.n_lines}:{lines.fingerprint}".encode()).hexdigest(),
        version=__version__,
        scope=scope,
        started_at=started_at.isoformat(timespec="seconds"),
        finished_at=finished_at.isoformat(timespec="seconds"),
        period_reason=period_reason,
        filters=dict(filters),
    )
    return AuditResult(run=run, data_quality=data_quality, findings=findings, causes=group_causes(findings, config),
                       breaches=_concat(breaches),
                       checks=sorted(checks, key=lambda c: config.checks.index(c.check)),
                       method=_method(config, filters))


class _Lines(NamedTuple):
    """The audited lines (temp table `audit_lines`) in a few figures: sql/audit/line_summary.sql."""

    n_customers: int
    n_lines: int
    fingerprint: str
    currency: str | None  # the one currency of the amounts, None when the lines have several
    present: set[str]  # PRESENCE's columns that some line has ("outcome" for outcome_y)


def _summary(con: duckdb.DuckDBPyConnection) -> _Lines:
    n_customers, n_lines, fingerprint, currency, *counts = con.execute(
        load_sql("audit/line_summary").render(presence=idents(PRESENCE))).fetchone()
    present = {"outcome" if c == "outcome_y" else c for c, n in zip(PRESENCE, counts, strict=True) if n}
    return _Lines(int(n_customers), int(n_lines), fingerprint, currency, present)


def _consistency_checks(con: duckdb.DuckDBPyConnection, config: Config, run: list[str], lines: _Lines,
                        checks: list[CheckRun]) -> tuple[list[Finding], list[Any]]:
    """Each consistency check in `run` on the audited lines, in isolation (one that errors is recorded as
    errored, the others still run): their findings and breaching lines; each check's run goes to `checks`."""
    findings: list[Finding] = []
    breaches: list[Any] = []
    for check in run:
        clock = time.monotonic()
        try:
            found, breaching = run_consistency(con, check, config, has_list_price="list_price" in lines.present,
                                               currency=lines.currency)
        except duckdb.InterruptException:
            raise
        except CHECK_ERRORS as err:
            checks.append(CheckRun(check, "errored", time.monotonic() - clock, _reason(err)))
            continue
        if not found:  # every rule's columns are missing on the lines (needs said some line has them)
            checks.append(CheckRun(check, "skipped", time.monotonic() - clock, CHECKS_BY_NAME[check].lacks(set())))
            continue
        findings.extend(found)
        breaches.extend(breaching)
        checks.append(CheckRun(check, "ok", time.monotonic() - clock, None, len(found)))
    return findings, breaches


def _disparity_checks(con: duckdb.DuckDBPyConnection, config: Config, run: list[str], lines: _Lines,
                      contrast: ContrastExecutor, checks: list[CheckRun]) -> list[Finding]:
    """The audited lines coded (temp table `coded_lines`, in place of `audit_lines`), each disparity check in
    `run` in isolation, then every test judged together (Benjamini-Hochberg across the run) and the flagged
    price gaps compared on list prices too; each check's run goes to `checks`."""
    if not run:
        return []
    coding = code_audit_lines(con, config)
    _refuse_unknown_references(coding, config)
    con.execute("drop table audit_lines")  # its narrow coded copy is all the disparity checks read
    raw_tests: list[RawTest] = []
    for check in run:
        clock, notes = time.monotonic(), []
        try:
            tests = run_disparity(con, check, config, coding, contrast, notes=notes,
                                  is_candidate=lambda test: is_candidate(test, config))
        except duckdb.InterruptException:
            raise
        except CHECK_ERRORS as err:
            checks.append(CheckRun(check, "errored", time.monotonic() - clock, _reason(err)))
            continue
        if CHECKS_BY_NAME[check].contrast == "outcome":  # while `measurements` holds this check's
            tests += trend_tests(con, check, CHECKS_BY_NAME[check].metric_for(config.outcome_scale), coding,
                                 plan_dimensions(config, check=check), ordered_columns(config),
                                 confidence=config.confidence)
        raw_tests.extend(tests)
        checks.append(CheckRun(check, "ok", time.monotonic() - clock, "; ".join(notes) or None, len(tests)))
    judged = judge(raw_tests, config)
    if "list_price" in lines.present:
        judged = _with_list_prices(con, config, coding, raw_tests, judged, contrast)
    return judged


def run_audits(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    windows: Mapping[str, tuple[dt.date, dt.date]],
    *,
    data_quality: DataQuality,
    filters: Mapping[str, str] | None = None,
    run_ids: Mapping[str, str] | None = None,
    contrast: ContrastExecutor = in_process_contrast,
    period_reasons: Mapping[str, str] | None = None,
    then: Callable[[duckdb.DuckDBPyConnection, AuditResult], AuditResult] | None = None,
) -> dict[str, AuditResult]:
    """Audit each window (scope -> first and last day) as `run_audit` would; `period_reasons`: why each
    window's days (scope -> words the report and console repeat). `then` is applied to each window's result
    as soon as it is ready, with the connection it was audited on (the run-over-run comparison, a line on
    the console).

    Windows are audited side by side, each on its own cursor (its own temp tables), as many at once as
    DuckDB has threads (warehouse.threads): while one audit is in Python (pass 1's tables, the fits), the
    other's SQL and compiled walks use the core it leaves idle (the A/B: docs/performance.md). An error in
    one window, or an interrupt (Ctrl-C) while waiting, stops the others at their next query (`_stop`) and
    is raised."""
    cursors: set[duckdb.DuckDBPyConnection] = set()

    def audit(scope: str, start: dt.date, end: dt.date) -> AuditResult:
        with con.cursor() as cursor:
            cursors.add(cursor)
            try:
                cursor.execute("set enable_progress_bar = false")  # a session setting (audits/warehouse.py)
                result = run_audit(cursor, config, period_start=start, period_end=end, data_quality=data_quality,
                                   scope=scope, filters=filters, run_id=(run_ids or {}).get(scope),
                                   contrast=contrast, period_reason=(period_reasons or {}).get(scope, ""))
                return then(cursor, result) if then is not None else result
            finally:
                cursors.discard(cursor)

    workers = min(len(windows), threads(con))
    if workers < 2:
        return {scope: audit(scope, start, end) for scope, (start, end) in windows.items()}
    with ThreadPoolExecutor(workers, thread_name_prefix="window") as pool:
        # each in a copy of the caller's context: a Prefect task's run context, so that `then`'s lines reach its log
        futures = {scope: pool.submit(contextvars.copy_context().run, audit, scope, start, end)
                   for scope, (start, end) in windows.items()}
        try:
            done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # the first error, if any
            return {scope: future.result() for scope, future in futures.items()}
        except BaseException:
            _stop(list(futures.values()), cursors)
            raise


def _stop(futures: list[Future[AuditResult]], cursors: set[duckdb.DuckDBPyConnection]) -> None:
    """Stop the windows still being audited: those not started are cancelled, the others' cursors are
    interrupted until they end (an interrupt only stops the query then running: a window in Python when
    one comes would go on to its next query). An interrupted query raises out of run_audit, not as a
    check's error."""
    for future in futures:
        future.cancel()
    while not all(future.done() for future in futures):
        for cursor in list(cursors):
            with suppress(duckdb.Error):  # closed since it was listed
                cursor.interrupt()
        wait(futures, timeout=0.05)


def code_audit_lines(con: duckdb.DuckDBPyConnection, config: Config) -> Coding:
    """Temp table `coded_lines`: the audited lines with the integer codes the disparity engine groups by."""
    groupings = [(a,) for a in config.attributes] + [tuple(i) for i in config.intersections]
    if "loyalty_penalty" in config.checks:
        groupings.append(("tenure",))
    return code_lines(con, groupings=groupings, segment_by=tuple(config.segment_by), controls=tuple(config.controls),
                      orders=ordered_levels(config))


def _refuse_unknown_references(coding: Coding, config: Config) -> None:
    """A fixed reference group that is not in the audited lines would suppress every comparison of its
    attribute (and hide any gap): stop, naming the key and the groups there are."""
    for attribute, group in config.reference.items():
        group_set = coding.sets.get(tuple(attribute.split(" & ")))
        if group_set is not None and group_set.code(group) is None:
            known = ", ".join(sorted(group_set.value(c) for c in group_set.labels)) or "none"
            raise ConfigError(UNKNOWN_REFERENCE.format(attribute=attribute, group=group, known=known))


def _with_list_prices(con: duckdb.DuckDBPyConnection, config: Config, coding: Coding, tests: list[RawTest],
                      judged: list[Finding], contrast: ContrastExecutor) -> list[Finding]:
    """The price-gap flags whose group also has a flagged discount finding (same attribute, group, segment)
    get the same comparison on list prices: the evidence for the paid-price echo rule (audits/causes.py R3)."""
    if config.outcome_column != "unit_price" or config.outcome_scale != "ratio":
        return judged  # the rule is about paid prices and discounts
    discounted = {(f.attribute, f.group, _segment_key(f)) for f in judged if f.is_flagged
                  and f.check in DISCOUNT_CHECKS}
    candidates = [(t, f) for t, f in zip(tests, judged, strict=True) if f.check == "price_gap" and f.is_flagged
                  and len(t.dimension.columns) == 1 and (f.attribute, f.group, _segment_key(f)) in discounted]
    if not candidates:
        return judged
    gaps = list_price_gaps(con, config, coding, [t for t, _ in candidates], contrast)
    updated = {id(f): replace(f, **dict(zip(("list_estimate", "list_ci_low", "list_ci_high"),
                                            gaps.get((t.dimension, t.segment_value, t.group), (None,) * 4)[:3],
                                            strict=True)))
               for t, f in candidates}
    return [updated.get(id(f), f) for f in judged]


def _concat(tables: list[Any]) -> Any:
    """The consistency rules' breaching lines as one Arrow table (None when there are none)."""
    if not tables:
        return None
    import pyarrow as pa

    return pa.concat_tables(tables, promote_options="permissive")


def _segment_key(f: Finding) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((f.segment or {}).items()))


def _skip_reason(check: str, n_lines: int, present: set[str]) -> str | None:
    """Why a check cannot run on these lines (from what they lack, never assumed), or None."""
    if not n_lines:
        return NO_LINES
    if not (SQL_DIR / f"{CHECKS_BY_NAME[check].sql}.sql").exists():
        return NO_SQL
    return CHECKS_BY_NAME[check].lacks(present)


def _with_outcome(run: CheckRun, findings: list[Finding]) -> CheckRun:
    """The check's outcome from its tests: flagged if any is, clear if any ran and found nothing, else
    suppressed (all too small to show) or not assessed (with the reason)."""
    counts = {o: sum(f.outcome == o for f in findings) for o in OUTCOMES}
    if run.status != "ok":
        return replace(run, outcome="not_assessed", outcomes=counts)
    for outcome in ("flagged", "clear"):
        if counts[outcome]:
            return replace(run, outcome=outcome, outcomes=counts)
    if counts["suppressed"] and not counts["not_assessed"]:
        return replace(run, outcome="suppressed", outcomes=counts)
    reasons = list(dict.fromkeys(f.reason for f in findings if f.reason and f.outcome == "not_assessed"))
    reason = "; ".join(filter(None, [run.reason, *reasons])) or NO_TESTS
    return replace(run, outcome="not_assessed", outcomes=counts, reason=reason)


def _reason(err: BaseException) -> str:
    """Why a check errored, as findings.json and the report say it (a library's text that may quote the data,
    reworded)."""
    scrub(err)
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
        "cell": list(config.cell),
        "cell_words": cell_words(config),
        "outcome": {"column": config.outcome_column, "per": config.outcome_per, "scale": config.outcome_scale,
                    "noun": config.outcome_noun},
        "min_customers_to_judge": min_customers_to_judge(config),
        "inference": "within-cell fixed-effects contrasts; customer-clustered variance with residuals "
                     "scaled for the cell means' leverage; Welch-Satterthwaite degrees of freedom; "
                     "Benjamini-Hochberg across all tests of the run",
        "adjusted_estimate": "additive fixed effects for product x day and for each control (price checks; "
                             "fitted for the tests that could be flagged)",
        "intersection_rule": "an intersection whose excess over its components is not adverse is noted as "
                             "explained_by its flagged components instead of flagged",
    }
