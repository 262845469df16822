"""The check runner: one SQL file per check, run over the warehouse; Python receives aggregates only.

`run_audit` builds the audited lines for a period once (temp table `audit_lines`), then runs each
configured check in isolation: a check that errors is recorded as errored and the others still run.
Disparity checks share one estimator (sql/stats/within_cell_contrast.sql, audits/stats.py); their
p-values are corrected together with Benjamini-Hochberg before severities are assigned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import duckdb

from audits import __version__
from audits.config import Config
from audits.errors import ConfigError
from audits.findings import (
    CONSISTENCY_CHECKS,
    AuditResult,
    CheckRun,
    DataQuality,
    Finding,
    RunInfo,
)
from audits.sqlfiles import SQL_DIR, load_sql
from audits.stats import ContrastSums, benjamini_hochberg, rate_ratio, ratio_from_log, within_cell_contrast
from audits.warehouse import quote_identifier, table_columns
from audits.wording import summarize

UNKNOWN_COLUMN = (
    "config key '{key}' names column {column!r}, which is not in the warehouse; "
    "known columns are {known}. Fix the config or map the column in the source"
)
COMPUTED_COLUMNS = ("quantity_band", "tenure")
INTERSECTION = " & "

# What each disparity check measures and how its contrast becomes a reported metric.
METRICS: dict[str, str] = {
    "price_gap": "price_ratio",
    "discount_incidence": "adverse_impact_ratio",
    "discount_depth": "discount_pct_diff",
    "loyalty_penalty": "price_ratio",
}
NEEDS_LIST_PRICE = ("discount_incidence", "discount_depth", "price_dispersion", "discount_policy")


# Phase 2 of the within-cell contrast: given a connection holding temp tables `measurements` and
# `contrast_tests`, return the merged per-test sums. The default runs one partition in-process;
# flows can pass one that fans partitions out to Dask workers (the sums are additive over customers).
ContrastExecutor = Callable[[duckdb.DuckDBPyConnection], list[dict[str, Any]]]


def in_process_contrast(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Phase 2 over all customers at once, in this process."""
    return contrast_partition(con, partitions=1, partition=0)


@dataclass(frozen=True)
class Dimension:
    """One audited way of grouping customers, optionally within each value of a segment column."""

    dim_id: int
    attribute: str
    columns: tuple[str, ...]
    reference: str | None
    segment_column: str | None


@dataclass(frozen=True)
class RawTest:
    """One disparity test before multiple-testing correction."""

    check: str
    dimension: Dimension
    segment_value: str
    group: str
    n_customers_group: int
    n_customers_reference: int
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None


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
    build_audit_lines(con, config, period_start=period_start, period_end=period_end, filters=filters or {})
    n_lines, n_customers, fingerprint = con.execute(
        "select count(*), count(distinct customer_id), "
        "coalesce(sum(hash(customer_id, product_id, day, unit_price, list_price, quantity))::varchar, '0') "
        "from audit_lines"
    ).fetchone()
    has_list_price = con.execute("select count(list_price) > 0 from audit_lines").fetchone()[0]

    checks: list[CheckRun] = []
    raw_tests: list[RawTest] = []
    consistency: list[Finding] = []
    for check in config.checks:
        clock = time.monotonic()
        if not (SQL_DIR / "checks" / f"{check}.sql").exists():
            checks.append(CheckRun(check, "skipped", 0.0, "not available in this version"))
            continue
        if check in NEEDS_LIST_PRICE and not has_list_price:
            checks.append(CheckRun(check, "skipped", 0.0, "the data has no list price (the price customers were shown)"))
            continue
        try:
            if check in CONSISTENCY_CHECKS:
                found = _run_consistency(con, check, config)
                consistency.extend(found)
                n_tests = len(found)
            else:
                tests = _run_disparity(con, check, config, contrast)
                raw_tests.extend(tests)
                n_tests = len(tests)
        except (duckdb.Error, ArithmeticError, ValueError) as err:
            reason = " ".join(str(err).split())[:300]
            checks.append(CheckRun(check, "errored", time.monotonic() - clock, reason))
            continue
        checks.append(CheckRun(check, "ok", time.monotonic() - clock, None, n_tests))

    findings = consistency + _judge(raw_tests, config)
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
    params: dict[str, Any] = {
        "start": dt.datetime.combine(period_start, dt.time()),
        "end": dt.datetime.combine(period_end + dt.timedelta(days=1), dt.time()),
        "bands": [float(b) for b in config.quantity_bands],
        "tenure_days": config.tenure_days,
        **{f"filter_{i}": str(value) for i, value in enumerate(filters.values())},
    }
    con.execute(f"""
        create or replace temp table audit_lines as
        with first_purchase as (
            select customer_id, min(timestamp)::date as first_day from transactions group by customer_id)
        select
            t.transaction_id, t.customer_id, t.product_id, t.timestamp::date as day, t.currency,
            t.category, t.channel, t.quantity, t.list_price, t.unit_price, t.discount_amount,
            t.line_total, t.discount_code,
            coalesce(t.unit_price < t.list_price, false) or coalesce(t.discount_amount > 0, false) as is_discounted,
            case when t.list_price > 0 then 1 - t.unit_price / t.list_price end as discount_pct,
            date_diff('day', coalesce(c.customer_since, f.first_day), t.timestamp::date) as tenure_days,
            case when date_diff('day', coalesce(c.customer_since, f.first_day), t.timestamp::date) > $tenure_days
                 then 'existing' else 'new' end as tenure,
            coalesce('≥' || cast($bands[len(list_filter($bands, lambda b: b <= t.quantity))] as varchar), 'other')
                as quantity_band
            {extra}
        from transactions as t
        left join customers as c using (customer_id)
        left join first_purchase as f using (customer_id)
        where t.timestamp >= $start and t.timestamp < $end {where}""", params)
    return wanted


