"""Random draws shared by every sample market: seeded streams and vectorised categorical draws."""

from __future__ import annotations

from typing import Any

import numpy as np


def random_stream(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream for (seed, key): streams of different keys never overlap."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def cdf_rows(weights: Any) -> np.ndarray:
    """Cumulative distributions, one per row, the last entry exactly 1."""
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    cdf = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
    cdf[:, -1] = 1.0
    return cdf


def draw(cdf: np.ndarray, row: np.ndarray | int, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of a category for each u, from the distribution in `cdf[row]`, vectorised.

    Row r's CDF is shifted to (r, r+1], so one searchsorted over the flattened table serves all rows.
    """
    n_rows, width = cdf.shape
    shifted = (cdf + np.arange(n_rows)[:, None]).ravel()
    row = np.broadcast_to(np.asarray(row, dtype=np.int64), u.shape)
    return np.searchsorted(shifted, row + u, side="right") - row * width
