"""Disparity checks: plan the comparisons, measure inside DuckDB, estimate each group against its reference.

A disparity check is a SQL file turning the coded audit lines (temp view `coded_lines`) into one
measurement per line: log price (price_gap, loyalty_penalty), discounted or not (discount_incidence),
discount depth (discount_depth). Every group of every dimension (attribute, intersection, each within
every segment value) is then compared with its reference inside cells of product x day x controls
(audits/contrasts.py, which also fits the regression-adjusted estimate of the price checks and, for
intersections that may be flagged, their excess over what their component attributes predict).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import duckdb
import numpy as np

from audits import contrasts
from audits.coding import INTERSECTION, Coding, GroupSet  # noqa: F401  (INTERSECTION: re-exported)
from audits.columns import MEASUREMENTS
from audits.catalogue import CHECKS_BY_NAME
from audits.config import Config
from audits.contrast_model import Executor, LineSet, Model, PassState, Slots, TestSums
from audits.errors import one_line, scrub
from audits.sqlfiles import load_sql
from audits.stats import CONFIDENCE, Estimate, rate_ratio, ratio_from_log


Interval = tuple[float | None, float | None, float | None, float | None]  # estimate, low, high, p
SECONDARY_ERRORS = (duckdb.Error, ArithmeticError, ValueError, np.linalg.LinAlgError)
# Pass 2 of the engine (audits/contrasts.py): the default runs every partition of customers in this
# process; flows can pass one that fans partitions out to Dask workers (the sums add up).
ContrastExecutor = Executor
in_process_contrast = contrasts.in_process


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
    metric: str  # the reported metric (audits/catalogue.py: Check.metric_for)
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
    reference_mean: float | None = None  # the reference's mean on the contrast's weights (rates)
    group_parts: tuple[str, ...] = ()  # the group's value of each column of the dimension
    adjusted: Interval | None = None  # regression-adjusted estimate, interval and p (metric scale)
    excess: Estimate | None = None  # intersections: difference beyond the components' additive effects
    # the share of each side's lines and customers that had a comparable line of the other side in their cell
    coverage: dict[str, float | None] | None = None
    reference_label: str | None = None  # what the group is compared with, when not the dimension's reference


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
    coding: Coding,
    contrast: ContrastExecutor = in_process_contrast,
    *,
    is_candidate: Callable[[RawTest], bool] = lambda test: False,
    notes: list[str] | None = None,
    leverage_adjusted: bool = True,
) -> list[RawTest]:
    """Measure one check over every planned dimension and estimate every group against its reference.

    `is_candidate` says which tests might be flagged: only those get the secondary estimates (the
    regression-adjusted one; for intersections, the excess over their components). Problems that did not
    stop the check are appended to `notes`.
    """
    notes = notes if notes is not None else []
    dimensions = plan_dimensions(config, check=check)
    if not dimensions:
        return []
    query = load_sql(CHECKS_BY_NAME[check].sql)
    params = query.bind(config.sql_values())
    _measurements(con, query.sql, params)
    plan = _Plan(coding, dimensions, check, CHECKS_BY_NAME[check].metric_for(config.outcome_scale),
                 leverage_adjusted=leverage_adjusted, confidence=config.confidence)
    tests = plan.run(con, contrast)

    def shown(test: RawTest) -> bool:
        return test.estimate is not None and min(test.n_customers_group, test.n_customers_reference) \
            >= config.min_group_customers

    flaggable = [t for t in tests if shown(t) and is_candidate(t)]
    adjusted = flaggable if CHECKS_BY_NAME[check].adjusted else []
    excess = [t for t in flaggable if len(t.dimension.columns) > 1]
    if adjusted or excess:
        try:
            tests = plan.with_secondary(con, contrast, tests, adjusted=adjusted, excess=excess)
        except SECONDARY_ERRORS as err:
            what = "regression-adjusted estimates and " if adjusted else ""
            notes.append(f"{what}intersections' excess over their components unavailable ({_one_line(err)})")
    return tests


def list_price_gaps(con: duckdb.DuckDBPyConnection, config: Config, coding: Coding, tests: list[RawTest],
                    contrast: ContrastExecutor = in_process_contrast) -> dict[tuple, Interval]:
    """The same comparisons as these price_gap tests, on the list price shown instead of the price paid
    (sql/audit/list_price_measurements.sql): (dimension, segment value, group) -> ratio, interval, p."""
    _measurements(con, load_sql("audit/list_price_measurements").sql, {})
    dimensions = list(dict.fromkeys(t.dimension for t in tests))
    plan = _Plan(coding, dimensions, "price_gap", "price_ratio", leverage_adjusted=True, confidence=config.confidence)
    return {(t.dimension, t.segment_value, t.group): (t.estimate, t.ci_low, t.ci_high, t.p_value)
            for t in plan.run(con, contrast)}


class _Plan:
    """The line sets, passes and models one check needs, and the turning of their sums into tests."""

    def __init__(self, coding: Coding, dimensions: list[Dimension], check: str, metric: str, *,
                 leverage_adjusted: bool, confidence: float):
        self.coding, self.dimensions, self.check, self.metric = coding, dimensions, check, metric
        self.leverage_adjusted, self.confidence = leverage_adjusted, confidence
        self.main_states: dict[str, PassState] = {}  # per unit key: pass 1, reused by the secondary
        self.linesets: dict[tuple[tuple[str, ...], str | None], list[tuple[str, LineSet]]] = {}
        for d in dimensions:
            key = (d.columns, d.reference)
            if key not in self.linesets:
                self.linesets[key] = _linesets(coding.sets[d.columns], d.reference)

    def passes(self) -> list[tuple[str, str, int, int, list[tuple[str, str, int]], list[Dimension]]]:
        """(unit key, fe key, units, fixed effects, segment, dimensions) per pass over the lines: the first
        segment column nested in the cells shares the main pass; every other one has a pass of its own."""
        nested = [s for s in dict.fromkeys(d.segment_column for d in self.dimensions if d.segment_column)
                  if self.coding.segments[s].cell_key == "xi"][:1]
        first = [d for d in self.dimensions if d.segment_column is None or d.segment_column in nested]
        out = [("xi", "fi", self.coding.n_cells, self.coding.n_fe,
                [(s, self.coding.segments[s].key, len(self.coding.segments[s].values)) for s in nested], first)]
        for s in dict.fromkeys(d.segment_column for d in self.dimensions):
            if s is None or s in nested:
                continue
            seg = self.coding.segments[s]
            out.append((seg.cell_key, seg.fe_key, seg.n_cells, seg.n_fe, [(s, seg.key, len(seg.values))],
                        [d for d in self.dimensions if d.segment_column == s]))
        return out

    def run(self, con: duckdb.DuckDBPyConnection, executor: ContrastExecutor) -> list[RawTest]:
        """Every test, in the order of the passes, dimensions, segment values and groups."""
        tests: list[RawTest] = []
        with_rate = CHECKS_BY_NAME[self.check].contrast == "rate"
        controls = tuple((key, levels) for _, key, levels in self.coding.controls)
        for unit_key, fe_key, n_units, n_fe, segments, dims in self.passes():
            used = list(dict.fromkeys(ls for d in dims for _, ls in self.linesets[(d.columns, d.reference)]))
            models = [Model("contrast", ls, with_rate=with_rate) for ls in used]
            state, sums = contrasts.fit_pass(con, "measurements", unit_key=unit_key, fe_key=fe_key,
                                             n_units=n_units, n_fe=n_fe, segments=segments, models=models,
                                             controls=controls, leverage_adjusted=self.leverage_adjusted,
                                             executor=executor)
            self.main_states[unit_key] = replace(state, fitted=[])  # pass 1's arrays only, not the fits
            contrast_of = dict(zip(used, contrasts.results(state, sums), strict=True))
            for d in dims:
                for slot, value in self._slots(state.slots, d):
                    for group, ls in self.linesets[(d.columns, d.reference)]:
                        code = self._code_in(d.columns, group, ls)
                        test = self._raw_test(d, value, group, contrast_of[ls].get((slot, code)))
                        if test is not None:
                            tests.append(test)
        return tests

    def _slots(self, slots: Slots, d: Dimension) -> list[tuple[int, str]]:
        if d.segment_column is None:
            return [(0, "")]
        values = self.coding.segments[d.segment_column].values
        return [(s, values[slots.values[s]]) for s in range(len(slots)) if slots.columns[s] == d.segment_column]

    def _raw_test(self, d: Dimension, segment_value: str, group: str, found: TestSums | None) -> RawTest | None:
        if found is None or found.n_any_group == 0:
            return None
        group_set = self.coding.sets[d.columns]
        parts = group_set.labels[group_set.code(group)]
        coverage = {"group_lines": _share(found.lines_group_compared, found.lines_group),
                    "reference_lines": _share(found.lines_reference_compared, found.lines_reference),
                    "group_customers": _share(found.n_group, found.n_any_group),
                    "reference_customers": _share(found.n_reference, found.n_any_reference)}
        if found.n_clusters == 0:  # measured, but never in a cell with its reference
            return RawTest(self.check, self.metric, d, segment_value, group, found.n_any_group,
                           found.n_any_reference, None, None, None, None, group_parts=parts, coverage=coverage)
        difference = found.estimate()
        reference = found.reference_rate()
        estimate, low, high, p = metric_interval(self.metric, difference, reference, confidence=self.confidence,
                                                 rate=CHECKS_BY_NAME[self.check].contrast == "rate")
        return RawTest(self.check, self.metric, d, segment_value, group, found.n_group, found.n_reference,
                       estimate, low, high, p, difference=difference,
                       reference_mean=reference[0] if reference else None, group_parts=parts, coverage=coverage)

    def with_secondary(self, con: duckdb.DuckDBPyConnection, executor: ContrastExecutor, tests: list[RawTest],
                       *, adjusted: list[RawTest], excess: list[RawTest]) -> list[RawTest]:
        """The regression-adjusted estimate of `adjusted` and the excess of `excess`, in one more pass.

        Adjusted: additive fixed effects for product x day and for each control (audits/contrasts.py).
        Excess: within the same cells as the main contrast and over every line of the intersection, the
        measurement is regressed on one dummy per level of each component attribute (the first dropped)
        plus the tested group's indicator; the indicator's coefficient is the group's excess.
        """
        found: dict[tuple[str, int], Estimate | None] = {}
        controls = tuple((key, levels) for _, key, levels in self.coding.controls)
        for unit_key, fe_key, n_units, n_fe, segments, dims in self.passes():
            # (kind, test, its line set without tested codes: the model it belongs to)
            jobs = [("adjusted", t, replace(self._lineset_of(t), tested=())) for t in adjusted if t.dimension in dims]
            jobs += [("excess", t, LineSet(self.coding.sets[t.dimension.columns].key,
                                           self.coding.sets[t.dimension.columns].n_codes, ()))
                     for t in excess if t.dimension in dims]
            if not jobs:
                continue
            # one model per kind and line set, testing the codes its jobs ask for, in the slots they ask for
            slots = Slots.build(segments)  # as fit_pass builds them
            # each job's (slot, code): where its test is in its model's results (the code depends on the line set)
            placed = {(kind, id(t)): (next(s for s, v in self._slots(slots, t.dimension) if v == t.segment_value),
                                      self._code_in(t.dimension.columns, t.group, ls)) for kind, t, ls in jobs}
            slot_codes: dict[tuple[str, LineSet], set[tuple[int, int]]] = {}
            components: dict[LineSet, np.ndarray] = {}
            for kind, t, ls in jobs:
                slot_codes.setdefault((kind, ls), set()).add(placed[(kind, id(t))])
                if kind == "excess":
                    components[ls] = _component_dummies(self.coding.sets[t.dimension.columns])
            tested = {key: sorted({code for _, code in pairs}) for key, pairs in slot_codes.items()}
            models = [Model(kind, replace(ls, tested=tuple(tested[(kind, ls)])),
                            components=components[ls] if kind == "excess" else None,
                            slot_codes=frozenset(slot_codes[(kind, ls)]))
                      for kind, ls in tested]
            state, sums = contrasts.fit_pass(con, "measurements", unit_key=unit_key, fe_key=fe_key,
                                             n_units=n_units, n_fe=n_fe, segments=segments, models=models,
                                             controls=controls, leverage_adjusted=self.leverage_adjusted,
                                             executor=executor, reuse=self.main_states.get(unit_key))
            per_model = dict(zip(tested, contrasts.results(state, sums), strict=True))
            for kind, t, ls in jobs:
                result = per_model[(kind, ls)].get(placed[(kind, id(t))])
                found[(kind, id(t))] = result.estimate() if result is not None else None
        out: list[RawTest] = []
        for t in tests:
            key = id(t)  # the test as the jobs knew it, before any replace
            if ("adjusted", key) in found:
                t = replace(t, adjusted=metric_interval(self.metric, found[("adjusted", key)],
                                                        confidence=self.confidence))
            if ("excess", key) in found:
                t = replace(t, excess=found[("excess", key)])
            out.append(t)
        return out

    def _lineset_of(self, t: RawTest) -> LineSet:
        return dict(self.linesets[(t.dimension.columns, t.dimension.reference)])[t.group]

    def _code_in(self, columns: tuple[str, ...], group: str, ls: LineSet) -> int:
        """The group's code within its line set (a pair line set recodes the group 0)."""
        return 0 if ls.pair else self.coding.sets[columns].code(group)


