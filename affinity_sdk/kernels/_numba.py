"""Numba kernels: the same names, signatures and numbers as :mod:`._reference`.

Imported only when the ``numba`` backend is used, so ``import affinity_sdk`` never pays for numba.
Every kernel is ``@njit(cache=True)`` with named fastmath flags: ``contract`` (FMA) and
``reassoc`` where a sum may be reordered, never ``nnan`` / ``ninf``, so NaN checks survive. The
0-100 score is computed without fastmath so all backends round it identically and tiers agree.

The state's ``acc`` is a plain float64 array; its records are handled through two flat views of
the same memory (``float64`` and ``int64``, four words per record) because numba's record-array
access is slower and the layout is fixed by ``STATE_DTYPE``.

This module is the backend the dispatcher imports and holds every kernel's entry point: the
state kernels and top-k are here, ``accumulate``'s compiled steps are in
:mod:`._numba_accumulate` (its entry point and partition plan stay here), and the scores,
quantile cut-offs and tiers are in :mod:`._numba_tiers`, re-exported below.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numpy.typing import NDArray

from ._numba_accumulate import _accumulate_direct, _accumulate_partitioned, _first_bad
from ._numba_common import _FAST, _WORDS, _acc_flat, _check, _flat
from ._numba_tiers import assign_tiers, quantile_cutoffs, score_tiers, scores_100

__all__ = [
    "accumulate",
    "assign_tiers",
    "decayed",
    "merge",
    "quantile_cutoffs",
    "raw_scores",
    "rebase",
    "score_tiers",
    "scores_100",
    "topk_csr",
    "topk_rows",
]

_SLICE = 1 << 24  # events partitioned at once (16 bytes of scratch each)
_BLOCK_BYTES = 2 << 20  # records of one profile block, kept in cache while its events apply
_CELLS_PER_EVENT = 8  # fewer events than one per this many cells: applied directly


# ---------------------------------------------------------------------------------------------
# accumulate: the entry point and its plan; the compiled steps are in _numba_accumulate (the plan
# reads _SLICE from here, which the tests shrink to run several slices at test size)


def _plan(n: int, n_profiles: int, n_signals: int) -> tuple[int, int, int]:
    """(profiles-per-block shift, signal bits, scratch events) of the partition; 0 events: go direct."""
    row_bytes = n_signals * 40
    shift = 0
    while shift < 40 and (2 << shift) * row_bytes <= _BLOCK_BYTES:
        shift += 1
    signal_bits = max(n_signals - 1, 0).bit_length()
    n_blocks = ((n_profiles - 1) >> shift) + 1
    # A sparse batch (under one event per _CELLS_PER_EVENT cells) goes direct, as in the C++ kernel.
    small = n_blocks <= 2 or n_profiles * row_bytes <= 4 * _BLOCK_BYTES or n < 65536
    sparse = n < n_profiles * n_signals // _CELLS_PER_EVENT
    if small or sparse or shift + signal_bits > 24:
        return shift, signal_bits, 0
    n_slices = -(-n // _SLICE)
    return shift, signal_bits, -(-n // n_slices)


def accumulate(
    acc: NDArray[np.float64],
    records: NDArray[np.void],
    users: NDArray[np.int64],
    signals: NDArray[np.int64],
    ts_ms: NDArray[np.int64],
    values: NDArray[np.float64],
    landmark_ms: int,
    lam_per_ms: NDArray[np.float64],
) -> None:
    """Fold events into ``acc`` and ``records`` in place (see :func:`._reference.accumulate`).

    Large batches against a state bigger than the cache are radix-partitioned by profile block
    (16 bytes of scratch per event, from numpy so it gets huge pages); otherwise events are
    applied directly. Codes are checked before anything is written.
    """
    rf, ri = _flat(records, writable=True)
    af = _acc_flat(acc, records.shape, writable=True)
    n_profiles, n_signals = records.shape
    n = users.shape[0]
    _check("users", users, np.int64)
    _check("signals", signals, np.int64, n)
    _check("ts_ms", ts_ms, np.int64, n)
    _check("values", values, np.float64, n)
    _check("lam_per_ms", lam_per_ms, np.float64, n_signals)
    if n == 0:
        return
    landmark = int(landmark_ms)
    shift, signal_bits, scratch = _plan(n, n_profiles, n_signals)
    if scratch and scratch < n:
        _check_codes(users, signals, n_profiles, n_signals)  # later slices apply after the first
    start = 0
    if scratch:
        packed = np.empty(2 * scratch, dtype=np.int64)
        args = (af, rf, ri, n_profiles, n_signals, users, signals, ts_ms, values, landmark, lam_per_ms)
        start = _accumulate_partitioned(*args, shift, signal_bits, packed)
    if start == 0:
        _check_codes(users, signals, n_profiles, n_signals)
    if start < n:
        rest = slice(start, n)
        _accumulate_direct(
            af, rf, ri, n_signals, users[rest], signals[rest], ts_ms[rest], values[rest], landmark, lam_per_ms
        )


def _check_codes(
    users: NDArray[np.int64], signals: NDArray[np.int64], n_profiles: int, n_signals: int
) -> None:
    bad = _first_bad(users, signals, n_profiles, n_signals)
    if bad >= 0:
        raise ValueError(
            f"event {bad} has profile {users[bad]} / signal {signals[bad]} outside the state's "
            f"{n_profiles} x {n_signals} records"
        )


# ---------------------------------------------------------------------------------------------
# rebase, merge, decayed, raw scores


@nb.njit(cache=True, fastmath=_FAST)
def _rebase(
    af: NDArray[np.float64], n_signals: int, factors: NDArray[np.float64]
) -> None:  # pragma: no cover
    for c in range(af.shape[0]):
        af[c] *= factors[c % n_signals]


def _acc_2d(acc: NDArray[np.float64], writable: bool) -> NDArray[np.float64]:
    if acc.ndim != 2:
        raise ValueError(f"Expected `acc` of shape (profiles, signals), got {acc.shape}")
    return _acc_flat(acc, acc.shape, writable)


def rebase(acc: NDArray[np.float64], factors: NDArray[np.float64]) -> None:
    r"""Move the landmark: :math:`A_{us} \mathrel{*}= f_s`."""
    af = _acc_2d(acc, writable=True)
    _check("factors", factors, np.float64, acc.shape[1])
    _rebase(af, acc.shape[1], factors)


@nb.njit(cache=True)
def _merge(
    aa: NDArray[np.float64],
    af: NDArray[np.float64],
    ai: NDArray[np.int64],
    ba: NDArray[np.float64],
    bf: NDArray[np.float64],
    bi: NDArray[np.int64],
) -> None:  # pragma: no cover - compiled
    for c in range(aa.shape[0]):
        aa[c] += ba[c]
        w = c * _WORDS
        af[w] += bf[w]
        ai[w + 1] += bi[w + 1]
        if bi[w + 2] < ai[w + 2]:
            ai[w + 2] = bi[w + 2]
        if bi[w + 3] > ai[w + 3]:
            ai[w + 3] = bi[w + 3]


def merge(
    into_acc: NDArray[np.float64],
    into: NDArray[np.void],
    other_acc: NDArray[np.float64],
    other: NDArray[np.void],
) -> None:
    """Add ``other`` into ``into`` (same shape, same landmark): sums, min of first, max of last."""
    af, ai = _flat(into, writable=True)
    bf, bi = _flat(other, writable=False)
    if into.shape != other.shape:
        raise ValueError("Expected `into` and `other` of the same shape")
    aa = _acc_flat(into_acc, into.shape, writable=True)
    ba = _acc_flat(other_acc, into.shape, writable=False)
    _merge(aa, af, ai, ba, bf, bi)


@nb.njit(cache=True, fastmath=_FAST)
def _decayed(
    af: NDArray[np.float64], n_signals: int, factors: NDArray[np.float64], out: NDArray[np.float64]
) -> None:  # pragma: no cover - compiled
    for c in range(out.shape[0]):
        out[c] = af[c] * factors[c % n_signals]


def decayed(acc: NDArray[np.float64], factors: NDArray[np.float64], out: NDArray[np.float64]) -> None:
    r"""Decayed values at now: :math:`D_{us} = A_{us} f_s`."""
    af = _acc_2d(acc, writable=False)
    _check("factors", factors, np.float64, acc.shape[1])
    if out.shape != acc.shape or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError("Expected `out` of the state's shape, float64, C-contiguous")
    _decayed(af, acc.shape[1], factors, out.reshape(-1))


@nb.njit(cache=True, fastmath=_FAST)
def _raw_scores(
    af: NDArray[np.float64], n_signals: int, coefs: NDArray[np.float64], out: NDArray[np.float64]
) -> None:  # pragma: no cover - compiled
    for u in range(out.shape[0]):
        w = u * n_signals
        acc = 0.0
        for s in range(n_signals):
            acc += coefs[s] * af[w + s]
        out[u] = acc


def raw_scores(
    acc: NDArray[np.float64], coefs: NDArray[np.float64], out: NDArray[np.float64], threads: int = 1
) -> None:
    r"""Composite raw score :math:`R_u = \sum_s c_s A_{us}` (on one thread whatever ``threads``)."""
    af = _acc_2d(acc, writable=False)
    _check("coefs", coefs, np.float64, acc.shape[1])
    _check("out", out, np.float64, acc.shape[0])
    _raw_scores(af, acc.shape[1], coefs, out)


# ---------------------------------------------------------------------------------------------
# top-k


@nb.njit(cache=True)
def _topk(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int64],
    data: NDArray[np.float64],
    dense_cols: int,
    k: int,
    out_index: NDArray[np.int64],
    out_value: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    # Per row, insertion into a sorted top-k buffer: O(m k), and k is small for affinity.
    n_rows = out_index.shape[0]
    for r in range(n_rows):
        if dense_cols >= 0:
            lo = r * dense_cols
            m = dense_cols
        else:
            lo = indptr[r]
            m = indptr[r + 1] - lo
        filled = 0
        for j in range(m):
            v = data[lo + j]
            key = -np.inf if v != v else v
            col = j if dense_cols >= 0 else indices[lo + j]
            pos = filled
            while pos > 0:
                pv = out_value[r, pos - 1]
                pk = -np.inf if pv != pv else pv
                if pk > key or (pk == key and out_index[r, pos - 1] < col):
                    break
                pos -= 1
            if pos >= k:
                continue
            last = min(filled, k - 1)
            for q in range(last, pos, -1):
                out_index[r, q] = out_index[r, q - 1]
                out_value[r, q] = out_value[r, q - 1]
            out_index[r, pos] = col
            out_value[r, pos] = v
            if filled < k:
                filled += 1
        for q in range(filled, k):
            out_index[r, q] = -1
            out_value[r, q] = np.nan


def _check_topk_out(out_index: NDArray[np.int64], out_value: NDArray[np.float64], rows: int, k: int) -> None:
    if k < 0:
        raise ValueError("Expected k >= 0")
    _check("out_index", out_index, np.int64)
    _check("out_value", out_value, np.float64)
    if out_index.shape != (rows, k) or out_value.shape != (rows, k):
        raise ValueError("Expected `out_index` and `out_value` of shape (rows, k)")


def topk_rows(
    matrix: NDArray[np.float64],
    k: int,
    out_index: NDArray[np.int64],
    out_value: NDArray[np.float64],
) -> None:
    """Per row, the ``k`` largest entries (descending; ties by lower column), NaN treated as -inf."""
    _check("matrix", matrix, np.float64)
    if matrix.ndim != 2:
        raise ValueError("Expected a 2-dimensional `matrix`")
    _check_topk_out(out_index, out_value, matrix.shape[0], k)
    empty = np.zeros(1, dtype=np.int64)
    _topk(empty, empty, np.ascontiguousarray(matrix).reshape(-1), matrix.shape[1], k, out_index, out_value)


def topk_csr(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int64],
    data: NDArray[np.float64],
    k: int,
    out_index: NDArray[np.int64],
    out_value: NDArray[np.float64],
) -> None:
    """Per CSR row, the ``k`` largest stored entries' columns and values (see ``topk_rows``)."""
    _check("indptr", indptr, np.int64)
    _check("indices", indices, np.int64)
    _check("data", data, np.float64, indices.shape[0])
    if indptr.shape[0] < 1 or indptr[0] != 0 or indptr[-1] != indices.shape[0] or np.any(np.diff(indptr) < 0):
        raise ValueError("Expected `indptr` non-decreasing from 0 to len(indices)")
    _check_topk_out(out_index, out_value, indptr.shape[0] - 1, k)
    _topk(indptr, indices, data, -1, k, out_index, out_value)
