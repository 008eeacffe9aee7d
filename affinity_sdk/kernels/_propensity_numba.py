"""Numba twin of :mod:`affinity_sdk.kernels._propensity_reference` (same name and signature).

Imported only when a compiled backend first scores, so importing the SDK does not load Numba.
There is no C++ twin: the ``cpp`` backend runs this one. Rows are scored in parallel (each
iteration writes only its own ``out[i]``).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numpy.typing import NDArray

__all__ = ["logistic_scores"]


@nb.njit(cache=True, parallel=True, nogil=True, fastmath={"contract", "reassoc"})
def _logistic_scores(
    X: NDArray[np.float64],
    weight: NDArray[np.float64],
    bias: float,
    platt_a: float,
    platt_b: float,
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    n, f = X.shape
    for i in nb.prange(n):
        z = bias
        for j in range(f):
            z += weight[j] * X[i, j]
        z = platt_a * z + platt_b
        # the branch keeps exp's argument <= 0, so neither side overflows
        if z >= 0:
            out[i] = 1.0 / (1.0 + math.exp(-z))
        else:
            e = math.exp(z)
            out[i] = e / (1.0 + e)


def logistic_scores(
    X: NDArray[np.float64],
    weight: NDArray[np.float64],
    bias: float,
    platt_a: float,
    platt_b: float,
    out: NDArray[np.float64],
) -> None:
    """See :func:`._propensity_reference.logistic_scores`."""
    _logistic_scores(X, weight, float(bias), float(platt_a), float(platt_b), out)
