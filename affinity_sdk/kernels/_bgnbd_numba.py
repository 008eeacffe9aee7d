"""Numba twin of :mod:`affinity_sdk.kernels._bgnbd_reference` (same name and signature).

Imported only when a compiled backend first fits or evaluates a BG/NBD model, so importing the SDK
does not load Numba. There is no C++ twin: the ``cpp`` backend runs this one.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numpy.typing import NDArray

__all__ = ["neg_ll_grad"]


@nb.njit(cache=True, nogil=True)
def _neg_ll_grad(
    log_params: NDArray[np.float64],
    x: NDArray[np.int64],
    tx: NDArray[np.float64],
    big_t: NDArray[np.float64],
    weight: NDArray[np.float64],
    grad: NDArray[np.float64],
) -> float:  # pragma: no cover - compiled
    r = math.exp(log_params[0])
    alpha = math.exp(log_params[1])
    a = math.exp(log_params[2])
    b = math.exp(log_params[3])
    ll = 0.0
    g_r = 0.0
    g_alpha = 0.0
    g_a = 0.0
    g_b = 0.0
    log_alpha = math.log(alpha)
    # Prefix sums over k < x of the gamma-ratio terms, shared by every customer with that x.
    x_max = 0
    for i in range(x.shape[0]):
        x_max = max(x_max, x[i])
    s_r = np.zeros(x_max + 1)
    s_dr = np.zeros(x_max + 1)
    s_b = np.zeros(x_max + 1)
    s_da = np.zeros(x_max + 1)
    s_db = np.zeros(x_max + 1)
    for k in range(x_max):
        s_r[k + 1] = s_r[k] + math.log(r + k)
        s_dr[k + 1] = s_dr[k] + 1.0 / (r + k)
        s_b[k + 1] = s_b[k] + math.log(b + k) - math.log(a + b + k)
        s_da[k + 1] = s_da[k] - 1.0 / (a + b + k)
        s_db[k + 1] = s_db[k] + 1.0 / (b + k) - 1.0 / (a + b + k)
    for i in range(x.shape[0]):
        xi = x[i]
        w = weight[i]
        a1 = r * log_alpha + s_r[xi]
        d1_r = log_alpha + s_dr[xi]
        a2 = s_b[xi]
        d2_a = s_da[xi]
        d2_b = s_db[xi]
        rx = r + xi
        log_at = math.log(alpha + big_t[i])
        a3 = -rx * log_at
        if xi > 0:
            log_atx = math.log(alpha + tx[i])
            a4 = math.log(a) - math.log(b + xi - 1.0) - rx * log_atx
            top = max(a3, a4)
            e3 = math.exp(a3 - top)
            e4 = math.exp(a4 - top)
            s = e3 + e4
            l5 = top + math.log(s)
            w3 = e3 / s
            w4 = e4 / s
            d5_r = -w3 * log_at - w4 * log_atx
            d5_alpha = -w3 * rx / (alpha + big_t[i]) - w4 * rx / (alpha + tx[i])
            d5_a = w4 / a
            d5_b = -w4 / (b + xi - 1.0)
        else:
            l5 = a3
            d5_r = -log_at
            d5_alpha = -rx / (alpha + big_t[i])
            d5_a = 0.0
            d5_b = 0.0
        ll += w * (a1 + a2 + l5)
        g_r += w * (d1_r + d5_r)
        g_alpha += w * (r / alpha + d5_alpha)
        g_a += w * (d2_a + d5_a)
        g_b += w * (d2_b + d5_b)
    # Chain rule for log-parameters, and signs for minimisation.
    grad[0] = -g_r * r
    grad[1] = -g_alpha * alpha
    grad[2] = -g_a * a
    grad[3] = -g_b * b
    return -ll


def neg_ll_grad(
    log_params: NDArray[np.float64],
    x: NDArray[np.int64],
    tx: NDArray[np.float64],
    big_t: NDArray[np.float64],
    weight: NDArray[np.float64],
    grad: NDArray[np.float64],
) -> float:
    """See :func:`._bgnbd_reference.neg_ll_grad`."""
    return float(_neg_ll_grad(log_params, x, tx, big_t, weight, grad))