def _linesets(group_set: GroupSet, reference: str | None) -> list[tuple[str, LineSet]]:
    """(group, line set) for every group of a grouping: all groups share one line set without a reference."""
    codes = sorted(group_set.labels)
    if reference is None:
        shared = LineSet(group_set.key, group_set.n_codes, tuple(codes))
        return [(group_set.value(c), shared) for c in codes]
    reference_code = group_set.code(reference)
    out = []
    for c in codes:
        if c == reference_code:
            continue
        pair = (c, reference_code if reference_code is not None else -2)
        out.append((group_set.value(c), LineSet(group_set.key, group_set.n_codes, (0,), pair=pair)))
    return out


def _component_dummies(group_set: GroupSet) -> np.ndarray:
    """Codes x dummies: one dummy per level of each component but its first."""
    columns = []
    for j, size in enumerate(group_set.radix):
        stride = int(np.prod(group_set.radix[j + 1:], dtype=np.int64))
        level = (np.arange(group_set.n_codes) // stride) % size
        columns += [(level == value).astype(np.float64) for value in range(1, size)]
    return np.stack(columns, axis=1) if columns else np.zeros((group_set.n_codes, 0))


def metric_interval(metric: str, estimate: Estimate | None, reference: tuple[float, float] | None = None,
                    *, confidence: float = CONFIDENCE, rate: bool = False) -> Interval:
    """A difference on the measurement's scale as the check's reported metric, interval and p-value; the
    interval and the p-value come from the same estimate and standard error (the test inverts the
    interval), so the interval excludes no-difference exactly when p < 1 - confidence."""
    if estimate is None:
        return None, None, None, None
    if rate:  # a rate ratio: the group's rate over the reference's
        ratio = rate_ratio(estimate, reference, confidence) if reference is not None else None
        return ratio if ratio is not None else (None, None, None, estimate.p_value)
    if metric.endswith("_ratio"):  # a log difference as a ratio
        return (*ratio_from_log(estimate, confidence), estimate.p_value)
    return (estimate.beta, *estimate.interval(confidence), estimate.p_value)


def _measurements(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> None:
    """Temp relation `measurements`: a view, or a table when the SQL has parameters (a view cannot hold them);
    whichever an earlier check left is dropped first (DuckDB will not replace a view with a table)."""
    for kind in ("view", "table"):
        if con.execute("select count(*) from duckdb_" + kind + "s() where temporary and " + kind + "_name = $name",
                       {"name": MEASUREMENTS}).fetchone()[0]:
            con.execute(f"drop {kind} {MEASUREMENTS}")
    con.execute(f"create temp {'table' if params else 'view'} {MEASUREMENTS} as {sql}", params)


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def _one_line(err: BaseException) -> str:
    scrub(err)  # a library's text that may quote the data, reworded
    return one_line(f"{type(err).__name__}: {err}", limit=200)