def plan_dimensions(config: Config, *, check: str) -> list[Dimension]:
    """Every attribute and intersection, for the whole population and within each segment column."""
    if check == "loyalty_penalty":
        sets: list[tuple[tuple[str, ...], str | None]] = [(("tenure",), "new")]
    else:
        sets = [((a,), config.reference.get(a)) for a in config.attributes]
        sets += [(tuple(combo), config.reference.get(INTERSECTION.join(combo))) for combo in config.intersections]
    dimensions = []
    for segment in (None, *config.segment_by):
        for columns, reference in sets:
            if segment in columns:
                continue
            dimensions.append(Dimension(len(dimensions) + 1, INTERSECTION.join(columns), columns, reference, segment))
    return dimensions


def _run_disparity(
    con: duckdb.DuckDBPyConnection, check: str, config: Config, contrast: ContrastExecutor
) -> list[RawTest]:
    dimensions = plan_dimensions(config, check=check)
    if not dimensions:
        return []
    controls = ", ".join(quote_identifier(c) for c in config.controls)
    cell = f"hash(product_id, day, currency{', ' + controls if controls else ''})"
    parts = []
    for d in dimensions:
        group = (quote_identifier(d.columns[0]) if len(d.columns) == 1
                 else f"concat_ws('{INTERSECTION}', {', '.join(quote_identifier(c) for c in d.columns)})")
        present = [*d.columns, *([d.segment_column] if d.segment_column else [])]
        segment = f"cast({quote_identifier(d.segment_column)} as varchar)" if d.segment_column else "''"
        parts.append(
            f"select {d.dim_id} as dim_id, {segment} as segment_value, {cell} as cell_key, "
            f"cast({group} as varchar) as group_value, l.* from audit_lines as l "
            f"where {' and '.join(f'{quote_identifier(c)} is not null' for c in present)}"
        )
    con.execute("create or replace temp view audit_dim as " + "\nunion all\n".join(parts))
    con.execute("create or replace temp table audit_dims (dim_id integer, reference varchar)")
    con.executemany("insert into audit_dims values (?, ?)", [(d.dim_id, d.reference) for d in dimensions])
    query = load_sql(f"checks/{check}")
    con.execute(f"create or replace temp table measurements as {query.sql}",
                _params(query.params, config))
    con.execute(f"create or replace temp table contrast_tests as {load_sql('stats/within_cell_tests').sql}")
    rows = contrast(con)
    by_id = {d.dim_id: d for d in dimensions}
    tests = []
    for row in rows:
        sums = ContrastSums(
            n_clusters=int(row["n_clusters"]), sxx=row["sxx"], sxy=row["sxy"], saa=row["saa"], sab=row["sab"],
            sbb=row["sbb"], ref_sum=row["ref_sum"], ref_weight=row["ref_weight"], ref_vv=row["ref_vv"],
            ref_vw=row["ref_vw"], ref_ww=row["ref_ww"], n_reference_clusters=int(row["n_customers_reference"]),
        )
        estimate, low, high, p = _metric(check, sums)
        tests.append(RawTest(
            check=check, dimension=by_id[row["dim_id"]], segment_value=row["segment_value"],
            group=row["group_value"], n_customers_group=int(row["n_customers_group"]),
            n_customers_reference=int(row["n_customers_reference"]),
            estimate=estimate, ci_low=low, ci_high=high, p_value=p,
        ))
    return tests


SUM_FIELDS = ("n_customers_group", "n_customers_reference", "n_clusters", "sxx", "sxy", "saa", "sab", "sbb",
              "ref_sum", "ref_weight", "ref_vv", "ref_vw", "ref_ww")


