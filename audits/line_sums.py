"""The disparity engine's loops over lines, compiled (numba): pass 2's per-customer scores
(`add_cluster_scores`), pass 1's unit counts (`add_unit_counts`) and their (unit, code) pairs with lines
(`pairs_of`), and the fits' walks over those pairs: each unit's totals and pass 2's unit table
(`unit_statistics`), the sums per slot and code of the model's normal equations (`add_pair_slot_sums`) and
the pairs' cross-products with unit statistics (`add_pair_slot_products`); and over units, the
covariates' cross-products (`add_slot_products`).

`add_cluster_scores` walks a partition's lines in (customer, segment value) order. For each line and
each tested code g of the model, with the line's unit u, weight k = k[u], centred measurement
y~ = y - y_bar[u], the group indicator D_g, the group's share p_g of the unit, and the covariates'
deviations z = q - q_bar[u] (the controls' dummies of the line's cell for the adjusted model, the
component attributes' dummies of the line's code for an intersection's excess; none otherwise), it adds
to the score of each cluster the line belongs to (its customer, in the overall slot; its customer within
its segment value, in that value's slot)

    k u (e - beta u),    u = D_g - p_g - pi_g'z,    e = y~ - pi_y'z

with the slot's beta and pi, known from pass 1, and squares the score into the slot's sandwich when the
cluster's lines end (split into the group's customers and the others), with the counts the judgement
needs and the reference's rate residual sum (1 - D_g) p_g (y - rate). Lines outside the model's line set
(code -1) add nothing. Each line reads one row of the model's unit table (k, y_bar, the tested codes'
shares, the covariates' part, built once per model in `contrast_fit.fit`): random access to units is what
this loop waits for.

The loops release the GIL. Compiled code is cached next to this file (numba's cache): only the first
run on a machine pays the compilation (a few seconds).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Lines ahead whose unit row is prefetched: far enough that the row is in cache when the loop reaches
# it (the lines between are summed meanwhile), near enough that it is still there (docs/performance.md).
PREFETCH_DISTANCE = 32


def _compiled(function: Callable) -> Callable:
    """numba's njit, cached on disk where numba finds a writable cache folder (next to this file, else
    the user's cache); else compiled anew in each process rather than failing at import."""
    try:
        return njit(cache=True, nogil=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True)(function)


