"""Numba twins of :mod:`affinity_sdk.kernels._affinity_reference` (same names and signatures).

Imported only when the Numba backend is chosen, so importing the package does not load Numba.
``prange`` is used only where each iteration writes its own output rows.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

__all__ = ["csr_dot", "group_sum", "lift_scores", "merge_runs", "topk_segments", "transpose_index"]


@njit(cache=True, nogil=True)
def _radix_argsort(keys):  # type: ignore[no-untyped-def]
    # stable LSD radix sort, 11-bit digits, digits shared by every key skipped (as in C++)
    n = keys.shape[0]
    order = np.arange(n)
    if n < 2:
        return order
    # keys are profile << 32 | value >= 0: rank them as (profile - min) * (max value + 1) + value,
    # an order-preserving map onto far fewer bits, hence fewer passes
    profile = keys >> 32
    value = keys & 0xFFFFFFFF
    p_min = profile.min()
    v_span = value.max() + 1
    p_span = profile.max() - p_min + 1
    if keys.min() >= 0 and p_span <= (1 << 62) // v_span:
        k = (profile - p_min) * v_span + value
    else:
        k = keys - keys.min()  # non-negative keys: no overflow
    span = k.max()
    k_tmp = np.empty_like(k)
    o_tmp = np.empty_like(order)
    mask = (1 << 11) - 1
    count = np.empty(mask + 2, dtype=np.int64)
    shift = 0
    while shift < 63 and (span >> shift) != 0:
        count[:] = 0
        for i in range(n):
            count[((k[i] >> shift) & mask) + 1] += 1
        if count.max() < n:
            for d in range(mask + 1):
                count[d + 1] += count[d]
            for i in range(n):
                digit = (k[i] >> shift) & mask
                pos = count[digit]
                count[digit] += 1
                k_tmp[pos] = k[i]
                o_tmp[pos] = order[i]
            k, k_tmp = k_tmp, k
            order, o_tmp = o_tmp, order
        shift += 11
    return order


@njit(cache=True, nogil=True)
def _group_sum(keys, contrib, out_keys, out_acc):  # type: ignore[no-untyped-def]
    n = keys.shape[0]
    if n == 0:
        return 0
    h = contrib.shape[1]
    order = _radix_argsort(keys)
    m = -1
    last = 0
    for j in range(n):
        i = order[j]
        key = keys[i]
        if m < 0 or key != last:
            m += 1
            out_keys[m] = key
            last = key
            for c in range(h):
                out_acc[m, c] = 0.0
        for c in range(h):
            out_acc[m, c] += contrib[i, c]
    return m + 1


def group_sum(
    keys: NDArray[np.int64],
    contrib: NDArray[np.float64],
    out_keys: NDArray[np.int64],
    out_acc: NDArray[np.float64],
) -> int:
    """See :func:`._affinity_reference.group_sum`."""
    return int(_group_sum(keys, contrib, out_keys, out_acc))


@njit(cache=True, nogil=True)
def _merge_runs(a_keys, a_acc, b_keys, b_acc, out_keys, out_acc):  # type: ignore[no-untyped-def]
    na = a_keys.shape[0]
    nb = b_keys.shape[0]
    h = out_acc.shape[1]
    i = 0
    j = 0
    m = 0
    while i < na or j < nb:
        if j >= nb or (i < na and a_keys[i] < b_keys[j]):
            out_keys[m] = a_keys[i]
            for c in range(h):
                out_acc[m, c] = a_acc[i, c]
            i += 1
        elif i >= na or b_keys[j] < a_keys[i]:
            out_keys[m] = b_keys[j]
            for c in range(h):
                out_acc[m, c] = b_acc[j, c]
            j += 1
        else:
            out_keys[m] = a_keys[i]
            for c in range(h):
                out_acc[m, c] = a_acc[i, c] + b_acc[j, c]
            i += 1
            j += 1
        m += 1
    return m


def merge_runs(
    a_keys: NDArray[np.int64],
    a_acc: NDArray[np.float64],
    b_keys: NDArray[np.int64],
    b_acc: NDArray[np.float64],
    out_keys: NDArray[np.int64],
    out_acc: NDArray[np.float64],
) -> int:
    """See :func:`._affinity_reference.merge_runs`."""
    return int(_merge_runs(a_keys, a_acc, b_keys, b_acc, out_keys, out_acc))


@njit(cache=True, nogil=True)
def _lift_scores(indptr, cols, acc, factors, kappa, value_totals, out_decayed, out_lift):  # type: ignore[no-untyped-def]
    n = cols.shape[0]
    h = acc.shape[1]
    for v in range(value_totals.shape[0]):
        value_totals[v] = 0.0
    for j in range(n):
        d = 0.0
        for c in range(h):
            d += acc[j, c] * factors[c]
        out_decayed[j] = d
        value_totals[cols[j]] += d
    grand = 0.0
    for v in range(value_totals.shape[0]):
        grand += value_totals[v]
    for row in range(indptr.shape[0] - 1):
        total = 0.0
        for j in range(indptr[row], indptr[row + 1]):
            total += out_decayed[j]
        for j in range(indptr[row], indptr[row + 1]):
            share = value_totals[cols[j]] / grand if grand > 0.0 else 0.0
            expected = total * share + kappa
            out_lift[j] = (out_decayed[j] + kappa) / expected if expected > 0.0 else 1.0


def lift_scores(
    indptr: NDArray[np.int64],
    cols: NDArray[np.int64],
    acc: NDArray[np.float64],
    factors: NDArray[np.float64],
    kappa: float,
    value_totals: NDArray[np.float64],
    out_decayed: NDArray[np.float64],
    out_lift: NDArray[np.float64],
) -> None:
    """See :func:`._affinity_reference.lift_scores`."""
    _lift_scores(indptr, cols, acc, factors, float(kappa), value_totals, out_decayed, out_lift)


@njit(cache=True, parallel=True)
def _topk_segments(indptr, cols, vals, k, out_index, out_value):  # type: ignore[no-untyped-def]
    for row in prange(indptr.shape[0] - 1):
        filled = 0
        for t in range(k):
            out_index[row, t] = -1
            out_value[row, t] = np.nan
        for j in range(indptr[row], indptr[row + 1]):
            v = vals[j]
            key = -math.inf if math.isnan(v) else v
            # insertion into the row's sorted top-k; strict > keeps the earlier entry on ties
            pos = filled
            while pos > 0:
                prev = out_value[row, pos - 1]
                prev_key = -math.inf if math.isnan(prev) else prev
                if key > prev_key:
                    pos -= 1
                else:
                    break
            if pos >= k:
                continue
            last = filled if filled < k else k - 1
            for t in range(last, pos, -1):
                out_index[row, t] = out_index[row, t - 1]
                out_value[row, t] = out_value[row, t - 1]
            out_index[row, pos] = cols[j]
            out_value[row, pos] = v
            if filled < k:
                filled += 1


def topk_segments(
    indptr: NDArray[np.int64],
    cols: NDArray[np.int64],
    vals: NDArray[np.float64],
    k: int,
    out_index: NDArray[np.int64],
    out_value: NDArray[np.float64],
) -> None:
    """See :func:`._affinity_reference.topk_segments`."""
    if k > 0:
        _topk_segments(indptr, cols, vals, int(k), out_index, out_value)


@njit(cache=True, nogil=True)
def _transpose_index(cols, out_ptr, out_order):  # type: ignore[no-untyped-def]
    n_cols = out_ptr.shape[0] - 1
    for v in range(n_cols + 1):
        out_ptr[v] = 0
    for j in range(cols.shape[0]):
        out_ptr[cols[j] + 1] += 1
    for v in range(n_cols):
        out_ptr[v + 1] += out_ptr[v]
    cursor = out_ptr[:-1].copy()
    for j in range(cols.shape[0]):
        c = cols[j]
        out_order[cursor[c]] = j
        cursor[c] += 1


def transpose_index(
    cols: NDArray[np.int64], out_ptr: NDArray[np.int64], out_order: NDArray[np.int64]
) -> None:
    """See :func:`._affinity_reference.transpose_index`."""
    _transpose_index(cols, out_ptr, out_order)


@njit(cache=True, parallel=True)
def _csr_dot(indptr, cols, vals, dense, out_dot, out_sqnorm):  # type: ignore[no-untyped-def]
    for row in prange(indptr.shape[0] - 1):
        dot = 0.0
        sq = 0.0
        for j in range(indptr[row], indptr[row + 1]):
            x = vals[j]
            dot += x * dense[cols[j]]
            sq += x * x
        out_dot[row] += dot
        out_sqnorm[row] += sq


def csr_dot(
    indptr: NDArray[np.int64],
    cols: NDArray[np.int64],
    vals: NDArray[np.float64],
    dense: NDArray[np.float64],
    out_dot: NDArray[np.float64],
    out_sqnorm: NDArray[np.float64],
) -> None:
    """See :func:`._affinity_reference.csr_dot`."""
    _csr_dot(indptr, cols, vals, dense, out_dot, out_sqnorm)
