"""Properties of the statistics on aggregates (hypothesis), and the regression solver's edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audits.contrast_fit import _scaled_pinv, solve_treatment
from audits.stats import Estimate, benjamini_hochberg, ratio_from_log, welch_satterthwaite_df

meats = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False)
clusters = st.integers(min_value=2, max_value=100_000)


@given(meats, clusters, meats, clusters)
def test_welch_satterthwaite_df_lies_between_the_smaller_side_and_the_pooled_count(m1, g1, m0, g0):
    df = welch_satterthwaite_df(m1, g1, m0, g0)
    assert min(g1, g0) - 1 - 1e-6 <= df <= g1 + g0 - 2 + 1e-6


@given(meats, clusters, clusters)
def test_a_side_without_variance_leaves_the_other_sides_df(m1, g1, g0):
    assert welch_satterthwaite_df(m1, g1, 0.0, g0) == pytest.approx(g1 - 1)


@settings(deadline=None)  # the first example imports scipy.stats
@given(st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=1, max_size=300))
def test_benjamini_hochberg_q_values_are_monotone_bounded_and_at_least_p(p_values):
    q_values = benjamini_hochberg(p_values)
    assert all(p <= q + 1e-15 <= 1 + 1e-15 for p, q in zip(p_values, q_values, strict=True))
    ordered = sorted(zip(p_values, q_values, strict=True))
    assert all(a[1] <= b[1] + 1e-15 for a, b in zip(ordered, ordered[1:], strict=False))


def test_an_unbounded_interval_is_infinite_rather_than_an_error():
    ratio, low, high = ratio_from_log(Estimate(beta=0.1, se=1e4, df=1, p_value=0.99))
    assert ratio == pytest.approx(math.exp(0.1)) and low == 0.0 and high == math.inf


def _solve(design: np.ndarray, y: np.ndarray):
    """beta of column 0 (D) on the other columns (covariates), through the engine's solver."""
    d, q = design[:, 0], design[:, 1:]
    sqq, sqy, squ = q.T @ q, q.T @ y, q.T @ d
    inverse = _scaled_pinv(sqq)
    return solve_treatment(inverse, inverse @ sqy, squ, float(d @ d), float(d @ y))


def test_solver_recovers_coefficients_of_an_exact_system():
    # D and two covariates: X'X and X'y from a known design
    rng = np.random.default_rng(0)
    design = np.column_stack([rng.integers(0, 2, 50), rng.normal(size=50), rng.normal(size=50)])
    y = design @ np.array([0.3, -1.0, 2.0])
    beta, _, _ = _solve(design, y)
    assert beta == pytest.approx(0.3, rel=1e-10)


def test_solver_says_none_when_the_group_indicator_is_absorbed_by_the_covariates():
    d = np.array([1.0, 1.0, 0.0, 0.0])
    assert _solve(np.column_stack([d, d]), np.arange(4.0)) is None  # D equals a covariate
    assert _solve(np.column_stack([np.zeros(4), d]), np.arange(4.0)) is None  # D has no variance


def test_solver_handles_collinear_covariates():
    # two covariates, one the negative of the other: the same beta as with one of them dropped
    rng = np.random.default_rng(1)
    q = rng.normal(size=40)
    d = rng.integers(0, 2, 40).astype(float)
    y = 0.5 * d + q + rng.normal(size=40)
    beta, _, _ = _solve(np.column_stack([d, q, -q]), y)
    expected, _, _ = _solve(np.column_stack([d, q]), y)
    assert beta == pytest.approx(expected, rel=1e-9)
