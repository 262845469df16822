"""Fixed-effects regressions with customer-clustered errors, solved from aggregates DuckDB computes.

One model serves two purposes:

    y_i = alpha[fe_key_i] + sum_j gamma_j[level_ij] + beta * D_i + e_i,     D_i = 1 for the tested group

- The regression-adjusted price gap (`price_gap`): y is the log price paid, fe_key is product x day
  (x currency) and the covariates are the configured controls (channel, quantity band, ...). Unlike
  the within-cell contrast, which only compares lines that share product, day *and* every control, the
  additive model also learns from product-days where group and reference bought through different
  channels or in different quantity bands: more comparisons, at the price of assuming each control
  shifts log prices by the same amount for every product. Reported beside the within-cell figure, it
  is a robustness check: when the two disagree, the additive assumption or sparse cells are at work.
- The excess of an intersection over its components (`audits/judgement.py`): fe_key is the full
  within-cell cell, the covariates are the component attributes (e.g. gender and age band, one dummy
  per level) and D marks one intersection group, so beta is what the group shows beyond the sum of
  its components' effects (the interaction).

How it is solved. alpha is absorbed by demeaning within fe_key (Frisch-Waugh-Lovell); the covariates'
dummies are few, so the normal equations X~'X~ b = X~'y~ are small and are summed by DuckDB from
counts and sums per (fe_key, levels, group) cell (sql/stats/fe_normal_equations.sql). The full set of
dummies is collinear with alpha, so the system is solved with a generalised inverse (of the
diagonally scaled matrix); beta is estimable whenever D is not in the span of the fixed effects and
covariates, and then beta, its standard error and every residual are the same for any generalised
inverse. The clustered variance is sum over customers of (h' sum_{i in c} x~_i e_i)^2 with
h = (X~'X~)^- e_D (sql/stats/fe_scores.sql), times G/(G-1): the CR1 sandwich, equal to statsmodels'
OLS with explicit fixed-effect dummies and cov_type='cluster' up to its extra (N-1)/(N-K) factor.
As for the within-cell contrast (audits/stats.py), the audit's variance scales each residual for the
leverage of its fixed effect, and the degrees of freedom are Welch-Satterthwaite's over the group's
and the reference's customers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import duckdb
import numpy as np

from audits.sqlfiles import load_sql
from audits.stats import Estimate, clustered_estimate, welch_satterthwaite_df

TREATED = "D"
# Relative size below which a singular value, or D's variance left after the other regressors, is zero.
RANK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class FixedEffectsTest:
    """One regression: the tested group against its reference (None: every other line)."""

    test_id: int
    dim_id: int
    segment_value: str
    tested: str
    reference: str | None


@dataclass(frozen=True)
class Solution:
    """The coefficients of one test's regression, by regressor name."""

    beta: dict[str, float]
    h: dict[str, float]


