"""Pass 1 of the disparity engine and the fits: the lines' counts and sums per (unit, code) pair with lines,
and from them, in closed form, every model's coefficients in every slot (the model: audits/contrasts.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from audits.contrast_model import Fitted, Model, PassState, UnitCodes, count_key, line_codes

if TYPE_CHECKING:
    import scipy.sparse as sp

# Relative size below which a covariate's variance, or D's variance left after the covariates, is zero.
RANK_TOLERANCE = 1e-9
# Pass 1 sums a line set into units x codes arrays in place while they hold at most this many entries per
# line; a wider one (an intersection of many groups over small cells) is summed by sorting its lines'
# (unit, code) pairs, so its memory follows the lines, not units x codes (docs/performance.md).
DENSE_PER_LINE = 4


def pass_one(state: PassState, chunks: Iterator[dict[str, np.ndarray]], n_lines: int) -> None:
    """Pass 1 over `n_lines` lines in chunks: each line's count and measurement summed per (unit, code), per
    line set of the pass's models, kept as the pairs with lines (UnitCodes); and each unit's fixed effect,
    controls and segment values (constant within a unit)."""
    from audits import line_sums  # numba: imported by the first pass, not by every import of the audit

    units = state.n_units
    state.fe_of_unit = np.zeros(units, np.int64)
    state.control_of_unit = np.zeros((units, len(state.controls)), np.int64)
    state.segment_of_unit = np.full((units, len(state.slots.segment_keys)), -1, np.int64)
    linesets = list({count_key(m.lineset): m.lineset for m in state.models}.values())
    # per line set: units x codes arrays summed in place, or each chunk's pairs (a wide line set)
    sums: dict[tuple, tuple[np.ndarray, np.ndarray] | list[UnitCodes]] = {
        count_key(ls): (np.zeros((units, ls.width)), np.zeros((units, ls.width)))
        if units * ls.width <= DENSE_PER_LINE * max(n_lines, 1) else [] for ls in linesets}
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
            target = sums[count_key(ls)]
            if isinstance(target, list):
                target.append(UnitCodes.of_lines(unit, line_codes(lines, ls), y, units, ls.width))
            else:
                line_sums.add_unit_counts(unit, line_codes(lines, ls), y, *target)
    for ls in linesets:
        target = sums.pop(count_key(ls))
        state.counts[count_key(ls)] = UnitCodes.merged(target, units, ls.width) if isinstance(target, list) \
            else UnitCodes.from_dense(*target)


def _summing(into: np.ndarray, n_into: int) -> sp.csr_matrix:
    """n_into x len(into): row into[i] sums item i; a product adds items up by target."""
    import scipy.sparse as sp  # imported by the first fit, not by every import of the audit

    return sp.csr_matrix((np.ones(len(into)), (into, np.arange(len(into)))), shape=(n_into, len(into)))


def _slot_products(a: np.ndarray, b: np.ndarray, slot_of: np.ndarray, n_slots: int) -> np.ndarray:
    """Slots x a's columns x b's columns: per slot, the sum over its units of a[u] b[u]'."""
    from audits import line_sums

    out = np.zeros((n_slots, a.shape[1], b.shape[1]))
    line_sums.add_slot_products(np.ascontiguousarray(a, np.float64), np.ascontiguousarray(b, np.float64), slot_of, out)
    return out


def _pair_slot_products(pairs: UnitCodes, weight: np.ndarray, b: np.ndarray, slot_of: np.ndarray, n_slots: int,
                        width: int) -> np.ndarray:
    """Slots x codes x b's columns: per slot, the sum over its units' pairs (unit u, code g) of weight b[u]'."""
    from audits import line_sums

    out = np.zeros((n_slots, width, b.shape[1]))
    line_sums.add_pair_slot_products(pairs.unit, pairs.code, weight, np.ascontiguousarray(b, np.float64), slot_of, out)
    return out


def _pair_slot_sums(pairs: UnitCodes, weight: np.ndarray, slot_of: np.ndarray, n_slots: int, width: int) -> np.ndarray:
    """Slots x codes: per slot, the sum over its units' pairs (unit, code g) of weight."""
    return _pair_slot_products(pairs, weight, np.ones((pairs.n_units, 1)), slot_of, n_slots, width)[:, :, 0]


def _by_unit(pairs: UnitCodes, width: int) -> sp.csr_matrix:
    """Units x codes: the pairs' lines, as a sparse matrix (a product with codes x covariates sums per unit)."""
    import scipy.sparse as sp

    return sp.csr_matrix((pairs.n, (pairs.unit, pairs.code)), shape=(pairs.n_units, width))


