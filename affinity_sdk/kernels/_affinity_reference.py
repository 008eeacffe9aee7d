"""Reference (numpy) kernels for the sparse (profile × dimension value) affinity tables.

The table is a sorted run of unique int64 keys ``key = profile << 32 | value`` with one row of
forward-decay accumulators per key (one column per half-life group), i.e. a CSR matrix whose
row pointer is recovered from the keys. Every function has a twin with the same name and
signature in ``_affinity_numba.py`` and in the C++ extension (``_native.affinity``, from
``csrc/affinity.hpp``); the parity tests hold them to this oracle. Outputs are passed in.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["csr_dot", "group_sum", "lift_scores", "merge_runs", "topk_segments", "transpose_index"]


def group_sum(
    keys: NDArray[np.int64],
    contrib: NDArray[np.float64],
    out_keys: NDArray[np.int64],
    out_acc: NDArray[np.float64],
) -> int:
    r"""Sort ``keys`` and add up the ``contrib`` rows of equal keys; returns the number ``m`` of
    unique keys, written (ascending) to ``out_keys[:m]`` with their sums in ``out_acc[:m]``.

    .. math:: \mathrm{out}_j = \sum_{i : k_i = K_j} c_i

    Duplicates are added in their input order, so every backend rounds the same way. Keys are
    ``>= 0`` (``profile << 32 | value``); the compiled twins sort them with a stable radix sort.
    """
    if keys.shape[0] == 0:
        return 0
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    m = int(starts.shape[0])
    out_keys[:m] = ordered[starts]
    out_acc[:m] = 0.0
    group = np.cumsum(np.r_[False, ordered[1:] != ordered[:-1]])
    # np.add.at adds in index order: the same order as the compiled sequential loops
    np.add.at(out_acc, group, contrib[order])
    return m


def merge_runs(
    a_keys: NDArray[np.int64],
    a_acc: NDArray[np.float64],
    b_keys: NDArray[np.int64],
    b_acc: NDArray[np.float64],
    out_keys: NDArray[np.int64],
    out_acc: NDArray[np.float64],
) -> int:
    r"""Union of two sorted unique runs; rows of a key present in both are added (``a + b``).

    Returns the number of keys written to ``out_keys`` / ``out_acc`` (sized ``len(a) + len(b)``).
    """
    keys = np.concatenate([a_keys, b_keys])
    union, inverse = np.unique(keys, return_inverse=True)
    m = int(union.shape[0])
    out_keys[:m] = union
    out_acc[:m] = 0.0
    na = a_keys.shape[0]
    out_acc[inverse[:na]] += a_acc
    out_acc[inverse[na:]] += b_acc
    return m


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
    r"""Decayed engagement and shrunk lift per stored (profile, value).

    .. math:: d_{uv} = \sum_h A_{uvh} f_h,\quad D_u = \sum_v d_{uv},\quad
              P_v = \frac{\sum_u d_{uv}}{\sum_{u,v} d_{uv}},\quad
              \mathrm{lift}_{uv} = \frac{d_{uv} + \kappa}{D_u P_v + \kappa}

    i.e. observed over expected engagement, both padded with ``κ`` pseudo-events (the posterior
    mean of a Gamma(κ, κ) prior on the rate ratio). ``value_totals`` (length ≥ max col + 1)
    receives :math:`\sum_u d_{uv}`. Where the denominator is 0 the lift is 1.
    """
    out_decayed[:] = acc @ factors
    value_totals[:] = 0.0
    np.add.at(value_totals, cols, out_decayed)
    grand = value_totals.sum()
    n_rows = indptr.shape[0] - 1
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    profile_totals = np.zeros(n_rows)
    np.add.at(profile_totals, rows, out_decayed)
    share = value_totals[cols] / grand if grand > 0 else np.zeros(cols.shape[0])
    expected = profile_totals[rows] * share + kappa
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = (out_decayed + kappa) / expected
    out_lift[:] = np.where(expected > 0.0, lift, 1.0)


def topk_segments(
    indptr: NDArray[np.int64],
    cols: NDArray[np.int64],
    vals: NDArray[np.float64],
    k: int,
    out_index: NDArray[np.int64],
    out_value: NDArray[np.float64],
) -> None:
    """Per CSR row, the columns of its ``k`` largest values (descending; ties by position, i.e.
    lower column first as columns are sorted; NaN ranks last). Short rows pad with -1 / NaN."""
    out_index[:] = -1
    out_value[:] = np.nan
    for row in range(indptr.shape[0] - 1):
        lo, hi = int(indptr[row]), int(indptr[row + 1])
        if hi == lo:
            continue
        seg = vals[lo:hi]
        order = np.argsort(-np.where(np.isnan(seg), -np.inf, seg), kind="stable")[:k]
        out_index[row, : order.shape[0]] = cols[lo:hi][order]
        out_value[row, : order.shape[0]] = seg[order]


def transpose_index(
    cols: NDArray[np.int64], out_ptr: NDArray[np.int64], out_order: NDArray[np.int64]
) -> None:
    """Stable counting sort of entry positions by column: entries of column ``v`` are
    ``out_order[out_ptr[v]:out_ptr[v + 1]]`` in ascending position (``out_ptr`` has V + 1 slots)."""
    n_cols = out_ptr.shape[0] - 1
    out_ptr[0] = 0
    np.cumsum(np.bincount(cols, minlength=n_cols)[:n_cols], out=out_ptr[1:])
    out_order[:] = np.argsort(cols, kind="stable")


def csr_dot(
    indptr: NDArray[np.int64],
    cols: NDArray[np.int64],
    vals: NDArray[np.float64],
    dense: NDArray[np.float64],
    out_dot: NDArray[np.float64],
    out_sqnorm: NDArray[np.float64],
) -> None:
    r"""Add each CSR row's dot product with ``dense`` and its squared norm into the outputs.

    .. math:: \mathrm{dot}_u \mathrel{+}= \sum_{j \in u} x_j\, c_{\mathrm{col}_j},\quad
              \mathrm{sq}_u \mathrel{+}= \sum_{j \in u} x_j^2
    """
    n_rows = indptr.shape[0] - 1
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    out_dot += np.bincount(rows, weights=vals * dense[cols], minlength=n_rows)
    out_sqnorm += np.bincount(rows, weights=vals * vals, minlength=n_rows)
