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

Memory: pass 1 holds units x groups arrays (a wide line set: its lines' (unit, group) pairs instead) and one
scan's lines, and keeps the pairs with lines; each model a unit table; pass 2 one partition's lines per
worker thread (as many as warehouse.threads), one waiting and the one streaming in.

This module runs the passes (`fit_pass`: reading the lines, pass 2 and its executors) and assembles each
test's sums (`results`); the types it passes around are in audits/contrast_model.py, pass 1 and the
closed-form fits in audits/contrast_fit.py, the compiled loops over lines in audits/line_sums.py.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import duckdb
import numpy as np

from audits.contrast_fit import fit, pass_one
from audits.contrast_model import Executor, Model, PartitionSums, PassState, Slots, TestSums, count_key, line_codes
from audits.sqlfiles import Ident, idents, load_sql
from audits.warehouse import threads

# Lines per partition of customers (a range of customer indexes) streamed out of DuckDB and summed at
# once: bounds what pass 2 holds per partition.
LINES_PER_PARTITION = 250_000
# Pass 1 only sums per unit: larger partitions, fewer units-sized additions.
LINES_PER_SCAN = 2_000_000


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
    streaming the lines again (the secondary models of a check reuse its main pass's).
    """
    if len(segments) > 1:
        raise ValueError("a pass takes at most one segment column")
    state = PassState(unit_key, fe_key, Slots.build(segments), models, controls, leverage_adjusted, n_units, n_fe)
    # fetchall: a result left pending (fetchone) would block the executor's own use of the connection
    n_lines, max_customer = con.execute(load_sql("audit/pass_size").render(relation=Ident(relation))).fetchall()[0]
    state.n_customers = int(max_customer) + 1
    partitions = max(1, math.ceil(n_lines / LINES_PER_PARTITION))
    if reuse is not None and (reuse.unit_key, reuse.fe_key, reuse.n_units, reuse.slots.segment_keys) == (
            unit_key, fe_key, n_units, state.slots.segment_keys) and reuse.controls == controls:
        state.fe_of_unit, state.control_of_unit = reuse.fe_of_unit, reuse.control_of_unit
        state.segment_of_unit = reuse.segment_of_unit
        state.counts = {key: reuse.counts[key] for key in {count_key(m.lineset) for m in models} & reuse.counts.keys()}
    if any(count_key(m.lineset) not in state.counts for m in models):
        scans = max(1, math.ceil(n_lines / LINES_PER_SCAN))
        pass_one(state, _stream(con, relation, state, scans, first_pass=True), n_lines)
    state.fitted = [fit(state, model) for model in models]
    return state, (executor or in_process)(con, relation, state, partitions)


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


def in_process(con: duckdb.DuckDBPyConnection, relation: str, state: PassState, partitions: int) -> PartitionSums:
    """Pass 2 over every partition of customers in this process, added up in partition order.

    The compiled walk releases the GIL: with more than one of DuckDB's threads allowed (warehouse.threads),
    that many walks run at once in worker threads while the next partitions stream out of DuckDB; one
    partition waits beyond those being walked, so memory stays a few partitions' lines."""
    total: PartitionSums = {}
    workers = min(threads(con), partitions)
    if workers < 2:
        for lines in _stream(con, relation, state, partitions):
            add_sums(total, partition_sums(state, lines))
        return total
    pending: deque[Future[PartitionSums]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="pass2") as pool:
        for lines in _stream(con, relation, state, partitions):
            pending.append(pool.submit(partition_sums, state, lines))
            if len(pending) > workers:
                add_sums(total, pending.popleft().result())
        while pending:
            add_sums(total, pending.popleft().result())
    return total


def add_sums(total: PartitionSums, part: PartitionSums) -> None:
    """Add one partition's sums into `total`, in place (every sum is over customers, so partitions add up)."""
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
    query = load_sql("audit/pass_lines").render(columns=idents(state.columns(first_pass=first_pass)),
                                                 relation=Ident(relation))
    for partition in range(partitions):
        low = partition * state.n_customers // partitions
        high = (partition + 1) * state.n_customers // partitions
        yield con.execute(query, {"low": low, "high": high}).fetchnumpy()


def partition_sums(state: PassState, lines: dict[str, np.ndarray]) -> PartitionSums:
    """Pass 2 over one partition of customers: per model, slot x code sums (additive over partitions).

    The lines are summed in (customer, segment) order (sorted here if they do not come sorted): per model
    one walk (`line_sums.add_cluster_scores`) that sums each customer's and row's score line by line and
    squares it when its lines end, so no per-row arrays are built.
    """
    from audits import line_sums  # numba: imported by the first pass, not by every import of the audit

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
        line_sums.add_cluster_scores(customer, segment, offset, unit, line_codes(lines, model.lineset), y,
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
