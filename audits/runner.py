"""The check runner: one SQL file per check, run over the warehouse; Python receives aggregates only.

`run_audit` builds the audited lines for a period once (table `audit_lines`, in a database of the
process's own attached for the audit), then runs each configured check in isolation: a check that errors
is recorded as errored and the others still run. `run_audits` does the same for several periods at once,
and periods that mostly overlap share one build of their span's lines (each check reads the temp views
`audit_lines` and `coded_lines`, which cut the span to the period's days).
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import duckdb

from audits import __version__
from audits.config import Config
from audits.coding import Coding, code_lines
from audits.contrasts import WINDOW_MASK, load_in_background
from audits.disparity import (  # noqa: F401  (re-exported: the runner is the audit's public face)
    INTERSECTION,
    METRICS,
    ContrastExecutor,
    Dimension,
    RawTest,
    in_process_contrast,
    plan_dimensions,
    run_disparity,
    run_disparity_windows,
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


# Windows whose days overlap or touch share one build and coding of their span's lines. Where their checks
# then run in one pass per check (this process's executor, at most one segment column), any such window
# gains. Where each window runs its own passes over the span (a Dask executor, several segment columns), a
# window shares only when it covers at least this share of the span: it reads the span's lines in every
# pass, and pass 1's arrays are sized by the span's cells. Both audits of a 30-day rolling window and a
# month to date of d days at 10M (median of 3), one pass per check for both / separate audits: d = 1:
# 2.40-2.45 / 2.60 s; 7: 2.49-2.57 / 2.92 s; 15: 2.60-2.62 / 3.14-3.20 s; 31: 2.78-2.81 s / 3.95 s. Each
# window's own passes over a shared span / separate audits: d = 1: 2.55 / 2.38 s; 7: 2.78 / 2.72 s; 10:
# 2.87 / 2.93 s; 15: 2.96 / 3.14 s; 22: 3.06 / 3.43 s; 31: 3.38 / 3.95 s.
SHARED_SPAN_MIN_SHARE = 0.5


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
    return run_audits(con, config, {scope: (period_start, period_end)}, data_quality=data_quality,
                      filters=filters, run_ids={scope: run_id} if run_id else None, contrast=contrast)[scope]


def run_audits(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    windows: Mapping[str, tuple[dt.date, dt.date]],
    *,
    data_quality: DataQuality,
    filters: Mapping[str, str] | None = None,
    run_ids: Mapping[str, str] | None = None,
    contrast: ContrastExecutor = in_process_contrast,
    at_once: bool = True,
) -> dict[str, AuditResult]:
    """Audit each window (scope -> first and last day) and return each one's findings, as `run_audit` would.

    Windows whose days overlap (the nightly's rolling window and month to date) share one build and coding
    of their span's lines, and each reads its own days from them: a line's measurement, cell and codes do
    not depend on the window, and every count and sum the checks compute is taken over the window's lines
    only. In this process, with at most one segment column, each disparity check then makes one pass for
    all of them (see SHARED_SPAN_MIN_SHARE for the other case). `at_once`: windows and spans side by side
    on threads (each on its own cursor of `con`), else one after another (a Dask executor fans each audit
    out to the cluster itself)."""
    loading = load_in_background() if set(config.checks) & set(METRICS) else None
    # one pass per check for all windows of a span: in this process, with at most one segment column
    together = at_once and contrast is in_process_contrast and len(config.segment_by) <= 1
    spans = _shared_spans(windows, min_share=0.0 if together else SHARED_SPAN_MIN_SHARE)

    def audit_span(cursor: duckdb.DuckDBPyConnection, scopes: list[str]) -> dict[str, AuditResult]:
        with cursor:
            return _audit_span(cursor, config, {s: windows[s] for s in scopes}, data_quality=data_quality,
                               filters=filters or {}, run_ids=run_ids or {}, contrast=contrast, at_once=at_once,
                               together=together)

    results: dict[str, AuditResult] = {}
    if at_once and len(spans) > 1:
        with ThreadPoolExecutor(max_workers=len(spans)) as pool:
            for done in [pool.submit(audit_span, con.cursor(), scopes) for scopes in spans]:
                results.update(done.result())
    else:
        for scopes in spans:
            results.update(audit_span(con.cursor(), scopes))
    if loading is not None:
        loading.join()
    return {scope: results[scope] for scope in windows}


def _shared_spans(windows: Mapping[str, tuple[dt.date, dt.date]], *, min_share: float) -> list[list[str]]:
    """The windows grouped by the span whose lines they share, longest window first in each group: a window
    joins a span its days overlap or touch, when it covers at least `min_share` of the span they make."""
    spans: list[tuple[dt.date, dt.date, list[str]]] = []
    day = dt.timedelta(days=1)
    for scope in sorted(windows, key=lambda s: windows[s][0] - windows[s][1]):  # longest first
        start, end = windows[scope]
        for i, (first, last, scopes) in enumerate(spans):
            union = (max(last, end) - min(first, start)).days + 1
            if start <= last + day and end >= first - day and (end - start).days + 1 >= min_share * union:
                spans[i] = (min(first, start), max(last, end), [*scopes, scope])
                break
        else:
            spans.append((start, end, [scope]))
    return [scopes for _, _, scopes in spans]


def _audit_span(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    windows: Mapping[str, tuple[dt.date, dt.date]],
    *,
    data_quality: DataQuality,
    filters: Mapping[str, str],
    run_ids: Mapping[str, str],
    contrast: ContrastExecutor,
    at_once: bool,
    together: bool,
) -> dict[str, AuditResult]:
    """Build and code the lines of the windows' span once, in a database of this process's own (attached
    in memory, spilling like temp tables), then audit each window over its days of them: with `together`,
    each check in one pass for every window (_disparity_checks)."""
    started_at = dt.datetime.now(dt.timezone.utc)
    span = f"pp_span_{uuid.uuid4().hex[:12]}"
    con.execute(f"attach ':memory:' as {span}")
    try:
        build_audit_lines(con, config, period_start=min(w[0] for w in windows.values()),
                          period_end=max(w[1] for w in windows.values()), filters=filters,
                          table=f"{span}.audit_lines")
        cursors = {scope: con.cursor() for scope in windows}
        try:
            runs = {scope: _WindowRun(cursors[scope], config, scope, *windows[scope], span=span, started_at=started_at)
                    for scope in windows}
            # consistency checks first: they read audit_lines, which the disparity checks no longer need
            for run in runs.values():
                run.count_lines()
                run.consistency_checks()
            coding = None
            if any(c in METRICS for c in config.checks):
                coding = code_audit_lines(con, config, source=f"{span}.audit_lines",
                                          target=f"{span}.coded_lines", keep=("day",))
            con.execute(f"drop table {span}.audit_lines")  # its narrow coded copy is all that is read from now on

            def results() -> dict[str, AuditResult]:
                return {scope: run.result(data_quality=data_quality, filters=filters, run_id=run_ids.get(scope))
                        for scope, run in runs.items()}

            if coding is None:
                return results()
            if together and len(runs) > 1:
                _disparity_checks(con, config, list(runs.values()), coding, span=span, contrast=contrast,
                                  checks_at_once=2)
                return results()

            def finish(run: _WindowRun) -> AuditResult:
                _disparity_checks(con, config, [run], coding, span=span, contrast=contrast, checks_at_once=1)
                return run.result(data_quality=data_quality, filters=filters, run_id=run_ids.get(run.scope))

            if at_once and len(runs) > 1:
                with ThreadPoolExecutor(max_workers=len(runs)) as pool:
                    done = {scope: pool.submit(finish, run) for scope, run in runs.items()}
                    return {scope: future.result() for scope, future in done.items()}
            return {scope: finish(run) for scope, run in runs.items()}
        finally:
            for cursor in cursors.values():
                cursor.close()
    finally:
        con.execute(f"detach {span}")


def _disparity_checks(con: duckdb.DuckDBPyConnection, config: Config, runs: list[_WindowRun], coding: Coding,
                      *, span: str, contrast: ContrastExecutor, checks_at_once: int) -> None:
    """The windows' disparity checks, each in one pass over the span's lines for all of `runs`
    (run_disparity_windows): a line carries the windows its day is in as a bit mask, and each window's
    tests come from its own lines and coefficients, so a line is read and walked once for all of them.
    `checks_at_once` checks run side by side, each on its own cursor. A check that fails, fails in every
    window of the pass."""
    mask = " + ".join(f"(case when {run.days} then {1 << w} else 0 end)" for w, run in enumerate(runs))
    view = (f"create or replace temp view coded_lines as select * exclude (day), ({mask})::bigint as "
            f"{WINDOW_MASK} from {span}.coded_lines where {' or '.join(f'({run.days})' for run in runs)}")
    # which windows run each check (the others record why they skip it)
    active = {check: [w for w, run in enumerate(runs) if not run._skipped(check)]
              for check in config.checks if check not in CONSISTENCY_CHECKS}

    def check_all(check: str) -> tuple[list[list[RawTest]] | BaseException, list[str], float]:
        clock, notes = time.monotonic(), []
        with con.cursor() as cursor:
            cursor.execute(view)
            try:
                tests = run_disparity_windows(cursor, check, config, coding, contrast, windows=len(runs),
                                              notes=notes, is_candidate=lambda test: is_candidate(test, config))
            except CHECK_ERRORS as err:
                return err, notes, time.monotonic() - clock
        return tests, notes, time.monotonic() - clock

    checks = [check for check, windows in active.items() if windows]
    if checks_at_once > 1:
        with ThreadPoolExecutor(max_workers=checks_at_once) as pool:
            outcomes = list(pool.map(check_all, checks))
    else:  # in this thread: a Dask executor submits Prefect tasks, which need the flow run's context
        outcomes = [check_all(check) for check in checks]
    for check, (tests, notes, seconds) in zip(checks, outcomes, strict=True):
        for w in active[check]:
            if isinstance(tests, BaseException):
                runs[w].checks.append(CheckRun(check, "errored", seconds, _reason(tests)))
            else:
                runs[w].raw_tests.extend(tests[w])
                runs[w].checks.append(CheckRun(check, "ok", seconds, "; ".join(notes) or None, len(tests[w])))


class _WindowRun:
    """One window's audit over a span's shared lines: its temp view `audit_lines` on its own cursor is the
    span's table cut to the window's days (`days`); its disparity checks are `_disparity_checks`'."""

    def __init__(self, con: duckdb.DuckDBPyConnection, config: Config, scope: str, period_start: dt.date,
                 period_end: dt.date, *, span: str, started_at: dt.datetime) -> None:
        self.con, self.config, self.scope = con, config, scope
        self.period_start, self.period_end, self.span, self.started_at = period_start, period_end, span, started_at
        # a view cannot hold parameters: the days are formatted from date objects, so only YYYY-MM-DD gets in
        first, last = (dt.date(d.year, d.month, d.day).isoformat() for d in (period_start, period_end))
        self.days = f"day between date '{first}' and date '{last}'"
        self.checks: list[CheckRun] = []
        self.raw_tests: list[RawTest] = []
        self.consistency: list[Finding] = []
        self.n_lines = self.n_customers = 0
        self.fingerprint = "0"
        self.has_list_price = False
        con.execute(f"create or replace temp view audit_lines as select * from {span}.audit_lines where {self.days}")

    def count_lines(self) -> None:
        self.n_lines, self.n_customers, self.fingerprint, self.has_list_price = self.con.execute(
            "select count(*), count(distinct customer_id), "
            "coalesce(sum(hash(customer_id, product_id, day, unit_price, list_price, quantity))::varchar, '0'), "
            "count(list_price) > 0 from audit_lines"
        ).fetchone()

    def _skipped(self, check: str) -> bool:
        if not (SQL_DIR / "checks" / f"{check}.sql").exists():
            self.checks.append(CheckRun(check, "skipped", 0.0, "not available in this version"))
            return True
        if check in NEEDS_LIST_PRICE and not self.has_list_price:
            self.checks.append(CheckRun(check, "skipped", 0.0, NO_LIST_PRICE))
            return True
        return False

    def consistency_checks(self) -> None:
        for check in (c for c in self.config.checks if c in CONSISTENCY_CHECKS):
            clock = time.monotonic()
            if self._skipped(check):
                continue
            try:
                found = _run_consistency(self.con, check, self.config)
            except CHECK_ERRORS as err:
                self.checks.append(CheckRun(check, "errored", time.monotonic() - clock, _reason(err)))
                continue
            if not found:
                reason = NOTHING_TO_CHECK.get(check, "no line has the columns this check needs")
                self.checks.append(CheckRun(check, "skipped", time.monotonic() - clock, reason))
                continue
            self.consistency.extend(found)
            self.checks.append(CheckRun(check, "ok", time.monotonic() - clock, None, len(found)))
        self.con.execute("drop view audit_lines")

    def result(self, *, data_quality: DataQuality, filters: Mapping[str, str], run_id: str | None) -> AuditResult:
        config = self.config
        checks = sorted(self.checks, key=lambda c: config.checks.index(c.check))
        findings = self.consistency + judge(self.raw_tests, config)
        finished_at = dt.datetime.now(dt.timezone.utc)
        run = RunInfo(
            run_id=run_id or f"{finished_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
            period_start=self.period_start.isoformat(),
            period_end=self.period_end.isoformat(),
            transactions=int(self.n_lines),
            customers=int(self.n_customers),
            config_sha256=config.sha256,
            data_sha256=hashlib.sha256(f"{self.n_lines}:{self.fingerprint}".encode()).hexdigest(),
            version=__version__,
            scope=self.scope,
            started_at=self.started_at.isoformat(timespec="seconds"),
            finished_at=finished_at.isoformat(timespec="seconds"),
        )
        return AuditResult(run=run, data_quality=data_quality, findings=findings, checks=checks,
                           method=_method(config, filters))


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


def build_audit_lines(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    *,
    period_start: dt.date,
    period_end: dt.date,
    filters: Mapping[str, str],
    table: str = "audit_lines",
) -> dict[str, str]:
    """Create `table` (default temp table `audit_lines`; a schema-qualified name is a table of that attached
    database); returns audited column -> SQL source (validated identifiers)."""
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
        {"create or replace table" if "." in table else "create or replace temp table"} {table} as
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


def code_audit_lines(con: duckdb.DuckDBPyConnection, config: Config, *, source: str = "audit_lines",
                     target: str = "coded_lines", keep: tuple[str, ...] = ()) -> Coding:
    """Table `target` (default temp table `coded_lines`): the lines of `source` with the integer codes the
    disparity engine groups by (audits/coding.py)."""
    groupings = [(a,) for a in config.attributes] + [tuple(i) for i in config.intersections]
    if "loyalty_penalty" in config.checks:
        groupings.append(("tenure",))
    return code_lines(con, groupings=groupings, segment_by=tuple(config.segment_by),
                      controls=tuple(config.controls), source=source, target=target, keep=keep)


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