@intrinsic
def _prefetch(typingctx, array, row, column):  # noqa: ARG001 (numba's signature for intrinsics)
    """Ask the CPU to bring element [row, column] of a C-ordered 2-D float64 array into cache (LLVM's
    prefetch hint; it changes no value). The unit rows are read in random order, and waiting for each
    was most of the line loop's time."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i64 = ir.IntType(64)
        offset = builder.add(builder.mul(args[1], builder.extract_value(ary.strides, 0)),
                             builder.mul(args[2], ir.Constant(i64, 8)))
        i32, pointer = ir.IntType(32), ir.IntType(8).as_pointer()
        address = builder.inttoptr(builder.add(builder.ptrtoint(ary.data, i64), offset), pointer)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [pointer, i32, i32, i32]), "llvm.prefetch.p0")
        # read, high temporal locality, data cache
        builder.call(function, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, row, column), codegen


@njit(inline="always")  # inlined into the loops (numba IR), no call per line
def _prefetch_ahead(table: np.ndarray, unit: np.ndarray, i: int) -> None:
    """Prefetch every cache line (8 floats) of the unit row of the line PREFETCH_DISTANCE ahead of line i."""
    if i + PREFETCH_DISTANCE < len(unit):
        ahead, width = unit[i + PREFETCH_DISTANCE], table.shape[1]
        for column in range(0, width, 8):
            _prefetch(table, ahead, column)
        _prefetch(table, ahead, width - 1)


@njit(inline="always")
def _slots_needed(needed: np.ndarray) -> np.ndarray:
    """Per slot: is any of its tests to be computed (`needed`: uint8 slot x tested)?"""
    out = np.zeros(needed.shape[0], np.bool_)
    for s in range(needed.shape[0]):
        for j in range(needed.shape[1]):
            if needed[s, j]:
                out[s] = True
    return out


@_compiled
def add_cluster_scores(
    customer: np.ndarray,  # int64 per line: the customer's index; lines in (customer, segment) order
    segment: np.ndarray,  # int64 per line: the nested segment column's code (-1: none), or empty (no segment)
    segment_offset: int,  # the segment column's first slot
    unit: np.ndarray,  # int64 per line: its pass unit (cell)
    code: np.ndarray,  # int64 per line: its code in the line set, -1 outside
    y: np.ndarray,  # float64 per line
    table: np.ndarray,  # float64 pass unit x (k, y_bar, p of each tested code, z or q_bar per covariate)
    tested: np.ndarray,  # int64: the tested codes
    code_q: np.ndarray,  # float64 code x covariate: q by code (excess; z = q - q_bar), else empty (z in table)
    track_any: bool,  # contrasts: count the customers with any line of each code
    beta: np.ndarray,  # slot x tested (0 where not identified)
    pi: np.ndarray,  # slot x tested x covariate
    pi_y: np.ndarray,  # slot x covariate
    rate: np.ndarray,  # slot x tested: the reference's rate (rates; else 0 columns)
    needed: np.ndarray,  # uint8 slot x tested: the tests to compute
    meat_group: np.ndarray, meat_reference: np.ndarray,  # slot x tested: squared scores, by side
    n_clusters: np.ndarray, n_group: np.ndarray, n_reference: np.ndarray,  # slot x tested: customers counted
    rate_meat: np.ndarray,  # slot x tested (rates)
    n_any_code: np.ndarray, n_any: np.ndarray,  # slot x code, slot x 1: customers with any line
) -> None:
    """Pass 2 in one walk over lines sorted by customer and segment value: each cluster's score is summed
    line by line, with its slot's coefficients, and squared when the cluster's lines end.

    With beta and pi known from pass 1, a cluster's score is a sum over its lines of k u (e - beta u), where u = D - p - pi'z is the line's group indicator and e = y~ - pi_y'z
    its measurement, both net of the unit mean and the covariates (Frisch-Waugh-Lovell). A line belongs
    to two clusters: its customer's (the overall slot) and its row's (customer x segment value, that
    value's slot), each with its slot's coefficients. So nothing per row or per customer is kept beyond
    the cluster being summed, and only the tests asked for are summed (a secondary model needs a few).
    A cluster counts for a test when one of its lines is in a unit with both sides (without covariates:
    0 < p < 1; with covariates: k > 0); it is on the group's side when such a line is the group's, and on
    the reference's when such a line is the reference's (a customer may be on both)."""
    n, t, n_cov = len(customer), len(tested), pi_y.shape[1]
    width = n_any_code.shape[1] if track_any else 0
    with_rate, segmented, z_from_code = rate.shape[1] > 0, len(segment) > 0, code_q.shape[0] > 0
    # per level (the customer, in the overall slot; the row, in its segment value's slot) and test: the
    # score, sum k (D - p)^2 (without covariates: > 0 when the cluster counts), the group's and the
    # reference's lines in units with both sides, the rate's residual
    levels = 2 if segmented else 1
    score, spread, own = np.zeros((levels, t)), np.zeros((levels, t)), np.zeros((levels, t))
    other = np.zeros((levels, t))
    residual = np.zeros((levels, t if with_rate else 0))
    seen, live = np.zeros((levels, width)), np.zeros(levels)
    z = np.empty(n_cov)
    slot = np.full(levels, -1, np.int64)
    slot_needed = _slots_needed(needed)
    for i in range(n + 1):
        ends_customer = i == n or (i > 0 and customer[i] != customer[i - 1])
        ends_row = segmented and i > 0 and (ends_customer or segment[i] != segment[i - 1])
        for level in range(levels):  # the clusters that end here: squared, added to their slot, cleared
            if not (ends_row if level == 1 else ends_customer):
                continue
            s = slot[level]
            if s >= 0:
                has = False
                for g in range(width):
                    if seen[level, g] > 0:
                        n_any_code[s, g] += 1.0
                        has = True
                if has:
                    n_any[s, 0] += 1.0
                for j in range(t):
                    if not needed[s, j]:
                        continue
                    in_group = own[level, j] > 0
                    counted = (live[level] if n_cov else spread[level, j]) > 0
                    squared = score[level, j] * score[level, j]
                    if in_group:
                        meat_group[s, j] += squared
                    elif counted:
                        meat_reference[s, j] += squared
                        if with_rate:
                            rate_meat[s, j] += residual[level, j] * residual[level, j]
                    if counted:
                        n_clusters[s, j] += 1.0
                        if in_group:
                            n_group[s, j] += 1.0
                        if other[level, j] > 0:
                            n_reference[s, j] += 1.0
            for j in range(t):
                score[level, j] = 0.0
                spread[level, j] = 0.0
                own[level, j] = 0.0
                other[level, j] = 0.0
            for j in range(residual.shape[1]):
                residual[level, j] = 0.0
            for g in range(width):
                seen[level, g] = 0.0
            live[level] = 0.0
        if i == n:
            break
        slot[0] = 0  # a cluster's slots: set by every line, the same for all its lines
        if segmented:
            slot[1] = segment_offset + segment[i] if segment[i] >= 0 else -1
        _prefetch_ahead(table, unit, i)
        g = code[i]
        if g < 0:
            continue
        u = unit[i]
        weight = table[u, 0]
        y_t = y[i] - table[u, 1]
        for l in range(n_cov):
            z[l] = code_q[g, l] - table[u, 2 + t + l] if z_from_code else table[u, 2 + t + l]
        for level in range(levels):
            s = slot[level]
            if s < 0:
                continue
            if width:
                seen[level, g] += 1.0
            if n_cov and weight > 0:
                live[level] += 1.0
            if not slot_needed[s]:
                continue
            e = y_t
            for l in range(n_cov):
                e -= pi_y[s, l] * z[l]
            for j in range(t):
                if not needed[s, j]:
                    continue
                p = table[u, 2 + j]
                is_own = g == tested[j]
                d = (1.0 if is_own else 0.0) - p
                spread[level, j] += weight * d * d
                for l in range(n_cov):
                    d -= pi[s, j, l] * z[l]
                score[level, j] += weight * d * (e - beta[s, j] * d)
                both_sides = (weight > 0) if n_cov else (0 < p < 1)
                if is_own:
                    if both_sides:
                        own[level, j] += 1.0
                else:
                    if both_sides:
                        other[level, j] += 1.0
                    if with_rate:
                        residual[level, j] += p * (y[i] - rate[s, j])


@_compiled
def add_unit_counts(unit: np.ndarray, code: np.ndarray, y: np.ndarray, n: np.ndarray, sum_y: np.ndarray) -> None:
    """Pass 1: each line's count and y added to its unit x code (lines with code -1 are outside the line
    set). In place: a bincount per chunk would allocate and add a units x codes array each time."""
    for i in range(len(unit)):
        c = code[i]
        if c >= 0:
            n[unit[i], c] += 1.0
            sum_y[unit[i], c] += y[i]


@_compiled
def pairs_of(n: np.ndarray, sum_y: np.ndarray, unit: np.ndarray, code: np.ndarray, n_pair: np.ndarray,
             sy_pair: np.ndarray) -> None:
    """Pass 1's units x codes sums as their pairs with lines, by unit then code (the outputs are as long as
    there are such pairs: np.count_nonzero(n))."""
    i = 0
    for u in range(n.shape[0]):
        for g in range(n.shape[1]):
            if n[u, g] != 0.0:
                unit[i], code[i], n_pair[i], sy_pair[i] = u, g, n[u, g], sum_y[u, g]
                i += 1


@_compiled
def unit_statistics(unit: np.ndarray, code: np.ndarray, n: np.ndarray, sum_y: np.ndarray, column: np.ndarray,
                    leverage_adjusted: bool, total: np.ndarray, total_y: np.ndarray, table: np.ndarray) -> None:
    """Per unit, from its (unit, code) pairs (by unit, then code): its lines N (`total`) and sum of y SY
    (`total_y`), and the first columns of the unit table pass 2 reads (contrast_fit.fit): k = sqrt(N / (N - 1))
    (1 without the leverage adjustment; 0 for a unit of one line), y_bar = SY / N and the share n_g / N of
    each tested code g (`column[g]`: its column among the tested, -1: not tested). Units without pairs keep
    the zeros they came with."""
    first = 0
    while first < len(unit):
        u = unit[first]
        last, count, sy = first, 0.0, 0.0
        while last < len(unit) and unit[last] == u:
            count += n[last]
            sy += sum_y[last]
            last += 1
        total[u], total_y[u] = count, sy
        if count > 1.0:
            table[u, 0] = np.sqrt(count / (count - 1.0)) if leverage_adjusted else 1.0
        table[u, 1] = sy / count
        for i in range(first, last):
            if column[code[i]] >= 0:
                table[u, 2 + column[code[i]]] = n[i] / count
        first = last


@_compiled
def add_pair_slot_sums(unit: np.ndarray, code: np.ndarray, n: np.ndarray, sum_y: np.ndarray, total: np.ndarray,
                       total_y: np.ndarray, slot_of: np.ndarray, out: np.ndarray) -> None:
    """A model's sums per slot x code (contrast_fit.fit): every kind's normal-equation sums (out[0], out[1]),
    and a contrast's coverage and rate sums, in one walk over the model's (unit, code) pairs with lines. For a
    unit with N lines (`total`) and sum of y SY (`total_y`), and its pair with code g, n_g lines, sum of y sy_g
    and p_g = n_g / N, it adds into each of the unit's slots (`slot_of`, -1: none): out[0] n_g (1 - p_g),
    out[1] sy_g - n_g SY / N, out[2] n_g, out[3] n_g when the unit has lines of g and of other codes, out[5]
    N - n_g when it has both, out[6] p_g (N - n_g), out[7] p_g (SY - sy_g). A code without lines in a unit adds
    nothing to these; out[4], N - n_g over every unit of the slot, is the caller's (slot lines - out[2])."""
    for i in range(len(unit)):
        u, g = unit[i], code[i]
        n_g = n[i]
        y_bar = total_y[u] / total[u]
        share = n_g / total[u]
        reference = total[u] - n_g
        both = 0.0 < n_g < total[u]
        for j in range(slot_of.shape[1]):
            s = slot_of[u, j]
            if s < 0:
                continue
            out[0, s, g] += n_g * (1 - share)
            out[1, s, g] += sum_y[i] - n_g * y_bar
            out[2, s, g] += n_g
            if both:
                out[3, s, g] += n_g
                out[5, s, g] += reference
            out[6, s, g] += share * reference
            out[7, s, g] += share * (total_y[u] - sum_y[i])