def contrast_partition(con: duckdb.DuckDBPyConnection, *, partitions: int, partition: int) -> list[dict[str, Any]]:
    """Phase-2 sums over one partition of customers (needs `measurements` and `contrast_tests`)."""
    query = load_sql("stats/within_cell_contrast")
    cursor = con.execute(query.sql, {"partitions": partitions, "partition": partition})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def merge_partitions(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Add up phase-2 sums computed over disjoint sets of customers."""
    merged: dict[tuple, dict[str, Any]] = {}
    for rows in parts:
        for row in rows:
            key = (row["dim_id"], row["segment_value"], row["group_value"])
            if key not in merged:
                merged[key] = dict(row)
            else:
                for name in SUM_FIELDS:
                    merged[key][name] += row[name]
    return [merged[k] for k in sorted(merged)]


def _metric(check: str, sums: ContrastSums) -> tuple[float | None, float | None, float | None, float | None]:
    estimate = within_cell_contrast(sums)
    if estimate is None:
        return None, None, None, None
    if METRICS[check] == "price_ratio":
        ratio, low, high = ratio_from_log(estimate)
        return ratio, low, high, estimate.p_value
    if METRICS[check] == "adverse_impact_ratio":
        air = rate_ratio(estimate, sums)
        if air is None:
            return None, None, None, estimate.p_value
        return (*air, estimate.p_value)
    low, high = estimate.interval()
    return estimate.beta, low, high, estimate.p_value


def _run_consistency(con: duckdb.DuckDBPyConnection, check: str, config: Config) -> list[Finding]:
    """Consistency checks return one row per rule: (metric, count, total); a count above 0 is a finding."""
    query = load_sql(f"checks/{check}")
    rows = con.execute(query.sql, _params(query.params, config)).fetchall()
    findings = []
    for metric, count, total in rows:
        severity = "low" if count == 0 else ("high" if count / max(total, 1) >= 0.001 else "medium")
        finding = Finding(
            check=check, attribute=None, group=None, reference=None, segment=None, metric=metric,
            estimate=count / total if total else None, ci_low=None, ci_high=None, p_value=None, q_value=None,
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


def _judge(tests: list[RawTest], config: Config) -> list[Finding]:
    """Suppress small groups, correct p-values across all tests (BH), then assign severities."""
    shown = [
        t for t in tests
        if t.n_customers_group >= config.min_group_customers and t.n_customers_reference >= config.min_group_customers
        and t.p_value is not None
    ]
    q_values = dict(zip((id(t) for t in shown), benjamini_hochberg([t.p_value for t in shown]), strict=True))
    findings = []
    for t in tests:
        segment = {t.dimension.segment_column: t.segment_value} if t.dimension.segment_column else None
        reference = t.dimension.reference or "all others"
        base = dict(check=t.check, attribute=t.dimension.attribute, group=t.group, reference=reference,
                    segment=segment, metric=METRICS[t.check], count=None, status="new")
        if id(t) not in q_values:
            finding = Finding(**base, estimate=None, ci_low=None, ci_high=None, p_value=None, q_value=None,
                              n_customers_group=None, n_customers_reference=None, severity="low", summary="",
                              suppressed=True)
        else:
            q = q_values[id(t)]
            finding = Finding(**base, estimate=t.estimate, ci_low=t.ci_low, ci_high=t.ci_high, p_value=t.p_value,
                              q_value=q, n_customers_group=t.n_customers_group,
                              n_customers_reference=t.n_customers_reference,
                              severity=_severity(t, q, config), summary="")
        findings.append(replace(finding, summary=summarize(finding, controls=config.controls,
                                                            min_group_customers=config.min_group_customers)))
    return findings


def _severity(t: RawTest, q: float, config: Config) -> str:
    """Flag only what is both statistically (q < fdr) and practically significant, to the group's detriment.

    high: the whole confidence interval lies beyond the practical threshold; medium: the estimate does.
    """
    if t.estimate is None or q >= config.fdr:
        return "low"
    metric = METRICS[t.check]
    if metric == "price_ratio":
        limit = 1 + config.min_price_gap
        beyond, robust = t.estimate >= limit, (t.ci_low or 0) >= limit
    elif metric == "adverse_impact_ratio":
        limit = config.adverse_impact_ratio
        beyond, robust = t.estimate < limit, (t.ci_high or 1) < limit
    else:  # a shallower discount for the group: the difference is negative
        limit = -config.min_discount_depth
        beyond, robust = t.estimate <= limit, (t.ci_high or 0) <= limit
    if not beyond:
        return "low"
    return "high" if robust else "medium"
