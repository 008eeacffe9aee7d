"""Sparse (profile, value) tables: sorted unique int64 keys ``u << 32 | v`` with one row of
float accumulators each, plus pending sorted runs merged in on demand.

The affinity view (:mod:`affinity_sdk.profile.affinity_view`) keeps one table per dimension: a
CSR matrix whose row pointer comes from the keys, so memory grows with the pairs seen, never with
profiles × values. The sorting, summing and merging run in the affinity kernels (``impl``: the
reference, Numba or C++ module of :mod:`affinity_sdk.kernels`, all with the same functions).

Examples
--------
>>> import numpy as np
>>> from affinity_sdk.kernels import _affinity_reference as impl
>>> table = SparseTable(width=1)
>>> table.add_unsorted(np.array([5, 1, 5]), np.ones((3, 1)), impl)
>>> table.compact(impl)
>>> table.keys.tolist(), table.acc.ravel().tolist()
([1, 5], [1.0, 2.0])
>>> table.subtract(np.array([5]), np.ones((1, 1)), impl)
>>> table.keys.tolist(), table.acc.ravel().tolist()
([1, 5], [1.0, 1.0])
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["VALUE_BITS", "VALUE_MASK", "SparseTable", "subtract_to_zero", "trim_run"]

#: Bits of a table key holding the value code (the profile code sits above them).
VALUE_BITS: Final = 32
VALUE_MASK: Final = (1 << VALUE_BITS) - 1


class SparseTable:
    """Sorted unique keys ``u << 32 | v`` with accumulator rows, plus pending sorted runs."""

    __slots__ = ("acc", "keys", "pending", "pending_n")

    def __init__(self, width: int) -> None:
        self.keys = np.empty(0, dtype=np.int64)
        self.acc = np.empty((0, width), dtype=np.float64)
        self.pending: list[tuple[NDArray[np.int64], NDArray[np.float64]]] = []
        self.pending_n = 0

    def add_run(self, keys: NDArray[np.int64], acc: NDArray[np.float64], impl: Any) -> None:
        """Add a sorted run of unique ``keys`` with their rows (merged in on demand)."""
        self.pending.append((keys, acc))
        self.pending_n += keys.shape[0]
        if self.pending_n > max(self.keys.shape[0] // 4, 1 << 20):
            self.compact(impl)

    def add_unsorted(self, keys: NDArray[np.int64], acc: NDArray[np.float64], impl: Any) -> None:
        """Add rows of ``keys`` in any order, repeats included (summed into one run first)."""
        out_keys = np.empty_like(keys)
        out_acc = np.empty_like(acc)
        m = impl.group_sum(keys, acc, out_keys, out_acc)
        self.add_run(*trim_run(out_keys, out_acc, m), impl)

    def compact(self, impl: Any) -> None:
        """Merge the pending runs into the sorted keys."""
        if not self.pending:
            return
        if len(self.pending) == 1:
            run_keys, run_acc = self.pending[0]
        else:
            keys = np.concatenate([k for k, _ in self.pending])
            acc = np.concatenate([a for _, a in self.pending])
            run_keys = np.empty_like(keys)
            run_acc = np.empty_like(acc)
            m = impl.group_sum(keys, acc, run_keys, run_acc)
            run_keys, run_acc = trim_run(run_keys, run_acc, m)
        if self.keys.shape[0] == 0:
            self.keys, self.acc = run_keys, run_acc
            self.pending, self.pending_n = [], 0
            return
        n = self.keys.shape[0] + run_keys.shape[0]
        out_keys = np.empty(n, dtype=np.int64)
        out_acc = np.empty((n, self.acc.shape[1]), dtype=np.float64)
        m = impl.merge_runs(self.keys, self.acc, run_keys, run_acc, out_keys, out_acc)
        self.keys, self.acc = trim_run(out_keys, out_acc, m)
        self.pending, self.pending_n = [], 0

    def keep(self, rows: NDArray[np.bool_]) -> None:
        """Keep only the (compacted) entries where ``rows`` is True."""
        self.keys, self.acc = self.keys[rows], self.acc[rows]

    def scale(self, factors: NDArray[np.float64]) -> None:
        """Multiply every accumulator column by its factor (pending runs included)."""
        self.acc *= factors
        for _, acc in self.pending:
            acc *= factors

    def subtract(self, keys: NDArray[np.int64], acc: NDArray[np.float64], impl: Any) -> None:
        """Take rows of ``keys`` (any order, repeats summed) back out of the table.

        Keys the table lacks are skipped; values go down with :func:`subtract_to_zero`, and an
        entry whose every accumulator reaches 0 is dropped, as if never added."""
        if keys.shape[0] == 0:
            return
        run_keys = np.empty_like(keys)
        run_acc = np.empty_like(acc)
        m = impl.group_sum(keys, acc, run_keys, run_acc)
        run_keys, run_acc = run_keys[:m], run_acc[:m]
        self.compact(impl)
        if self.keys.shape[0] == 0:
            return
        at = np.minimum(np.searchsorted(self.keys, run_keys), self.keys.shape[0] - 1)
        found = self.keys[at] == run_keys  # a key never folded has nothing to take back
        at, run_acc = at[found], run_acc[found]
        if not self.acc.flags.writeable:
            self.acc = self.acc.copy()
        self.acc[at] = subtract_to_zero(self.acc[at], run_acc)
        empty = np.zeros(self.keys.shape[0], dtype=np.bool_)
        empty[at] = ~self.acc[at].any(axis=1)
        if empty.any():
            self.keep(~empty)


def trim_run(
    keys: NDArray[np.int64], acc: NDArray[np.float64], m: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The first ``m`` rows; copied when that frees much of the buffer, else a view (no copy)."""
    if 4 * m >= 3 * keys.shape[0]:
        return keys[:m], acc[:m]
    return keys[:m].copy(), acc[:m].copy()


def subtract_to_zero(values: NDArray[np.float64], taken: NDArray[np.float64]) -> NDArray[np.float64]:
    """``values - taken``, at least 0, and 0 where at most ``1e-12 * taken`` is left.

    Examples
    --------
    >>> subtract_to_zero(np.array([3.0, 1.0]), np.array([1.0, 1.0 - 1e-15])).tolist()
    [2.0, 0.0]
    """
    left = values - taken
    result: NDArray[np.float64] = np.where(left <= 1e-12 * taken, 0.0, left)
    return result