def fixed_effects_contrasts(
    con: duckdb.DuckDBPyConnection, tests: list[FixedEffectsTest], *, leverage_adjusted: bool = True
) -> dict[int, Estimate | None]:
    """Estimate every test's beta with its clustered error; None where beta is not identified.

    The error scales residuals for the fixed effects' leverage (sql/stats/fe_scores.sql); with
    `leverage_adjusted=False` it is plain CR1, as statsmodels computes it (up to (N-1)/(N-K)).

    Needs temp table `fe_input` (dim_id, segment_value, fe_key, levels, customer_id, group_value, y).
    Tests comparing the same lines (every group against all others in one dimension and segment)
    share one line set, whose covariate block of the normal equations is computed once.
    """
    if not tests:
        return {}
    linesets: dict[tuple, int] = {}
    test_rows = []
    for t in tests:
        key = (t.dim_id, t.segment_value, None, None) if t.reference is None else \
            (t.dim_id, t.segment_value, t.tested, t.reference)
        test_rows.append((t.test_id, linesets.setdefault(key, len(linesets)), t.tested))
    con.execute("create or replace temp table fe_linesets (lineset_id integer, dim_id integer, "
                "segment_value varchar, tested varchar, reference varchar)")
    con.executemany("insert into fe_linesets values (?, ?, ?, ?, ?)",
                    [(i, *key) for key, i in linesets.items()])
    con.execute("create or replace temp table fe_tests (test_id integer, lineset_id integer, tested varchar)")
    con.executemany("insert into fe_tests values (?, ?, ?)", test_rows)

    xx: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    xy: dict[str, dict[str, float]] = defaultdict(dict)
    for owner, u, v, value in con.execute(load_sql("stats/fe_normal_equations").sql).fetchall():
        if v is None:
            xy[owner][u] = value
        else:
            xx[owner][(u, v)] = value
    solutions = {}
    for test_id, lineset_id, _ in test_rows:
        base, own = f"L{lineset_id}", f"T{test_id}"
        solutions[test_id] = solve_normal_equations(xx[base] | xx[own], xy[base] | xy[own])

    con.execute("create or replace temp table fe_coefficients (test_id integer, u varchar, beta double, h double)")
    rows = [(i, u, s.beta[u], s.h[u]) for i, s in solutions.items() if s is not None for u in s.beta]
    if rows:
        con.executemany("insert into fe_coefficients values (?, ?, ?, ?)", rows)
    scores = {row[0]: row for row in con.execute(load_sql("stats/fe_scores").sql).fetchall()}

    out: dict[int, Estimate | None] = {}
    for t in tests:
        solution, score = solutions[t.test_id], scores.get(t.test_id)
        if solution is None or score is None or score[1] < 2:
            out[t.test_id] = None
            continue
        _, n_clusters, n_group, _, meat_group, meat_reference, meat_plain = score
        df = welch_satterthwaite_df(meat_group, n_group, meat_reference, n_clusters - n_group)
        meat = meat_group + meat_reference if leverage_adjusted else meat_plain
        out[t.test_id] = clustered_estimate(solution.beta[TREATED], meat, n_clusters=n_clusters, df=df)
    return out


def solve_normal_equations(xx: dict[tuple[str, str], float], xy: dict[str, float]) -> Solution | None:
    """Solve X~'X~ b = X~'y~ (upper triangle given by name) with a generalised inverse; None if D is absorbed.

    The matrix is scaled to unit diagonal before the pseudo-inverse so that the rank decision does not
    depend on the regressors' units; regressors with no variance left after demeaning are dropped.
    """
    names = sorted({u for u, _ in xx} | {v for _, v in xx}, key=lambda n: (n != TREATED, n))
    if not names or names[0] != TREATED:
        return None
    index = {n: i for i, n in enumerate(names)}
    matrix = np.zeros((len(names), len(names)))
    for (u, v), value in xx.items():
        matrix[index[u], index[v]] = matrix[index[v], index[u]] = value
    diagonal = np.diag(matrix).copy()
    keep = diagonal > RANK_TOLERANCE * max(diagonal.max(), 0.0)
    if not keep[0]:
        return None
    names = [n for n, k in zip(names, keep, strict=True) if k]
    matrix = matrix[np.ix_(keep, keep)]
    inverse = _scaled_pinv(matrix)
    # D must keep variance of its own once the other regressors are accounted for (Schur complement)
    explained = matrix[0, 1:] @ _scaled_pinv(matrix[1:, 1:]) @ matrix[1:, 0] if len(names) > 1 else 0.0
    if matrix[0, 0] - explained <= RANK_TOLERANCE * matrix[0, 0]:
        return None
    rhs = np.array([xy.get(n, 0.0) for n in names])
    beta = inverse @ rhs
    h = inverse[:, 0]
    return Solution(beta=dict(zip(names, beta.tolist(), strict=True)),
                    h=dict(zip(names, h.tolist(), strict=True)))


def _scaled_pinv(matrix: np.ndarray) -> np.ndarray:
    """A generalised inverse of a symmetric positive semi-definite matrix with a positive diagonal."""
    scale = 1 / np.sqrt(np.diag(matrix))
    return scale[:, None] * np.linalg.pinv(matrix * scale[:, None] * scale[None, :], rtol=RANK_TOLERANCE,
                                           hermitian=True) * scale[None, :]
