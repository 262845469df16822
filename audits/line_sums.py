"""Pass 2's walk over the lines, compiled: every per-row sum of one model in one loop (numba).

For each line of a partition (rows: customer x nested segment values, lines in row order) and each
tested code g of the model, with the line's unit u, weight k = k[u], centred measurement
y~ = y - y_bar[u], the group indicator D_g and the group's share p_g = share[u, g], and the covariates'
deviations z = q - q_bar[u] (the controls' dummies of the line's cell for the adjusted model, the
component attributes' dummies of the line's code for an intersection's excess; none otherwise):

    A[r, g] += k (D_g - p_g) y~          B[r, g] += k (D_g - p_g)^2
    C[r, g] += k (D_g - p_g) z           E[r] += k z y~          F[r] += k z z'
    V[r, g] += (1 - D_g) p_g y           W[r, g] += (1 - D_g) p_g        (reference rates only)

and the counts the judgement needs (see audits/contrasts.py, `_model_row_sums`). Lines outside the
model's line set (code -1) add nothing. With beta and pi known from pass 1, a customer's score is a
small polynomial in these sums (`_model_totals`).

One compiled loop replaces a dozen numpy passes and sparse products per model: each line's unit row is
read once and nothing of the size of the partition is allocated. The loop releases the GIL, so pass 2's
threads sum partitions side by side. Compiled code is cached next to this file (numba's cache), so
only the first run on a machine pays the compilation (a few seconds).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def add_line_sums(
    row: np.ndarray,  # int64 per line: its row
    unit: np.ndarray,  # int64 per line: its pass unit (cell)
    code: np.ndarray,  # int64 per line: its code in the line set, -1 outside
    y: np.ndarray,  # float64 per line
    table: np.ndarray,  # float64 pass unit x (k, y_bar, p of each tested code, z or q_bar per covariate)
    tested: np.ndarray,  # int64: the tested codes
    n_cov: int,
    code_q: np.ndarray,  # float64 code x covariate: q by code (excess; z = q - q_bar), else empty (z in table)
    live_counts: bool,  # count a line when k > 0 (models with covariates), else when 0 < p < 1
    with_any: bool,  # count every code's lines (any_own)
    with_rate: bool,  # V and W
    a_sum: np.ndarray,  # rows x tested
    b_sum: np.ndarray,  # rows x tested
    c_sum: np.ndarray,  # rows x tested x covariates
    e_sum: np.ndarray,  # rows x covariates
    f_sum: np.ndarray,  # rows x covariates x covariates
    live: np.ndarray,  # rows: lines with k > 0 (live_counts only)
    own_count: np.ndarray,  # rows x tested
    any_own: np.ndarray,  # rows x codes (with_any only)
    v_sum: np.ndarray,  # rows x tested (with_rate only)
    w_sum: np.ndarray,  # rows x tested (with_rate only)
) -> None:
    t = len(tested)
    z = np.empty(n_cov)
    z_from_code = code_q.shape[0] > 0
    for i in range(len(row)):
        c = code[i]
        if c < 0:
            continue
        r, u = row[i], unit[i]
        weight = table[u, 0]
        y_t = y[i] - table[u, 1]
        if with_any:
            any_own[r, c] += 1.0
        if live_counts and weight > 0:
            live[r] += 1.0
        for l in range(n_cov):
            z[l] = code_q[c, l] - table[u, 2 + t + l] if z_from_code else table[u, 2 + t + l]
        for l in range(n_cov):
            kz = weight * z[l]
            e_sum[r, l] += kz * y_t
            for m in range(n_cov):
                f_sum[r, l, m] += kz * z[m]
        for j in range(t):
            p = table[u, 2 + j]
            own = c == tested[j]
            d = (1.0 if own else 0.0) - p
            kd = weight * d
            a_sum[r, j] += kd * y_t
            b_sum[r, j] += kd * d
            for l in range(n_cov):
                c_sum[r, j, l] += kd * z[l]
            if own:
                if (weight > 0) if live_counts else (0 < p < 1):
                    own_count[r, j] += 1.0
            elif with_rate:
                v_sum[r, j] += p * y[i]
                w_sum[r, j] += p


@njit(cache=True, nogil=True)
def add_customer_totals(
    starts: np.ndarray,  # int64, clusters + 1: cluster c sums rows starts[c] to starts[c + 1] - 1
    slot_of: np.ndarray,  # int64 per cluster: its slot (-1: none)
    a_sum: np.ndarray, b_sum: np.ndarray, c_sum: np.ndarray, e_sum: np.ndarray, f_sum: np.ndarray,
    count: np.ndarray,  # rows x tested: > 0 when the row has a line in a cell with its test's reference
    own_count: np.ndarray, any_own: np.ndarray, v_sum: np.ndarray, w_sum: np.ndarray,  # as add_line_sums
    beta: np.ndarray,  # slot x tested (0 where not identified)
    pi: np.ndarray,  # slot x tested x covariate
    pi_y: np.ndarray,  # slot x covariate
    rate: np.ndarray,  # slot x tested (with_rate; 0 where not identified)
    with_any: bool, with_rate: bool,
    meat_group: np.ndarray, meat_reference: np.ndarray, n_clusters: np.ndarray, n_group: np.ndarray,
    rate_meat: np.ndarray, n_any_code: np.ndarray, n_any: np.ndarray,  # slot x tested (codes; 1)
) -> None:
    """Each cluster's (customer's, in one slot) score per test from its rows' sums, squared and added to
    its slot: score = A - pi_y'C - pi'E + pi'F pi_y - beta (B - 2 pi'C + pi'F pi), and the counts."""
    t, n_cov = a_sum.shape[1], e_sum.shape[1]
    width = any_own.shape[1]
    a, b, cnt, own, v, w = np.empty(t), np.empty(t), np.empty(t), np.empty(t), np.empty(t), np.empty(t)
    c, e, f = np.empty((t, n_cov)), np.empty(n_cov), np.empty((n_cov, n_cov))
    seen, pf = np.empty(width), np.empty(n_cov)
    for cluster in range(len(slot_of)):
        s = slot_of[cluster]
        if s < 0:
            continue
        for array in (a, b, cnt, own, v, w):
            array[:] = 0.0
        c[:] = 0.0
        e[:] = 0.0
        f[:] = 0.0
        seen[:] = 0.0
        for r in range(starts[cluster], starts[cluster + 1]):
            for j in range(t):
                a[j] += a_sum[r, j]
                b[j] += b_sum[r, j]
                cnt[j] += count[r, j]
                own[j] += own_count[r, j]
                for l in range(n_cov):
                    c[j, l] += c_sum[r, j, l]
                if with_rate:
                    v[j] += v_sum[r, j]
                    w[j] += w_sum[r, j]
            for l in range(n_cov):
                e[l] += e_sum[r, l]
                for m in range(n_cov):
                    f[l, m] += f_sum[r, l, m]
            if with_any:
                for g in range(width):
                    seen[g] += any_own[r, g]
        for j in range(t):
            score = a[j] - beta[s, j] * b[j]
            if n_cov:
                py_c, pi_e, pi_c, pf_py, pf_pi = 0.0, 0.0, 0.0, 0.0, 0.0
                for l in range(n_cov):
                    py_c += pi_y[s, l] * c[j, l]
                    pi_e += pi[s, j, l] * e[l]
                    pi_c += pi[s, j, l] * c[j, l]
                for m in range(n_cov):
                    pf[m] = 0.0
                    for l in range(n_cov):
                        pf[m] += pi[s, j, l] * f[l, m]
                    pf_py += pf[m] * pi_y[s, m]
                    pf_pi += pf[m] * pi[s, j, m]
                score = a[j] - py_c - pi_e + pf_py - beta[s, j] * (b[j] - 2 * pi_c + pf_pi)
            in_group, counted = own[j] > 0, cnt[j] > 0
            if in_group:
                meat_group[s, j] += score * score
            elif counted:
                meat_reference[s, j] += score * score
                if with_rate:
                    residual = v[j] - rate[s, j] * w[j]
                    rate_meat[s, j] += residual * residual
            if counted:
                n_clusters[s, j] += 1.0
                if in_group:
                    n_group[s, j] += 1.0
        if with_any:
            has = False
            for g in range(width):
                if seen[g] > 0:
                    n_any_code[s, g] += 1.0
                    has = True
            if has:
                n_any[s, 0] += 1.0