@_compiled
def add_pair_slot_products(unit: np.ndarray, code: np.ndarray, weight: np.ndarray, b: np.ndarray,
                           slot_of: np.ndarray, out: np.ndarray) -> None:
    """Per slot and code, the sum over the slot's (unit, code) pairs of weight b[unit]' (`out`: slots x codes x
    b's columns): the fits' cross-products of the pairs' counts with unit statistics, in one walk."""
    for i in range(len(unit)):
        u, g = unit[i], code[i]
        for j in range(slot_of.shape[1]):
            s = slot_of[u, j]
            if s < 0:
                continue
            for m in range(b.shape[1]):
                out[s, g, m] += weight[i] * b[u, m]


@_compiled
def add_slot_products(a: np.ndarray, b: np.ndarray, slot_of: np.ndarray, out: np.ndarray) -> None:
    """Per slot, the sum over its units of a[u] b[u]' (`out`: slots x a's columns x b's columns; `slot_of`:
    each unit's slots, -1: none): the fits' cross-products of unit statistics, in one walk over the units."""
    for u in range(a.shape[0]):
        for j in range(slot_of.shape[1]):
            s = slot_of[u, j]
            if s < 0:
                continue
            for i in range(a.shape[1]):
                for m in range(b.shape[1]):
                    out[s, i, m] += a[u, i] * b[u, m]


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the loops for the argument types the passes use, on tiny inputs:
    what a first audit on a new installation would otherwise spend inside its first check."""
    rows, floats, ints = np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.int64)
    one, empty = np.zeros((1, 1)), np.zeros((1, 0))
    add_cluster_scores(rows, rows, 0, rows, ints, floats, np.zeros((1, 3)), ints, np.zeros((0, 0)), True, one,
                       np.zeros((1, 1, 0)), empty, empty, np.ones((1, 1), np.uint8), one, one, one, one, one, one,
                       one, one)
    add_unit_counts(rows, ints, floats, one, one)
    pairs_of(one, one, rows, rows, floats, floats)
    unit_statistics(rows, rows, np.ones(1), floats, ints, True, floats, floats, np.zeros((1, 3)))
    add_pair_slot_sums(rows, rows, floats, floats, np.ones(1), floats, np.zeros((1, 1), np.int64), np.zeros((8, 1, 1)))
    add_pair_slot_products(rows, rows, floats, one, np.zeros((1, 1), np.int64), np.zeros((1, 1, 1)))
    add_slot_products(one, one, np.zeros((1, 1), np.int64), np.zeros((1, 1, 1)))
