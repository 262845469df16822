"""Statistics on aggregates: the within-cell contrast estimator, its customer-clustered standard
error, confidence intervals, p-values and the Benjamini-Hochberg correction.

DuckDB returns, per test, sums over customers (see sql/stats/within_cell_contrast.sql); nothing
here sees a transaction. The estimator is the fixed-effects regression of a measurement y on a
group indicator with one fixed effect per cell (product x day x controls). By Frisch-Waugh-Lovell,
with x~ and y~ demeaned within cell, beta = sum(x~ y~) / sum(x~^2): a weighted mean of the
within-cell differences between the group and its reference, weights n1*n0/(n1+n0) per cell.
Customers are the independent units: the variance is the cluster-robust (CR1) sandwich
G/(G-1) * sum_c (sum_{i in c} x~_i e_i)^2 / (sum x~^2)^2, computed from per-customer sums
A_c = sum x~ y~ and B_c = sum x~^2 as sum (A_c - beta B_c)^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps

CONFIDENCE = 0.95


@dataclass(frozen=True)
class ContrastSums:
    """Sufficient statistics of one within-cell contrast, as summed by DuckDB."""

    n_clusters: int
    sxx: float  # sum over customers of B_c
    sxy: float  # sum over customers of A_c
    saa: float  # sum of A_c^2
    sab: float  # sum of A_c * B_c
    sbb: float  # sum of B_c^2
    ref_sum: float = 0.0  # V: weighted sum of y over reference lines (weights n1/N per line)
    ref_weight: float = 0.0  # W: the weights' sum (equals sxx)
    ref_vv: float = 0.0  # sum over reference customers of V_c^2
    ref_vw: float = 0.0  # sum of V_c * W_c
    ref_ww: float = 0.0  # sum of W_c^2
    n_reference_clusters: int = 0


@dataclass(frozen=True)
class Estimate:
    """A difference (beta) with its clustered standard error and two-sided test."""

    beta: float
    se: float
    df: int
    p_value: float

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        half = _t_critical(self.df, confidence) * self.se
        return self.beta - half, self.beta + half


def within_cell_contrast(sums: ContrastSums) -> Estimate | None:
    """The FE estimate of the group-minus-reference difference; None when it is not identified."""
    if sums.sxx <= 0 or sums.n_clusters < 2:
        return None
    beta = sums.sxy / sums.sxx
    meat = max(sums.saa - 2 * beta * sums.sab + beta * beta * sums.sbb, 0.0)
    g = sums.n_clusters
    variance = g / (g - 1) * meat / (sums.sxx * sums.sxx)
    se = math.sqrt(variance)
    df = g - 1
    if se == 0:
        p_value = 0.0 if beta != 0 else 1.0
    else:
        p_value = float(2 * sps.t.sf(abs(beta / se), df))
    return Estimate(beta=beta, se=se, df=df, p_value=p_value)


def reference_rate(sums: ContrastSums) -> tuple[float, float] | None:
    """The reference's rate on the contrast's cell weights, and its clustered variance (ratio estimator)."""
    if sums.ref_weight <= 0:
        return None
    rate = sums.ref_sum / sums.ref_weight
    g = sums.n_reference_clusters
    if g < 2:
        return rate, 0.0
    residual = max(sums.ref_vv - 2 * rate * sums.ref_vw + rate * rate * sums.ref_ww, 0.0)
    return rate, g / (g - 1) * residual / (sums.ref_weight * sums.ref_weight)


def ratio_from_log(estimate: Estimate, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """exp(beta) with its interval: a log-price difference as a price ratio."""
    low, high = estimate.interval(confidence)
    return math.exp(estimate.beta), math.exp(low), math.exp(high)


def rate_ratio(estimate: Estimate, sums: ContrastSums, confidence: float = CONFIDENCE) -> tuple[float, float, float] | None:
    """Adverse impact ratio (p_ref + beta) / p_ref with a delta-method interval on the log scale.

    The variance adds the reference rate's own uncertainty to beta's: var(AIR) ~ var(beta)/p0^2 +
    beta^2 var(p0)/p0^4 (covariance ignored; both terms are estimated with customers as units).
    """
    reference = reference_rate(sums)
    if reference is None:
        return None
    p0, var_p0 = reference
    if p0 <= 0:
        return None
    ratio = 1 + estimate.beta / p0
    if ratio <= 0:
        return None
    var_ratio = estimate.se**2 / p0**2 + estimate.beta**2 * var_p0 / p0**4
    se_log = math.sqrt(var_ratio) / ratio
    half = _t_critical(estimate.df, confidence) * se_log
    return ratio, math.exp(math.log(ratio) - half), math.exp(math.log(ratio) + half)


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted q-values (step-up, monotone), in the input's order."""
    n = len(p_values)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: p_values[i])
    q = [0.0] * n
    running = 1.0
    for rank in range(n, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * n / rank)
        q[i] = min(running, 1.0)
    return q


def _t_critical(df: int, confidence: float) -> float:
    return float(sps.t.ppf(0.5 + confidence / 2, max(df, 1)))