def _slot_sums(a: np.ndarray, slot_of: np.ndarray, n_slots: int) -> np.ndarray:
    """Slots x a's columns: per slot, the sum over its units of a[u]."""
    return _slot_products(a, np.ones((len(a), 1)), slot_of, n_slots)[:, :, 0]


def _slot_of(segment_of: np.ndarray, offsets: tuple[int, ...]) -> np.ndarray:
    """Units x (1 + segment columns): the slots each unit belongs to (-1: none): the whole population's slot 0,
    and its segment value's slot per segment column. A unit without lines in the pass adds nothing anyway."""
    slot_of = np.zeros((len(segment_of), 1 + len(offsets)), np.int64)
    for j, offset in enumerate(offsets):
        slot_of[:, j + 1] = np.where(segment_of[:, j] >= 0, offset + segment_of[:, j], -1)
    return slot_of


class _Units(NamedTuple):
    """A model's units: the pass's cells, or for the adjusted model the fixed effects they make up."""

    unit_of_cell: np.ndarray  # pass unit (cell) -> model unit
    pairs: UnitCodes  # the lines per (model unit, code)
    segment_of: np.ndarray  # model unit x segment column: its value (-1: none)
    q_sum: np.ndarray  # model unit x covariate: the covariates summed over the unit's lines
    q_of_cell: np.ndarray | None  # adjusted: cell x control dummy (constant within a cell); else None
    cell_totals: tuple[np.ndarray, np.ndarray] | None  # adjusted: each cell's lines and sum of y; else None


class _Covariates(NamedTuple):
    """Per slot, the covariates' cross-products demeaned within units: Sqq, Sqy and per code Squ."""

    sqq: np.ndarray  # slots x covariates x covariates
    sqy: np.ndarray  # slots x covariates
    squ: np.ndarray  # slots x codes x covariates


def fit(state: PassState, model: Model) -> Fitted:
    """Coefficients of every tested code in every slot, from the unit statistics (closed form)."""
    from audits import line_sums

    cells = state.counts[count_key(model.lineset)]
    width, n_slots = model.lineset.width, state.n_slots
    units = _model_units(state, model, cells)
    slot_of, n_cov = _slot_of(units.segment_of, state.slots.offsets), units.q_sum.shape[1]
    # each unit's N and SY, and pass 2's unit table: k, y_bar, the tested codes' shares, then the covariates
    tested = np.asarray(model.lineset.tested, dtype=np.int64)
    column = np.full(width, -1, np.int64)
    column[tested] = np.arange(len(tested))
    pairs = units.pairs
    N, SY = np.zeros(pairs.n_units), np.zeros(pairs.n_units)
    table = np.zeros((pairs.n_units, 2 + len(tested) + n_cov))
    line_sums.unit_statistics(pairs.unit, pairs.code, pairs.n, pairs.sy, column, state.leverage_adjusted, N, SY,
                              table)
    q_bar = units.q_sum / np.where(N > 0, N, 1)[:, None]

    # unweighted normal equations per slot (sums over units, see module docstring), with a contrast's coverage
    # and rate sums, from one compiled walk over the (unit, code) pairs
    sums = np.zeros((8, n_slots, width))
    line_sums.add_pair_slot_sums(pairs.unit, pairs.code, pairs.n, pairs.sy, N, SY, slot_of, sums)
    # the reference's lines: every line of the slot's units but the code's (N > 0: units with lines)
    sums[4] = _slot_sums(N[:, None], slot_of, n_slots) - sums[2]
    covariates = _covariate_sums(state, model, cells, units, N, SY, q_bar, slot_of) if n_cov else None
    beta, pi, pi_y, bread = _solve(model, sums[0], sums[1], covariates, n_cov)
    # Pass 2 reads one row per line (random access to units is what it waits for): per pass unit, k, y_bar,
    # the tested codes' shares, and per covariate q_bar, or for the adjusted model the cell's z = q - q_bar
    if units.q_of_cell is not None:  # to the pass unit (cell), where the controls' deviation is constant
        table = table[units.unit_of_cell]
        table[:, 2 + len(tested):] = units.q_of_cell - q_bar[units.unit_of_cell]
    else:
        table[:, 2 + len(tested):] = q_bar
    fitted = Fitted(model, table, beta, pi, pi_y, bread)
    if model.kind == "contrast":  # compared: the unit has lines of the code and of other codes
        fitted.coverage = {"lines_group": sums[2], "lines_group_compared": sums[3], "lines_reference": sums[4],
                           "lines_reference_compared": sums[5]}
    if model.with_rate:  # contrasts only: the reference's lines weighted by the group's share of their cell
        fitted.rate_weight, ref_sum = sums[6], sums[7]  # sum p * n0, sum p * y0
        fitted.rate = np.where(fitted.rate_weight > 0, ref_sum / np.where(fitted.rate_weight > 0,
                                                                           fitted.rate_weight, 1), np.nan)
    fitted.totals_inputs = totals_inputs(fitted)
    return fitted


