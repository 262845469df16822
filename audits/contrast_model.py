"""What the disparity engine (audits/contrasts.py) fits and what it hands on: the line sets and models a
pass fits, the slots its results go to, pass 1's state, one model's fitted coefficients, and one test's
sums over customers, from which its estimate follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import numpy as np

from audits.stats import Estimate, clustered_estimate, welch_satterthwaite_df

Kind = Literal["contrast", "adjusted", "excess"]


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


@dataclass(frozen=True)
class UnitCodes:
    """Pass 1's sums for one line set over the (unit, code) pairs that have lines, in unit then code order:
    the lines n and the sum of y of each pair. Most units hold a few of a grouping's codes (an intersection
    of three attributes has a hundred and more), so the fits walk these pairs, not units x codes."""

    unit: np.ndarray  # int64 per pair
    code: np.ndarray  # int64 per pair
    n: np.ndarray  # float64 per pair
    sy: np.ndarray  # float64 per pair
    n_units: int

    @classmethod
    def from_dense(cls, n: np.ndarray, sy: np.ndarray) -> UnitCodes:
        """From units x codes arrays (pass 1's in-place sums): their pairs with lines."""
        from audits import line_sums

        size = np.count_nonzero(n)
        unit, code, n_pair, sy_pair = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size), np.empty(size)
        line_sums.pairs_of(n, sy, unit, code, n_pair, sy_pair)
        return cls(unit, code, n_pair, sy_pair, n.shape[0])

    @classmethod
    def of_lines(cls, unit: np.ndarray, code: np.ndarray, y: np.ndarray, n_units: int, width: int) -> UnitCodes:
        """Lines summed per (unit, code) pair (code -1: outside the line set), each pair's in line order."""
        kept = code >= 0
        return cls._summed(unit[kept] * width + code[kept], np.ones(int(kept.sum())), y[kept], n_units, width)

    @classmethod
    def merged(cls, parts: list[UnitCodes], n_units: int, width: int) -> UnitCodes:
        """Several sets of sums over the same units added up (pass 1's scans), each pair's in part order."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls(*(np.zeros(0, dtype) for dtype in (np.int64, np.int64, np.float64, np.float64)), n_units)
        return cls._summed(np.concatenate([p.unit * width + p.code for p in parts]),
                           np.concatenate([p.n for p in parts]), np.concatenate([p.sy for p in parts]), n_units, width)

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """Per unit: its lines N and its sum of y SY (summed over its pairs in code order)."""
        return (np.bincount(self.unit, self.n, minlength=self.n_units),
                np.bincount(self.unit, self.sy, minlength=self.n_units))

    def summed_to(self, target: np.ndarray, n_target: int, width: int) -> UnitCodes:
        """The pairs summed to coarser units (`target`: each unit's, e.g. a cell's fixed effect), each
        target's pairs added in unit order."""
        return self._summed(target[self.unit] * width + self.code, self.n, self.sy, n_target, width)

    @classmethod
    def _summed(cls, key: np.ndarray, n: np.ndarray, sy: np.ndarray, n_units: int, width: int) -> UnitCodes:
        """n and sy summed per key (unit x width + code), in the order given, the pairs in key order."""
        keys, inverse = np.unique(key, return_inverse=True)
        return cls(keys // width, keys % width, np.bincount(inverse, n, minlength=len(keys)),
                   np.bincount(inverse, sy, minlength=len(keys)), n_units)


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
    # pass 1's sums per line set's codes (see count_key)
    counts: dict[tuple[str, tuple[int, int] | None], UnitCodes] = field(default_factory=dict)
    fitted: list[Fitted] = field(default_factory=list)

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



def count_key(lineset: LineSet) -> tuple[str, tuple[int, int] | None]:
    """Line sets with the same codes share pass 1's counts, whatever they test."""
    return lineset.set_key, lineset.pair


@dataclass
class Fitted:
    """One model's per slot x tested code coefficients, and the per-unit row pass 2 reads."""

    model: Model
    # per pass unit (see contrast_fit.fit): k, y_bar, the tested codes' shares, per covariate q_bar or (adjusted) z
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
    # beta, pi, pi_y, rate (0 where not identified) and the tests to compute; see `contrast_fit.totals_inputs`
    totals_inputs: tuple[np.ndarray, ...] = ()


# A pass-2 executor: given the connection, the measurements relation, pass 1's state and a number of
# partitions, return every partition's sums (`partition_sums`) added up. The default, `in_process`,
# sums them in this process; flows/dask_contrast.py sends each to a Dask worker.
PartitionSums = dict[str, np.ndarray]
Executor = Callable[[duckdb.DuckDBPyConnection, str, PassState, int], PartitionSums]


def line_codes(lines: dict[str, np.ndarray], lineset: LineSet) -> np.ndarray:
    """Each line's code in the line set: its group's code, or for a pair 0 (group), 1 (reference), -1 (neither)."""
    codes = np.asarray(lines[lineset.set_key], dtype=np.int64)
    if lineset.pair is None:
        return codes
    group, reference = lineset.pair
    return np.where(codes == group, 0, np.where(codes == reference, 1, -1))
