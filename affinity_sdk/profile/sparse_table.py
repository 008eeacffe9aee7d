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
>>> table.fold_row(0, 2, impl)  # profile 0's entries (keys 1 and 5) onto profile 2
>>> table.compact(impl)
>>> [(int(k) >> VALUE_BITS, int(k) & VALUE_MASK) for k in table.keys]
[(2, 1), (2, 5)]
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["VALUE_BITS", "VALUE_MASK", "SparseTable", "profile_mask", "subtract_to_zero", "trim_run"]

#: Bits of a table key holding the value code (the profile code sits above them).
VALUE_BITS: Final = 32
VALUE_MASK: Final = (1 << VALUE_BITS) - 1
#: Pending runs :meth:`SparseTable.fold_row` lets pile up before it merges them into one: each
#: fold searches every run, so their number bounds its cost.
_MAX_FOLD_RUNS: Final = 64
#: Pending runs of at most this many entries are the ones merged then (a fold's, one event's):
#: larger ones (a batch's) wait for :meth:`SparseTable.compact` as before.
_SMALL_RUN: Final = 1 << 12


class SparseTable:
    """Sorted unique keys ``u << 32 | v`` with accumulator rows, plus pending sorted runs.

    Entries of a profile moved away by :meth:`fold_row` stay in their run, marked dead, until the
    next :meth:`compact` drops them: read ``keys`` / ``acc`` only after a :meth:`compact`."""

    __slots__ = ("acc", "dead", "dead_n", "keys", "pending", "pending_n")

    def __init__(self, width: int) -> None:
        self.keys = np.empty(0, dtype=np.int64)
        self.acc = np.empty((0, width), dtype=np.float64)
        self.pending: list[tuple[NDArray[np.int64], NDArray[np.float64]]] = []
        self.pending_n = 0
        #: ``(run, lo) -> hi``: rows ``lo:hi`` of run ``run`` (0 the sorted keys, ``i + 1``
        #: ``pending[i]``) are dead (moved by :meth:`fold_row`).
        self.dead: dict[tuple[int, int], int] = {}
        #: Rows the dead ranges cover.
        self.dead_n = 0

    @property
    def n_entries(self) -> int:
        """Stored entries, pending runs counted as they are (a key in two runs counts twice)."""
        return self.keys.shape[0] + self.pending_n - self.dead_n

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
        """Merge the pending runs into the sorted keys (and drop the dead entries)."""
        if self.dead:
            ranges = self._dead_ranges()
            self.keys, self.acc = _cut(self.keys, self.acc, ranges.get(0))
            self.pending = [_cut(k, a, ranges.get(i + 1)) for i, (k, a) in enumerate(self.pending)]
            self.dead, self.dead_n = {}, 0
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

    def fold_row(self, source: int, target: int, impl: Any) -> None:
        """Add profile ``source``'s entries into profile ``target``'s and remove them from
        ``source``: they join as one pending run and their old places are marked dead (dropped
        at the next :meth:`compact`). Costs a binary search per run and the rows moved."""
        if len(self.pending) > _MAX_FOLD_RUNS:
            self._merge_pending(impl)
        bounds = np.array([source << VALUE_BITS, (source + 1) << VALUE_BITS], dtype=np.int64)
        moved_keys: list[NDArray[np.int64]] = []
        moved_acc: list[NDArray[np.float64]] = []
        for run, (keys, acc) in enumerate([(self.keys, self.acc), *self.pending]):
            lo, hi = np.searchsorted(keys, bounds).tolist()
            if hi > lo and (run, lo) not in self.dead:
                self.dead[run, lo] = hi
                self.dead_n += hi - lo
                moved_keys.append(keys[lo:hi])
                moved_acc.append(acc[lo:hi])
        if not moved_keys:
            return
        keys = (np.concatenate(moved_keys) & VALUE_MASK) | (target << VALUE_BITS)
        acc = np.concatenate(moved_acc)  # a copy: a run may be scaled in place later
        if len(moved_keys) == 1:
            self.add_run(keys, acc, impl)  # one run's slice, re-prefixed: still sorted and unique
        else:
            self.add_unsorted(keys, acc, impl)

    def _dead_ranges(self) -> dict[int, list[tuple[int, int]]]:
        """The dead ``(lo, hi)`` ranges of each run."""
        ranges: dict[int, list[tuple[int, int]]] = {}
        for (run, lo), hi in self.dead.items():
            ranges.setdefault(run, []).append((lo, hi))
        return ranges

    def _merge_pending(self, impl: Any) -> None:
        """Merge the small pending runs into one (not into the sorted keys), dropping their dead
        rows; with fewer than two small runs, :meth:`compact`."""
        small = [i for i, (k, _) in enumerate(self.pending) if k.shape[0] <= _SMALL_RUN]
        if len(small) < 2:
            self.compact(impl)
            return
        ranges = self._dead_ranges()
        runs = [_cut(*self.pending[i], ranges.get(i + 1)) for i in small]
        keys = np.concatenate([k for k, _ in runs])
        acc = np.concatenate([a for _, a in runs])
        out_keys = np.empty_like(keys)
        out_acc = np.empty_like(acc)
        m = impl.group_sum(keys, acc, out_keys, out_acc) if keys.shape[0] else 0
        merged = set(small)
        large = [i for i in range(len(self.pending)) if i not in merged]
        run_of = {0: 0} | {old + 1: new + 1 for new, old in enumerate(large)}
        self.dead = {(run_of[r], lo): hi for (r, lo), hi in self.dead.items() if r in run_of}
        self.dead_n = sum(hi - lo for (_, lo), hi in self.dead.items())
        self.pending = [self.pending[i] for i in large]
        if m:
            self.pending.append(trim_run(out_keys, out_acc, m))
        self.pending_n = sum(k.shape[0] for k, _ in self.pending)

    def keep(self, rows: NDArray[np.bool_]) -> None:
        """Keep only the (compacted) entries where ``rows`` is True."""
        self.keys, self.acc = self.keys[rows], self.acc[rows]

    def drop_profiles(self, gone: NDArray[np.bool_], impl: Any) -> NDArray[np.int64]:
        """Compact, then drop every entry of the profiles marked in ``gone`` (a mask over
        profiles, as :func:`profile_mask` gives); returns the dropped entries' keys."""
        self.compact(impl)
        drop = gone[self.keys >> VALUE_BITS]
        dropped: NDArray[np.int64] = self.keys[drop]
        if dropped.shape[0]:
            self.keep(~drop)
        return dropped

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


def profile_mask(codes: NDArray[np.int64], n_profiles: int) -> NDArray[np.bool_] | None:
    """``codes`` as a mask over ``n_profiles`` profiles (codes out of range ignored), or ``None``
    when none is in range: what a view's ``erase`` removes.

    Examples
    --------
    >>> profile_mask(np.array([1, 7]), 3).tolist(), profile_mask(np.array([5]), 3)
    ([False, True, False], None)
    """
    codes = np.asarray(codes, dtype=np.int64)
    codes = codes[(codes >= 0) & (codes < n_profiles)]
    if codes.shape[0] == 0:
        return None
    gone = np.zeros(n_profiles, dtype=np.bool_)
    gone[codes] = True
    return gone


def _cut(
    keys: NDArray[np.int64], acc: NDArray[np.float64], dead: list[tuple[int, int]] | None
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """A run without its ``dead`` row ranges."""
    if not dead:
        return keys, acc
    alive = np.ones(keys.shape[0], dtype=np.bool_)
    for lo, hi in dead:
        alive[lo:hi] = False
    return keys[alive], acc[alive]


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