def _model_units(state: PassState, model: Model, cells: UnitCodes) -> _Units:
    """The model's units and their covariates: per pass unit (controls) or per code (components), summed
    per model unit (q_sum)."""
    width = model.lineset.width
    if model.kind != "adjusted":
        q_sum = _by_unit(cells, width) @ model.components if model.kind == "excess" else np.zeros((state.n_units, 0))
        return _Units(np.arange(state.n_units), cells, state.segment_of_unit, q_sum, None, None)
    fe_of_cell = state.fe_of_unit
    cell_lines, cell_y = cells.totals()
    # a fixed effect's segment values are its cells' (nested: every cell of it has the same); a cell
    # without lines in this pass has neither, and must not write its defaults over fixed effect 0's
    segment_of = np.full((state.n_fe, state.segment_of_unit.shape[1]), -1, np.int64)
    has_lines = cell_lines > 0
    segment_of[fe_of_cell[has_lines]] = state.segment_of_unit[has_lines]
    q_of_cell = _control_dummies(state)
    q_sum = _summing(fe_of_cell, state.n_fe) @ (q_of_cell * cell_lines[:, None])  # fixed effect x covariate
    return _Units(fe_of_cell, cells.summed_to(fe_of_cell, state.n_fe, width), segment_of, q_sum, q_of_cell,
                  (cell_lines, cell_y))


def _covariate_sums(state: PassState, model: Model, cells: UnitCodes, units: _Units, N: np.ndarray, SY: np.ndarray,
                    q_bar: np.ndarray, slot_of: np.ndarray) -> _Covariates:
    """Sqq, Sqy and Squ per slot: raw sums over lines, less each unit's mean times its sum."""
    n_slots, width, pairs = state.n_slots, model.lineset.width, units.pairs
    if units.q_of_cell is not None:  # the controls' dummies are constant within a cell: sum over cells
        q_of_cell = units.q_of_cell
        cell_lines, cell_y = units.cell_totals
        cell_slot_of = _slot_of(state.segment_of_unit, state.slots.offsets)
        sqq_raw = _slot_products(q_of_cell * cell_lines[:, None], q_of_cell, cell_slot_of, n_slots)
        sqy_raw = _slot_sums(q_of_cell * cell_y[:, None], cell_slot_of, n_slots)
        squ_raw = _pair_slot_products(cells, cells.n, q_of_cell, cell_slot_of, n_slots, width)
    else:  # the components' dummies follow from the code
        comps = model.components
        per_code = _pair_slot_sums(pairs, pairs.n, slot_of, n_slots, width)
        sqq_raw = np.einsum("sg,gl,gm->slm", per_code, comps, comps)
        sqy_raw = _pair_slot_sums(pairs, pairs.sy, slot_of, n_slots, width) @ comps
        squ_raw = per_code[:, :, None] * comps[None, :, :]
    return _Covariates(sqq_raw - _slot_products(N[:, None] * q_bar, q_bar, slot_of, n_slots),
                       sqy_raw - _slot_sums(q_bar * SY[:, None], slot_of, n_slots),
                       squ_raw - _pair_slot_products(pairs, pairs.n, q_bar, slot_of, n_slots, width))


def _solve(model: Model, suu: np.ndarray, suy: np.ndarray, covariates: _Covariates | None, n_cov: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per slot and tested code: beta, pi (the covariates' coefficients on D) and the bread (sum of D~^2);
    and per slot pi_y. A code whose D has no variance left keeps beta NaN."""
    n_slots, width = suu.shape
    beta = np.full((n_slots, width), np.nan)
    pi = np.zeros((n_slots, width, n_cov))
    pi_y = np.zeros((n_slots, n_cov))
    bread = np.zeros((n_slots, width))
    for s in range(n_slots):
        inverse = _scaled_pinv(covariates.sqq[s]) if covariates is not None else np.zeros((0, 0))
        if covariates is not None:
            pi_y[s] = inverse @ covariates.sqy[s]
        for g in model.lineset.tested:
            squ = covariates.squ[s, g] if covariates is not None else np.zeros(0)
            solved = solve_treatment(inverse, pi_y[s], squ, suu[s, g], suy[s, g])
            if solved is not None:
                beta[s, g], pi[s, g], bread[s, g] = solved
    return beta, pi, pi_y, bread


def totals_inputs(fitted: Fitted) -> tuple[np.ndarray, ...]:
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
