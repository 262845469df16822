"""Every disparity test of a check in two streamed passes over its lines, customers as clusters.

All three estimates the audit reports are one model, fitted for many groups at once:

    y_i = alpha[unit_i] + gamma' q_i + beta * D_i + e_i,      D_i = 1 on the tested group's lines

- the within-cell contrast: the unit is the cell (product x day x currency x controls), no covariates;
- the regression-adjusted estimate (price checks): the unit is product x day x currency, q the controls'
  dummies (one level of each dropped), constant within a cell;
- an intersection's excess over its components: the unit is the cell, q the component attributes'
  dummies, which follow from the line's intersection group.

alpha is absorbed by demeaning within unit (Frisch-Waugh-Lovell); the few covariates are partialled out
with their normal equations, which depend only on per unit x group counts and sums. So:

Pass 1 streams the lines once and sums counts n[unit, group] and sums of y. From them come, for every
test and every segment value, the coefficients beta (and the covariates' pi, pi_y), in closed form.
Pass 2 goes over the lines again, one partition of customers at a time, and with beta and pi known sums
each customer's (and customer x segment value's) score sum_i k_i u_i (e_i - beta u_i), u and e the line's
group indicator and measurement net of the unit mean and the covariates, in one compiled walk over the
lines per model (audits/line_sums.py). Squared and added per test the scores give the customer-clustered
sandwich, split into the group's customers and the others (for the Welch-Satterthwaite degrees of
freedom). k_i = sqrt(n/(n-1)) for the line's unit of n lines undoes the shrinkage of demeaning (the unit
mean's leverage, as in HC2); with `leverage_adjusted=False` k = 1, plain CR1.

A segment column nested in the units (category: every product is in one) shares pass 1 and pass 2's
walk: a line adds to its customer's score and to its customer-in-segment's. Every output of pass 2 is a
sum over customers, so partitions of customers computed apart (other processes, Dask workers) add up to
the whole.

A pass has at most one segment column: the main pass may carry one nested segment column; every other
segment column gets a pass of its own (audits/disparity.py plans them).

Memory: pass 1 holds units x groups arrays; pass 2 holds one partition's lines, or, for a pass of at most
LINES_PER_SCAN lines, all of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import duckdb
import numpy as np

from audits.stats import Estimate, clustered_estimate, welch_satterthwaite_df

if TYPE_CHECKING:
    import scipy.sparse as sp

Kind = Literal["contrast", "adjusted", "excess"]
# Relative size below which a covariate's variance, or D's variance left after the covariates, is zero.
RANK_TOLERANCE = 1e-9
# Lines per partition of customers (a range of customer indexes) streamed out of DuckDB and summed at
# once: bounds what pass 2 holds per partition.
LINES_PER_PARTITION = 250_000
# Pass 1 only sums per unit: larger partitions, fewer units-sized additions. A pass of at most this many
# lines reads them once and holds them for both passes (fit_pass).
LINES_PER_SCAN = 2_000_000
PASS_TWO_THREADS = 2  # partitions summed at once


@dataclass(frozen=True)
class LineSet:
    """The lines one family of tests compares: every line of a grouping, or of a group and its reference."""

    set_key: str  # code column in the measurements
    n_codes: int
    tested: tuple[int, ...]  # codes tested against all other codes of the line set
    pair: tuple[int, int] | None = None  # (group, reference): only these two codes, recoded 0 and 1

    @property
    def width(self) -> int:
        return 2 if self.pair else self.n_codes


@dataclass(frozen=True)
class Model:
    """Which estimate to fit over a line set (see module docstring)."""

    kind: Kind
    lineset: LineSet
    # excess: the dummies of each intersection code, codes x covariates (components' levels, first dropped)
    components: np.ndarray | None = None
    with_rate: bool = False  # contrast: also the reference's rate on the contrast's weights (for ratios)
    # the (slot, tested code) pairs to compute, None: all (a secondary model is asked for a few of them)
    slot_codes: frozenset[tuple[int, int]] | None = None

    def needed(self, n_slots: int) -> np.ndarray:
        """uint8 slot x tested column: 1 for the tests to compute."""
        if self.slot_codes is None:
            return np.ones((n_slots, len(self.lineset.tested)), np.uint8)
        needed = np.zeros((n_slots, len(self.lineset.tested)), np.uint8)
        column = {code: j for j, code in enumerate(self.lineset.tested)}
        for slot, code in self.slot_codes:
            needed[slot, column[code]] = 1
        return needed


@dataclass
class TestSums:
    """Sums over customers for one tested group in one segment value (all additive over customers)."""

    beta: float | None
    bread: float = 0.0  # sum of D~^2 (unweighted): the sandwich's bread
    meat_group: float = 0.0  # sums of squared customer scores over the group's customers and the others
    meat_reference: float = 0.0
    n_clusters: int = 0
    n_group: int = 0
    rate: float | None = None  # contrast with_rate: the reference's rate, its weight and its sandwich
    rate_weight: float = 0.0
    rate_meat: float = 0.0
    n_any_group: int = 0  # customers with any line of the group / of the reference (cells or not)
    n_any_reference: int = 0
    n_reference: int = 0  # customers with a reference line in a cell that also has the group's lines
    # lines of the group and of the reference, and those in cells that also have the other side's lines
    lines_group: float = 0.0
    lines_group_compared: float = 0.0
    lines_reference: float = 0.0
    lines_reference_compared: float = 0.0

    def estimate(self) -> Estimate | None:
        if self.beta is None or self.n_clusters < 2 or self.bread <= 0:
            return None
        df = welch_satterthwaite_df(self.meat_group, self.n_group, self.meat_reference,
                                    self.n_clusters - self.n_group)
        sandwich = (self.meat_group + self.meat_reference) / self.bread**2
        return clustered_estimate(self.beta, sandwich, n_clusters=self.n_clusters, df=df)

    def reference_rate(self) -> tuple[float, float] | None:
        """The reference's rate and its clustered variance (ratio estimator over reference customers)."""
        if self.rate is None:
            return None
        g = self.n_clusters - self.n_group
        if g < 2:
            return self.rate, 0.0
        return self.rate, g / (g - 1) * self.rate_meat / self.rate_weight**2


