"""Disparity checks: plan the comparisons, measure inside DuckDB, estimate each group against its reference.

A disparity check is a SQL file turning the audited lines (temp view `audit_dim`, one row per line x
dimension) into one measurement per line: log price (price_gap, loyalty_penalty), discounted or not
(discount_incidence), discount depth (discount_depth). Every group of every dimension (attribute,
intersection, each within every segment value) is then compared with its reference inside cells of
product x day x controls (sql/stats/within_cell_*.sql, audits/stats.py). Two further regressions
(audits/adjusted.py) report beside it: the regression-adjusted price gap, and for intersections that
may be flagged, their excess over what their component attributes predict (audits/judgement.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import duckdb

from audits.adjusted import FixedEffectsTest, fixed_effects_contrasts
from audits.config import Config
from audits.errors import one_line
from audits.sqlfiles import load_sql
from audits.stats import ContrastSums, Estimate, rate_ratio, ratio_from_log, reference_rate, within_cell_contrast
from audits.warehouse import quote_identifier

INTERSECTION = " & "

# What each disparity check measures and how its contrast becomes a reported metric.
METRICS: dict[str, str] = {
    "price_gap": "price_ratio",
    "discount_incidence": "adverse_impact_ratio",
    "discount_depth": "discount_pct_diff",
    "loyalty_penalty": "price_ratio",
}
# Checks whose regression-adjusted estimate (additive fixed effects for product x day and each
# control) is reported beside the within-cell one.
ADJUSTED_CHECKS = ("price_gap", "loyalty_penalty")

Interval = tuple[float | None, float | None, float | None, float | None]  # estimate, low, high, p
SECONDARY_ERRORS = (duckdb.Error, ArithmeticError, ValueError)

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
    difference: Estimate | None = None  # the within-cell difference on the measurement's own scale
    sums: ContrastSums | None = None  # what DuckDB summed for it
    reference_mean: float | None = None  # the reference's mean on the contrast's weights (rates)
    group_parts: tuple[str, ...] = ()  # the group's value of each column of the dimension
    adjusted: Interval | None = None  # regression-adjusted estimate, interval and p (metric scale)
    excess: Estimate | None = None  # intersections: difference beyond the components' additive effects


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


def run_disparity(
    con: duckdb.DuckDBPyConnection,
    check: str,
    config: Config,
    contrast: ContrastExecutor = in_process_contrast,
    *,
    is_candidate: Callable[[RawTest], bool] = lambda test: False,
    notes: list[str] | None = None,
) -> list[RawTest]:
    """Measure one check over every planned dimension and estimate every group against its reference.

    `is_candidate` says which intersection tests might be flagged: only those get the (costly) excess
    regression over their components. Problems that did not stop the check are appended to `notes`.
    """
    notes = notes if notes is not None else []
    dimensions = plan_dimensions(config, check=check)
    if not dimensions:
        return []
    _create_audit_dim(con, dimensions)
    query = load_sql(f"checks/{check}")
    params = {name: {"max_discount_pct": config.max_discount_pct, "tenure_days": config.tenure_days,
                     "min_price_gap": config.min_price_gap}[name] for name in query.params}
    con.execute(f"create or replace temp table measurements as {query.sql}", params)
    con.execute(f"create or replace temp table contrast_tests as {load_sql('stats/within_cell_tests').sql}")
    by_id = {d.dim_id: d for d in dimensions}
    tests = [_raw_test(check, by_id[row["dim_id"]], row) for row in contrast(con)]
    tests += _groups_without_overlap(con, check, by_id, tests)
    tests = _with_group_parts(con, tests)

    def shown(test: RawTest) -> bool:
        return test.estimate is not None and min(test.n_customers_group, test.n_customers_reference) \
            >= config.min_group_customers

    # The two secondary regressions must not cost the check its main result: if one fails, its
    # figures are left empty (an intersection then stays flagged) and the failure is noted.
    if check in ADJUSTED_CHECKS:
        try:
            tests = _with_adjusted(con, tests, [t for t in tests if shown(t)])
        except SECONDARY_ERRORS as err:
            notes.append(f"regression-adjusted estimates unavailable ({_one_line(err)})")
    candidates = [t for t in tests if shown(t) and len(t.dimension.columns) > 1 and is_candidate(t)]
    try:
        tests = _with_excess(con, tests, candidates)
    except SECONDARY_ERRORS as err:
        notes.append(f"intersections' excess over their components unavailable ({_one_line(err)})")
    return tests


def _create_audit_dim(con: duckdb.DuckDBPyConnection, dimensions: list[Dimension]) -> None:
    parts = []
    for d in dimensions:
        columns = [quote_identifier(c) for c in d.columns]
        group = columns[0] if len(columns) == 1 else f"concat_ws('{INTERSECTION}', {', '.join(columns)})"
        present = [*d.columns, *([d.segment_column] if d.segment_column else [])]
        segment = f"cast({quote_identifier(d.segment_column)} as varchar)" if d.segment_column else "''"
        parts.append(
            f"select {d.dim_id} as dim_id, {segment} as segment_value, "
            f"cast({group} as varchar) as group_value, "
            f"[{', '.join(f'cast({c} as varchar)' for c in columns)}] as group_parts, l.* from audit_lines as l "
            f"where {' and '.join(f'{quote_identifier(c)} is not null' for c in present)}"
        )
    con.execute("create or replace temp view audit_dim as " + "\nunion all\n".join(parts))
    con.execute("create or replace temp table audit_dims (dim_id integer, reference varchar)")
    con.executemany("insert into audit_dims values (?, ?)", [(d.dim_id, d.reference) for d in dimensions])


def _raw_test(check: str, dimension: Dimension, row: dict[str, Any]) -> RawTest:
    sums = ContrastSums(
        n_clusters=int(row["n_clusters"]), sxx=row["sxx"], sxy=row["sxy"], saa=row["saa"], sab=row["sab"],
        sbb=row["sbb"], ref_sum=row["ref_sum"], ref_weight=row["ref_weight"], ref_vv=row["ref_vv"],
        ref_vw=row["ref_vw"], ref_ww=row["ref_ww"], n_reference_clusters=int(row["n_customers_reference"]),
        saa_adj=row["saa_adj"], sab_adj=row["sab_adj"], sbb_adj=row["sbb_adj"],
        saa_group=row["saa_group"], sab_group=row["sab_group"], sbb_group=row["sbb_group"],
        n_group_clusters=int(row["n_customers_group"]),
    )
    difference = within_cell_contrast(sums)
    reference = reference_rate(sums)
    estimate, low, high, p = metric_interval(check, difference, sums)
    return RawTest(
        check=check, dimension=dimension, segment_value=row["segment_value"], group=row["group_value"],
        n_customers_group=int(row["n_customers_group"]), n_customers_reference=int(row["n_customers_reference"]),
        estimate=estimate, ci_low=low, ci_high=high, p_value=p, difference=difference, sums=sums,
        reference_mean=reference[0] if reference else None,
    )


def metric_interval(check: str, estimate: Estimate | None, sums: ContrastSums | None = None) -> Interval:
    """A difference on the measurement's scale as the check's reported metric, interval and p-value."""
    if estimate is None:
        return None, None, None, None
    if METRICS[check] == "price_ratio":
        return (*ratio_from_log(estimate), estimate.p_value)
    if METRICS[check] == "adverse_impact_ratio":
        air = rate_ratio(estimate, sums) if sums is not None else None
        return (*air, estimate.p_value) if air is not None else (None, None, None, estimate.p_value)
    return (estimate.beta, *estimate.interval(), estimate.p_value)


def _groups_without_overlap(con: duckdb.DuckDBPyConnection, check: str, by_id: dict[int, Dimension],
                            tests: list[RawTest]) -> list[RawTest]:
    """Groups measured but never in a cell with their reference: reported, without an estimate."""
    seen = {(t.dimension.dim_id, t.segment_value, t.group) for t in tests}
    rows = con.execute("""
        with groups as (
            select dim_id, segment_value, group_value, count(distinct customer_id) as n
            from measurements group by all),
        totals as (
            select dim_id, segment_value, count(distinct customer_id) as n from measurements group by all)
        select g.dim_id, g.segment_value, g.group_value, g.n, t.n - g.n, r.n
        from groups as g
        join totals as t using (dim_id, segment_value)
        join audit_dims as d using (dim_id)
        left join groups as r on r.dim_id = g.dim_id and r.segment_value = g.segment_value
            and r.group_value = d.reference
        where d.reference is null or g.group_value <> d.reference
        order by g.dim_id, g.segment_value, g.group_value""").fetchall()
    missing = []
    for dim_id, segment_value, group, n_group, n_others, n_reference in rows:
        if (dim_id, segment_value, group) in seen:
            continue
        dimension = by_id[dim_id]
        n_ref = n_others if dimension.reference is None else (n_reference or 0)
        missing.append(RawTest(check, dimension, segment_value, group, int(n_group), int(n_ref),
                               None, None, None, None))
    return missing


def _with_group_parts(con: duckdb.DuckDBPyConnection, tests: list[RawTest]) -> list[RawTest]:
    parts = {(dim_id, group): tuple(values) for dim_id, group, values in con.execute(
        "select distinct dim_id, group_value, group_parts from measurements").fetchall()}
    return [replace(t, group_parts=parts.get((t.dimension.dim_id, t.group), (t.group,))) for t in tests]


def _with_adjusted(con: duckdb.DuckDBPyConnection, tests: list[RawTest], shown: list[RawTest]) -> list[RawTest]:
    """Regression-adjusted estimate: additive fixed effects for product x day and for each control."""
    con.execute("create or replace temp table fe_input as select dim_id, segment_value, fe_key, "
                "control_levels as levels, customer_id, group_value, y from measurements")
    numbered = {id(t): i for i, t in enumerate(shown)}
    estimates = fixed_effects_contrasts(con, [
        FixedEffectsTest(i, t.dimension.dim_id, t.segment_value, t.group, t.dimension.reference)
        for t, i in ((t, numbered[id(t)]) for t in shown)])
    return [replace(t, adjusted=metric_interval(t.check, estimates.get(numbered[id(t)])))
            if id(t) in numbered else t for t in tests]


def _with_excess(con: duckdb.DuckDBPyConnection, tests: list[RawTest], candidates: list[RawTest]) -> list[RawTest]:
    """For intersection groups: the difference beyond the additive effects of their component attributes.

    Within the same cells as the main contrast (fe_key = the within-cell cell) and over every line of
    the dimension and segment, the measurement is regressed on one dummy per level of each component
    attribute plus the tested group's indicator; the indicator's coefficient is the group's excess.
    """
    if not candidates:
        return tests
    con.execute("create or replace temp table fe_input as select dim_id, segment_value, cell_key as fe_key, "
                "group_parts as levels, customer_id, group_value, y from measurements")
    numbered = {id(t): i for i, t in enumerate(candidates)}
    estimates = fixed_effects_contrasts(con, [
        FixedEffectsTest(numbered[id(t)], t.dimension.dim_id, t.segment_value, t.group, None) for t in candidates])
    return [replace(t, excess=estimates.get(numbered[id(t)])) if id(t) in numbered else t for t in tests]


def _one_line(err: BaseException) -> str:
    return one_line(f"{type(err).__name__}: {err}", limit=200)


SUM_FIELDS = ("n_customers_group", "n_customers_reference", "n_clusters", "sxx", "sxy", "saa", "sab", "sbb",
              "ref_sum", "ref_weight", "ref_vv", "ref_vw", "ref_ww", "saa_adj", "sab_adj", "sbb_adj",
              "saa_group", "sab_group", "sbb_group")


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