@dataclass(frozen=True)
class Slots:
    """Where results go: slot 0 is the whole population, then one slot per nested segment value."""

    columns: tuple[str | None, ...]  # per slot: segment column (None overall)
    values: tuple[int, ...]  # per slot: segment code (-1 overall)
    segment_keys: tuple[str, ...]  # the pass's nested segment code columns, in order
    offsets: tuple[int, ...]  # first slot of each segment column

    @classmethod
    def build(cls, segments: list[tuple[str, str, int]]) -> Slots:
        columns: list[str | None] = [None]
        values, offsets = [-1], []
        for column, _, n_values in segments:
            offsets.append(len(columns))
            columns += [column] * n_values
            values += list(range(n_values))
        return cls(tuple(columns), tuple(values), tuple(k for _, k, _ in segments), tuple(offsets))

    def __len__(self) -> int:
        return len(self.columns)


@dataclass
class PassState:
    """Pass 1's results for one pass: unit statistics per line set and every model's coefficients."""

    unit_key: str
    fe_key: str
    slots: Slots
    models: list[Model]
    controls: tuple[tuple[str, int], ...]  # (code column, levels)
    leverage_adjusted: bool
    n_units: int
    n_fe: int
    n_customers: int = 0
    fe_of_unit: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    control_of_unit: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    segment_of_unit: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    # n, sum y per unit x code, per line set's codes (see _count_key)
    counts: dict[tuple[str, tuple[int, int] | None], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    fitted: list[Fitted] = field(default_factory=list)
    # the pass's lines in (customer, segment codes) order, when they were read once and held (fit_pass)
    lines: dict[str, np.ndarray] | None = None

    def columns(self, *, first_pass: bool = False) -> list[str]:
        """What a pass reads; pass 1 always reads the fixed effect and controls of each unit, so that
        its results serve every later model over the same lines (`fit_pass(reuse=...)`)."""
        keys = {self.unit_key, "ci", "y", *self.slots.segment_keys, *(m.lineset.set_key for m in self.models)}
        if first_pass or any(m.kind == "adjusted" for m in self.models):
            keys |= {self.fe_key, *(c for c, _ in self.controls)}
        return sorted(keys)

    @property
    def n_slots(self) -> int:
        return len(self.slots)


def _count_key(lineset: LineSet) -> tuple[str, tuple[int, int] | None]:
    """Line sets with the same codes share pass 1's counts, whatever they test."""
    return lineset.set_key, lineset.pair


@dataclass
class Fitted:
    """One model's per slot x tested code coefficients, and the per-unit row pass 2 reads."""

    model: Model
    # per pass unit (see _fit): k, y_bar, the tested codes' shares, per covariate q_bar or (adjusted) z
    unit_table: np.ndarray
    beta: np.ndarray  # slot x code (nan: not identified)
    pi: np.ndarray  # slot x code x covariate
    pi_y: np.ndarray  # slot x covariate
    bread: np.ndarray  # slot x code
    rate: np.ndarray | None = None  # slot x code
    rate_weight: np.ndarray | None = None
    # contrasts: slot x code line counts of the group and the reference, all and in cells with both sides
    coverage: dict[str, np.ndarray] = field(default_factory=dict)
    # the totals loop's per-slot inputs, for the tested codes, C-ordered (one compiled signature):
    # beta, pi, pi_y, rate (0 where not identified) and the tests to compute; see `_totals_inputs`
    totals_inputs: tuple[np.ndarray, ...] = ()


# A pass-2 executor: given the connection, the measurements relation, pass 1's state and a number of
# partitions, return every partition's sums (`partition_sums`) added up. The default, `in_process`,
# sums them in this process; flows/dask_contrast.py sends each to a Dask worker.
PartitionSums = dict[str, np.ndarray]
Executor = Callable[[duckdb.DuckDBPyConnection, str, PassState, int], PartitionSums]


def fit_pass(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    *,
    unit_key: str,
    fe_key: str,
    n_units: int,
    n_fe: int,
    segments: list[tuple[str, str, int]],
    models: list[Model],
    controls: tuple[tuple[str, int], ...] = (),
    leverage_adjusted: bool = True,
    executor: Executor | None = None,
    reuse: PassState | None = None,
) -> tuple[PassState, PartitionSums]:
    """Both passes over `relation` (a table or view of measurements) for the given models.

    `segments`: at most one segment column (name, code column, number of values) nested in the units.
    `reuse`: an earlier pass over the same relation and units, whose pass-1 counts are taken instead of
    streaming the lines again (the secondary models of a check reuse its main pass's), and its lines
    when it held them.

    Passes in this process over at most LINES_PER_SCAN lines read them once and hold them (at most a few
    hundred MB): pass 1, pass 2 and a secondary pass then share one read, where streaming would query
    DuckDB for pass 1, again per partition of pass 2 and again for the secondary pass (a 30-day audit:
    nine queries a check). Larger passes stream, in bounded memory.
    """
    if len(segments) > 1:
        raise ValueError("a pass takes at most one segment column")
    state = PassState(unit_key, fe_key, Slots.build(segments), models, controls, leverage_adjusted, n_units, n_fe)
    # fetchall: a result left pending (fetchone) would block the executor's own use of the connection
    n_lines, max_customer = con.execute(f"select count(*), coalesce(max(ci), -1) from {relation}").fetchall()[0]
    state.n_customers = int(max_customer) + 1
    partitions = max(1, math.ceil(n_lines / LINES_PER_PARTITION))
    held = executor in (None, in_process) and n_lines <= LINES_PER_SCAN
    if reuse is not None and (reuse.unit_key, reuse.fe_key, reuse.n_units, reuse.slots.segment_keys) == (
            unit_key, fe_key, n_units, state.slots.segment_keys) and reuse.controls == controls:
        state.fe_of_unit, state.control_of_unit = reuse.fe_of_unit, reuse.control_of_unit
        state.segment_of_unit = reuse.segment_of_unit
        state.counts = {key: reuse.counts[key] for key in {_count_key(m.lineset) for m in models} & reuse.counts.keys()}
        if held and reuse.lines is not None and set(state.columns()) <= reuse.lines.keys():
            state.lines = reuse.lines
    if any(_count_key(m.lineset) not in state.counts for m in models):
        if held:
            state.lines = _read_sorted(con, relation, state, state.columns(first_pass=True))
            _first_pass(state, iter([state.lines]))
        else:
            scans = max(1, math.ceil(n_lines / LINES_PER_SCAN))
            _first_pass(state, _prefetched(_stream(con, relation, state, scans, first_pass=True)))
    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        state.fitted = list(pool.map(lambda model: _fit(state, model), models))
    if held:
        if state.lines is None:
            state.lines = _read_sorted(con, relation, state, state.columns())
        return state, _held_sums(state, state.lines, partitions)
    return state, (executor or in_process)(con, relation, state, partitions)


def _read_sorted(con: duckdb.DuckDBPyConnection, relation: str, state: PassState, columns: list[str]
                 ) -> dict[str, np.ndarray]:
    """All of the relation's lines at once (the columns are validated names), in (customer, segment codes)
    order, the order pass 2 sums them in (sorted here, once, if DuckDB's parallel scan mixed them)."""
    lines = con.execute(f"select {', '.join(columns)} from {relation}").fetchnumpy()
    return _in_line_order(state, lines)[0]


def _in_line_order(state: PassState, lines: dict[str, np.ndarray]
                   ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The lines in (customer, segment codes) order (sorted only if they do not come so), with those keys."""
    lines = {name: np.asarray(values) for name, values in lines.items()}
    keys = [np.asarray(lines["ci"], dtype=np.int64)] + [np.asarray(lines[k], dtype=np.int64)
                                                         for k in state.slots.segment_keys]
    if len(keys[0]) > 1 and not _is_sorted(keys):
        order = np.lexsort(keys[::-1])
        lines = {name: values[order] for name, values in lines.items()}
        keys = [key[order] for key in keys]
    return lines, keys


def _held_sums(state: PassState, lines: dict[str, np.ndarray], partitions: int) -> PartitionSums:
    """Pass 2 over held lines (sorted by customer): the same partitions of customers as `in_process`
    streams, as slices of the held arrays."""
    bounds = np.searchsorted(lines["ci"], [p * state.n_customers // partitions for p in range(partitions + 1)])
    return _sum_partitions(state, ({name: values[low:high] for name, values in lines.items()}
                                   for low, high in zip(bounds[:-1], bounds[1:], strict=True)))


def in_process(con: duckdb.DuckDBPyConnection, relation: str, state: PassState, partitions: int) -> PartitionSums:
    """Pass 2 over every partition of customers in this process: DuckDB streams the next partition
    while threads sum the previous ones (numpy and scipy release the GIL in their loops)."""
    return _sum_partitions(state, _stream(con, relation, state, partitions))


def _sum_partitions(state: PassState, partitions: Iterator[dict[str, np.ndarray]]) -> PartitionSums:
    """Each partition's sums, by threads side by side (at most one more partition waiting than threads),
    added up in the partitions' order."""
    total: PartitionSums = {}
    workers = _threads()
    if workers == 1:
        for lines in partitions:
            add_sums(total, partition_sums(state, lines))
        return total
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[Future[PartitionSums]] = []
        for lines in partitions:
            pending.append(pool.submit(partition_sums, state, lines))
            while len(pending) > workers:
                add_sums(total, pending.pop(0).result())
        for future in pending:
            add_sums(total, future.result())
    return total


def load_in_background() -> Future[None]:
    """Import numba, scipy.sparse and scipy.special and load the compiled loops (audits/line_sums.py) on a
    thread: in a new process this costs about 0.6 s (the imports 0.15 s each, numba's first call 0.25 s),
    which the audit spends meanwhile in DuckDB building the lines (DuckDB releases the GIL). The audit
    waits for the returned future before its first pass, so an error here is raised there."""

    def load() -> None:
        import scipy.sparse  # noqa: F401
        import scipy.special  # noqa: F401  (audits/stats.py)

        from audits.line_sums import compile_kernels

        compile_kernels()

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-compiled-loops")
    try:
        return pool.submit(load)
    finally:
        pool.shutdown(wait=False)


def _threads() -> int:
    return max(1, min(PASS_TWO_THREADS, os.cpu_count() or 1))


def add_sums(total: PartitionSums, part: PartitionSums) -> None:
    for name, values in part.items():
        if name in total:
            total[name] = total[name] + values
        else:
            total[name] = values.copy()


def partition_of(state: PassState, partitions: int) -> str:
    """SQL for a line's partition: a range of customer indexes (ci is dense, coded_lines is sorted by it)."""
    return f"(ci * {int(partitions)}) // {max(state.n_customers, 1)}"


def _stream(con: duckdb.DuckDBPyConnection, relation: str, state: PassState, partitions: int, *,
            first_pass: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """The lines of one range of customers at a time, as numpy arrays (the columns are validated names).

    coded_lines is stored sorted by customer and segment codes, so each range reads only its own row
    groups and comes in the order pass 2 sums it (`partition_sums` sorts what does not).
    """
    query = f"select {', '.join(state.columns(first_pass=first_pass))} from {relation} where ci >= $low and ci < $high"
    for partition in range(partitions):
        low = partition * state.n_customers // partitions
        high = (partition + 1) * state.n_customers // partitions
        yield con.execute(query, {"low": low, "high": high}).fetchnumpy()


def _prefetched(chunks: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """The same chunks, the next one fetched in a thread while the caller works on the current one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, chunks, None)
        while (chunk := pending.result()) is not None:
            pending = pool.submit(next, chunks, None)
            yield chunk


def _codes(lines: dict[str, np.ndarray], lineset: LineSet) -> np.ndarray:
    codes = np.asarray(lines[lineset.set_key], dtype=np.int64)
    if lineset.pair is None:
        return codes
    group, reference = lineset.pair
    return np.where(codes == group, 0, np.where(codes == reference, 1, -1))


def _first_pass(state: PassState, chunks: Iterator[dict[str, np.ndarray]]) -> None:
    from audits import line_sums  # numba: imported meanwhile by load_in_background

    units = state.n_units
    state.fe_of_unit = np.zeros(units, np.int64)
    state.control_of_unit = np.zeros((units, len(state.controls)), np.int64)
    state.segment_of_unit = np.full((units, len(state.slots.segment_keys)), -1, np.int64)
    linesets = list({_count_key(m.lineset): m.lineset for m in state.models}.values())
    for ls in linesets:
        state.counts[_count_key(ls)] = (np.zeros((units, ls.width)), np.zeros((units, ls.width)))
    for lines in chunks:
        unit = np.asarray(lines[state.unit_key], dtype=np.int64)
        if state.fe_key in lines:
            state.fe_of_unit[unit] = lines[state.fe_key]
        for j, (column, _) in enumerate(state.controls):
            if column in lines:
                state.control_of_unit[unit, j] = lines[column]
        for j, key in enumerate(state.slots.segment_keys):
            state.segment_of_unit[unit, j] = lines[key]
        y = np.asarray(lines["y"], dtype=np.float64)
        for ls in linesets:
            line_sums.add_unit_counts(unit, _codes(lines, ls), y, *state.counts[_count_key(ls)])


def _summing(into: np.ndarray, n_into: int, items: np.ndarray | None = None, n_items: int | None = None
             ) -> sp.csr_matrix:
    """n_into x n_items: row into[i] sums item items[i] (default: item i); a product adds items up by target."""
    import scipy.sparse as sp  # imported meanwhile by load_in_background

    items = np.arange(len(into)) if items is None else items
    return sp.csr_matrix((np.ones(len(into)), (into, items)), shape=(n_into, len(into) if n_items is None else n_items))


def _slot_matrix(segment_of: np.ndarray, offsets: tuple[int, ...], n_slots: int) -> sp.csr_matrix:
    """Slots x units: 1 where the unit belongs to the slot (the whole population's slot 0, and its segment
    value's slot; a unit without lines in the pass adds nothing anyway)."""
    n = segment_of.shape[0]
    rows, cols = [np.zeros(n, np.int64)], [np.arange(n)]
    for j, offset in enumerate(offsets):
        inside = segment_of[:, j] >= 0
        rows.append(offset + segment_of[inside, j])
        cols.append(np.flatnonzero(inside))
    return _summing(np.concatenate(rows), n_slots, np.concatenate(cols), n)


def _fit(state: PassState, model: Model) -> Fitted:
    """Coefficients of every tested code in every slot, from the unit statistics (closed form)."""
    n_cell, sy_cell = state.counts[_count_key(model.lineset)]
    width = model.lineset.width
    if model.kind == "adjusted":
        unit_of_unit = state.fe_of_unit
        to_fe = _summing(unit_of_unit, state.n_fe)
        n, sy = to_fe @ n_cell, to_fe @ sy_cell
        # a fixed effect's segment values are its cells' (nested: every cell of it has the same); a cell
        # without lines in this pass has neither, and must not write its defaults over fixed effect 0's
        segment_of = np.full((state.n_fe, state.segment_of_unit.shape[1]), -1, np.int64)
        has_lines = n_cell.sum(axis=1) > 0
        segment_of[unit_of_unit[has_lines]] = state.segment_of_unit[has_lines]
    else:
        unit_of_unit = np.arange(state.n_units)
        n, sy = n_cell, sy_cell
        segment_of = state.segment_of_unit
    slots = _slot_matrix(segment_of, state.slots.offsets, state.n_slots)
    N, SY = n.sum(axis=1), sy.sum(axis=1)
    safe = np.where(N > 0, N, 1)
    share, y_bar = n / safe[:, None], SY / safe
    k = np.where(N > 1, np.sqrt(N / np.where(N > 1, N - 1, 1)), 0.0)
    if not state.leverage_adjusted:
        k = (N > 1).astype(np.float64)

    # covariates: per pass unit (controls) or per code (components)
    q_of_unit = None
    if model.kind == "adjusted":
        q_of_unit = _control_dummies(state)
        q_sum = to_fe @ (q_of_unit * n_cell.sum(axis=1)[:, None])  # fixed effect x covariate: sum of q
    elif model.kind == "excess":
        q_sum = n @ model.components
    else:
        q_sum = np.zeros((len(N), 0))
    n_cov = q_sum.shape[1]
    q_bar = q_sum / safe[:, None]

    # unweighted normal equations per slot (sums over units, see module docstring)
    suu = slots @ (n * (1 - share))
    suy = slots @ (sy - n * y_bar[:, None])
    if n_cov:
        if model.kind == "adjusted":  # the controls' dummies are constant within a cell: sum over cells
            cell_slots = _slot_matrix(state.segment_of_unit, state.slots.offsets, state.n_slots)
            sqq_raw = _qq(cell_slots, q_of_unit * n_cell.sum(axis=1)[:, None], q_of_unit)
            sqy_raw = cell_slots @ (q_of_unit * sy_cell.sum(axis=1)[:, None])
            squ_raw = np.stack([cell_slots @ (n_cell * q_of_unit[:, [l]]) for l in range(n_cov)], axis=2)
        else:  # the components' dummies follow from the code
            comps = model.components
            per_code = slots @ n
            sqq_raw = np.einsum("sg,gl,gm->slm", per_code, comps, comps)
            sqy_raw = (slots @ sy) @ comps
            squ_raw = per_code[:, :, None] * comps[None, :, :]
        sqq = sqq_raw - _qq(slots, N[:, None] * q_bar, q_bar)
        sqy = sqy_raw - slots @ (q_bar * SY[:, None])
        squ = squ_raw - np.stack([slots @ (n * q_bar[:, [l]]) for l in range(n_cov)], axis=2)
    n_slots = state.n_slots
    beta = np.full((n_slots, width), np.nan)
    pi = np.zeros((n_slots, width, n_cov))
    pi_y = np.zeros((n_slots, n_cov))
    bread = np.zeros((n_slots, width))
    for s in range(n_slots):
        inverse = _scaled_pinv(sqq[s]) if n_cov else np.zeros((0, 0))
        pi_y[s] = inverse @ sqy[s] if n_cov else pi_y[s]
        for g in model.lineset.tested:
            solved = solve_treatment(inverse, pi_y[s], squ[s, g] if n_cov else np.zeros(0), suu[s, g], suy[s, g])
            if solved is not None:
                beta[s, g], pi[s, g], bread[s, g] = solved
    # Pass 2 reads one row per line (random access to units is what it waits for): per pass unit, k, y_bar,
    # the tested codes' shares, and per covariate q_bar, or for the adjusted model the cell's z = q - q_bar
    per_unit = [k, y_bar, share[:, list(model.lineset.tested)], q_bar]
    if model.kind == "adjusted":  # to the pass unit (cell), where the controls' deviation is constant
        per_unit = [values[unit_of_unit] for values in per_unit[:3]] + [q_of_unit - q_bar[unit_of_unit]]
    fitted = Fitted(model, np.column_stack(per_unit), beta, pi, pi_y, bread)
    if model.kind == "contrast":
        both = (n > 0) & (n < N[:, None])  # the unit has lines of the code and of other codes
        reference = N[:, None] - n
        fitted.coverage = {"lines_group": slots @ n, "lines_group_compared": slots @ (n * both),
                           "lines_reference": slots @ reference, "lines_reference_compared": slots @ (reference * both)}
    if model.with_rate:
        # the reference's lines weighted by the group's share of their cell: sum p * y0 / sum p * n0
        fitted.rate_weight = slots @ (share * (N[:, None] - n))
        ref_sum = slots @ (share * (SY[:, None] - sy))
        fitted.rate = np.where(fitted.rate_weight > 0, ref_sum / np.where(fitted.rate_weight > 0,
                                                                           fitted.rate_weight, 1), np.nan)
    fitted.totals_inputs = _totals_inputs(fitted)
    return fitted


def _totals_inputs(fitted: Fitted) -> tuple[np.ndarray, ...]:
    """What the totals loop reads of the fit, once per model rather than once per slice of customers."""
    tested = list(fitted.model.lineset.tested)
    beta = np.ascontiguousarray(np.nan_to_num(fitted.beta[:, tested]))
    pi, pi_y = np.ascontiguousarray(fitted.pi[:, tested]), np.ascontiguousarray(fitted.pi_y)
    rate = np.ascontiguousarray(np.nan_to_num(fitted.rate[:, tested])) if fitted.rate is not None else np.zeros((0, 0))
    return beta, pi, pi_y, rate, fitted.model.needed(fitted.beta.shape[0])


def solve_treatment(inverse: np.ndarray, pi_y: np.ndarray, squ: np.ndarray, suu: float, suy: float
                    ) -> tuple[float, np.ndarray, float] | None:
    """beta of D with the covariates partialled out (Frisch-Waugh-Lovell on the normal equations).

    `inverse` is a generalised inverse of the covariates' demeaned cross-products Sqq, `pi_y` = inverse Sqy,
    `squ` = sum q~ u, `suu` = sum u^2, `suy` = sum u y~ (u = D demeaned within unit). Returns (beta, pi,
    sum of D~^2), or None when D has no variance left once the covariates are accounted for.
    """
    if suu <= 0:
        return None
    pi = inverse @ squ
    left = suu - pi @ squ
    if left <= RANK_TOLERANCE * suu:
        return None
    return (suy - pi_y @ squ) / left, pi, left


def _qq(slots: sp.csr_matrix, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per slot: sum over units of a b' (units x covariates each)."""
    n_cov = a.shape[1]
    out = np.zeros((slots.shape[0], n_cov, n_cov))
    for l in range(n_cov):
        for m in range(n_cov):
            out[:, l, m] = slots @ (a[:, l] * b[:, m])
    return out


def _control_dummies(state: PassState) -> np.ndarray:
    """Pass unit x dummy: one dummy per level of each control but its first (the unit's level is constant)."""
    columns = []
    for j, (_, levels) in enumerate(state.controls):
        for level in range(1, levels):
            columns.append((state.control_of_unit[:, j] == level).astype(np.float64))
    return np.stack(columns, axis=1) if columns else np.zeros((state.n_units, 0))


def _scaled_pinv(matrix: np.ndarray) -> np.ndarray:
    """A generalised inverse of a symmetric positive semi-definite matrix (covariates without variance dropped)."""
    diagonal = np.diag(matrix).copy()
    keep = diagonal > RANK_TOLERANCE * max(diagonal.max(initial=0.0), 0.0)
    out = np.zeros_like(matrix)
    if not keep.any():
        return out
    sub = matrix[np.ix_(keep, keep)]
    scale = 1 / np.sqrt(np.diag(sub))
    inverse = scale[:, None] * np.linalg.pinv(sub * scale[:, None] * scale[None, :], rtol=RANK_TOLERANCE,
                                              hermitian=True) * scale[None, :]
    out[np.ix_(keep, keep)] = inverse
    return out


def partition_sums(state: PassState, lines: dict[str, np.ndarray]) -> PartitionSums:
    """Pass 2 over one partition of customers: per model, slot x code sums (additive over partitions).

    The lines are summed in (customer, segment) order (sorted here if they do not come sorted): per model
    one walk (`line_sums.add_cluster_scores`) that sums each customer's and row's score line by line and
    squares it when its lines end, so no per-row arrays are built.
    """
    from audits import line_sums  # numba: loaded meanwhile by load_in_background

    if len(lines["y"]) == 0:
        return {}
    lines, keys = _in_line_order(state, lines)
    out: PartitionSums = {}
    customer = keys[0]
    segment = keys[1] if len(keys) > 1 else np.zeros(0, np.int64)
    offset = state.slots.offsets[0] if len(keys) > 1 else 0
    unit = np.asarray(lines[state.unit_key], dtype=np.int64)
    y = np.asarray(lines["y"], dtype=np.float64)
    for index, fitted in enumerate(state.fitted):
        model = fitted.model
        n_slots, t = fitted.beta.shape[0], len(model.lineset.tested)
        totals = {name: np.zeros((n_slots, t)) for name in
                  ("meat_group", "meat_reference", "n_clusters", "n_group", "n_reference", "rate_meat")}
        totals["n_any_code"] = np.zeros((n_slots, model.lineset.width))
        totals["n_any"] = np.zeros((n_slots, 1))
        code_q = np.ascontiguousarray(model.components, dtype=np.float64) if model.kind == "excess" \
            else np.zeros((0, 0))
        beta, pi, pi_y, rate, needed = fitted.totals_inputs
        line_sums.add_cluster_scores(customer, segment, offset, unit, _codes(lines, model.lineset), y,
                                     fitted.unit_table, np.asarray(model.lineset.tested, dtype=np.int64), code_q,
                                     model.kind == "contrast", beta, pi, pi_y, rate, needed, totals["meat_group"],
                                     totals["meat_reference"], totals["n_clusters"], totals["n_group"],
                                     totals["n_reference"], totals["rate_meat"], totals["n_any_code"],
                                     totals["n_any"])
        for name, values in totals.items():
            out[f"{index}:{name}"] = values
    return out


def _is_sorted(keys: list[np.ndarray]) -> bool:
    """Are the lines in (customer, segment code) order?"""
    previous_equal = np.ones(len(keys[0]) - 1, dtype=bool)
    for key in keys:
        step = np.diff(key)
        if (previous_equal & (step < 0)).any():
            return False
        previous_equal &= step == 0
    return True


def results(state: PassState, sums: PartitionSums) -> list[dict[tuple[int, int], TestSums]]:
    """Per model: (slot, tested code) -> its sums, ready for `TestSums.estimate`."""
    out = []
    for index, fitted in enumerate(state.fitted):
        per_test = {}
        lineset = fitted.model.lineset

        def total(name: str, s: int, column: int) -> float:
            values = sums.get(f"{index}:{name}")
            return float(values[s, column]) if values is not None else 0.0

        for s in range(state.n_slots):
            for column, g in enumerate(lineset.tested):
                if fitted.model.slot_codes is not None and (s, g) not in fitted.model.slot_codes:
                    continue  # not computed
                beta = fitted.beta[s, g]
                test = TestSums(beta=None if np.isnan(beta) else float(beta))
                test.meat_group, test.meat_reference = total("meat_group", s, column), total("meat_reference", s, column)
                test.n_clusters = int(round(total("n_clusters", s, column)))
                test.n_group = int(round(total("n_group", s, column)))
                test.n_reference = int(round(total("n_reference", s, column)))
                for name, values in fitted.coverage.items():
                    setattr(test, name, float(values[s, g]))
                test.bread = float(fitted.bread[s, g])
                test.n_any_group = int(round(total("n_any_code", s, g)))
                if lineset.pair is None:
                    test.n_any_reference = int(round(total("n_any", s, 0))) - test.n_any_group
                else:
                    test.n_any_reference = int(round(total("n_any_code", s, 1)))
                if fitted.rate is not None and not np.isnan(fitted.rate[s, g]):
                    test.rate, test.rate_meat = float(fitted.rate[s, g]), total("rate_meat", s, column)
                    test.rate_weight = float(fitted.rate_weight[s, g])
                per_test[(s, g)] = test
        out.append(per_test)
    return out
