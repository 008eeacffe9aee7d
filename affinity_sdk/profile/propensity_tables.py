"""The propensity view's key tables: per (profile, value) sums, kept sorted and found per profile.

:class:`KeyTable` holds sorted unique int64 keys ``profile << 32 | value`` (the category and
order-day tables of :class:`~affinity_sdk.profile.propensity_view.PropensityView`), each with
``width`` summed float64 values, the last one a count. Adds wait before they are merged in: a large
add as a pending run, a small one (one event's) in a per-profile dict, so a live read of one
profile (:meth:`KeyTable.entries_of`) costs a dict lookup and a slice, never a merge of the table.

Examples
--------
>>> import numpy as np
>>> table = KeyTable(1)
>>> table.add(np.array([(1 << 32) | 7, 5]), np.ones((2, 1)))
>>> table.entries_of(1), table.recent == {0: {5: [1.0]}, 1: {7: [1.0]}}
({7: [1.0]}, True)
>>> table.compact()
>>> table.keys.tolist(), table.recent
([5, 4294967303], {})
>>> table.fold_row(1, 0)  # profile 1's entries onto profile 0
>>> table.entries_of(0), table.entries_of(1)
({5: [1.0], 7: [1.0]}, {})
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.models.key_tables import KEY_BITS, VALUE_MASK

__all__ = ["KeyTable"]

#: Pending entries a key table takes before it merges them in on its own.
_COMPACT_AT: Final = 1 << 16
#: Adds of at most this many keys (one event's) wait in a per-profile dict, not a pending run.
_SMALL_ADD: Final = 64


class KeyTable:
    """Sorted unique int64 keys with ``width`` summed float64 values each (the last one a count:
    a key whose count drops to 0 is gone), plus entries not merged in yet: large adds wait as
    pending runs, small ones (one event's) in ``recent``, a dict per profile, so a live read of
    one profile (:meth:`entries_of`) needs no merge of the whole table.

    :meth:`fold_row` zeroes the moved profile's merged keys in place (count 0: gone to every
    reader) and the next :meth:`compact` drops them."""

    __slots__ = ("_starts", "_zeroed", "keys", "pending", "pending_n", "recent", "values", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.keys = np.empty(0, dtype=np.int64)
        self.values = np.empty((0, width), dtype=np.float64)
        self.pending: list[tuple[NDArray[np.int64], NDArray[np.float64]]] = []
        #: profile -> {value: summed values} of the small adds since the last merge.
        self.recent: dict[int, dict[int, list[float]]] = {}
        self.pending_n = 0
        #: Per profile, where its keys start in ``keys`` (built on the first live read).
        self._starts: NDArray[np.int64] | None = None
        #: Merged keys :meth:`fold_row` zeroed (dropped at the next :meth:`compact`).
        self._zeroed = 0

    def _set(self, keys: NDArray[np.int64], values: NDArray[np.float64]) -> None:
        self.keys, self.values, self._starts, self._zeroed = keys, values, None, 0

    def add(self, keys: NDArray[np.int64], values: NDArray[np.float64]) -> None:
        """Add ``values`` (one row per key, keys in any order) to the table."""
        n = keys.shape[0]
        if n == 0:
            return
        if n <= _SMALL_ADD:
            recent = self.recent
            for key, row in zip(keys.tolist(), values.tolist(), strict=True):
                _add_entry(recent.setdefault(key >> KEY_BITS, {}), key & VALUE_MASK, row)
        else:
            self.pending.append((keys, values))
        self.pending_n += n
        if self.pending_n > max(self.keys.shape[0] // 4, _COMPACT_AT):
            self.compact()

    def compact(self, *, runs_only: bool = False) -> None:
        """Merge the pending runs and (unless ``runs_only``) the small adds into the sorted keys."""
        recent = {} if runs_only else self.recent
        if not self.pending and not recent and not self._zeroed:
            return
        keys, values = self.keys, self.values
        if self._zeroed:
            alive = values[:, -1] > 0
            keys, values = keys[alive], values[alive]
            if not self.pending and not recent:
                self._set(keys, values)
                return
        runs = [(keys, values), *self.pending]
        if recent:
            items = [(u, v, row) for u, entries in recent.items() for v, row in entries.items()]
            keys = np.array([(u << KEY_BITS) | v for u, v, _ in items], dtype=np.int64)
            runs.append((keys, np.array([row for _, _, row in items], dtype=np.float64)))
        self._set(*sum_rows(np.concatenate([k for k, _ in runs]), np.concatenate([v for _, v in runs])))
        self.pending_n -= sum(k.shape[0] for k, _ in self.pending)
        self.pending = []
        if not runs_only:
            self.recent, self.pending_n = {}, 0

    def subtract(self, keys: NDArray[np.int64], values: NDArray[np.float64]) -> None:
        """Take ``values`` back out of the keys it was added to; emptied keys are dropped."""
        self.compact()
        if keys.shape[0] == 0 or self.keys.shape[0] == 0:
            return
        run_keys, run_values = sum_rows(keys, values)
        at = np.minimum(np.searchsorted(self.keys, run_keys), self.keys.shape[0] - 1)
        found = self.keys[at] == run_keys  # a key never added has nothing to take back
        at = at[found]
        left = self.values[at] - run_values[found]
        alive = np.rint(left[:, -1]) > 0
        self.values[at] = np.where(alive[:, None], np.maximum(left, 0.0), 0.0)
        if not alive.all():
            keep = np.ones(self.keys.shape[0], dtype=np.bool_)
            keep[at[~alive]] = False
            self.keep(keep)

    def fold_row(self, source: int, target: int) -> None:
        """Add profile ``source``'s entries into ``target``'s (as small adds) and remove them
        from ``source``: the per-profile offsets (:meth:`starts`) find its merged keys, which
        are zeroed in place; O(the two profiles' entries) once the pending runs are merged."""
        if source == target:
            return
        moved = self.entries_of(source)
        starts = self.starts()
        if source + 1 < starts.shape[0]:
            lo, hi = starts[source : source + 2].tolist()
            if hi > lo:
                self.values[lo:hi] = 0.0
                self._zeroed += hi - lo
        self.recent.pop(source, None)
        if moved:
            entries = self.recent.setdefault(target, {})
            for value, row in moved.items():
                _add_entry(entries, value, row)
            self.pending_n += len(moved)

    def keep(self, mask: NDArray[np.bool_]) -> None:
        self._set(self.keys[mask], self.values[mask])

    def load(self, keys: NDArray[np.int64], values: NDArray[np.float64]) -> None:
        self._set(keys, values)
        self.pending, self.recent, self.pending_n = [], {}, 0

    def starts(self) -> NDArray[np.int64]:
        """``starts[p] : starts[p + 1]`` is profile ``p``'s slice of ``keys`` (after a merge of
        the pending runs); profiles past the end have no merged keys."""
        if self.pending:
            self.compact(runs_only=True)
        if self._starts is None:
            owners = self.keys >> KEY_BITS
            per_profile = np.bincount(owners, minlength=int(owners[-1]) + 1 if owners.shape[0] else 0)
            self._starts = np.concatenate([[0], np.cumsum(per_profile)]).astype(np.int64)
        return self._starts

    def entries_of(self, profile: int) -> dict[int, list[float]]:
        """``{value: summed values}`` of one profile's keys, unmerged small adds included."""
        starts = self.starts()
        out: dict[int, list[float]] = {}
        if profile + 1 < starts.shape[0]:
            lo, hi = starts[profile : profile + 2].tolist()
            if hi > lo:
                values = (self.keys[lo:hi] & VALUE_MASK).tolist()
                out = dict(zip(values, self.values[lo:hi].tolist(), strict=True))
                if self._zeroed:
                    out = {value: row for value, row in out.items() if row[-1] > 0}
        recent = self.recent.get(profile)
        if recent:
            for value, row in recent.items():
                old = out.get(value)
                out[value] = row if old is None else [a + b for a, b in zip(old, row, strict=True)]
        return out

    def column_of(self, profile: int, column: int) -> list[float]:
        """Value ``column`` of each of one profile's keys (summed over its entries, unmerged
        small adds included), in no particular order: :meth:`entries_of` without the dict."""
        if profile in self.recent:
            return [row[column] for row in self.entries_of(profile).values()]
        starts = self.starts()
        if profile + 1 >= starts.shape[0]:
            return []
        lo, hi = starts[profile : profile + 2].tolist()
        rows = self.values[lo:hi]
        if self._zeroed:
            rows = rows[rows[:, -1] > 0]
        out: list[float] = rows[:, column].tolist()
        return out

    def take(self, profiles: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The entries of ``profiles`` (unmerged small adds included) as keys ``row << 32 |
        value``, ``row`` the position in ``profiles``; a key may repeat (sum by key to merge)."""
        starts = self.starts()
        inside = profiles + 1 < starts.shape[0]
        clipped = np.where(inside, profiles, 0)
        lo = np.where(inside, starts[clipped], 0)
        length = np.where(inside, starts[np.minimum(clipped + 1, starts.shape[0] - 1)] - lo, 0)
        row = np.repeat(np.arange(profiles.shape[0], dtype=np.int64), length)
        at = np.arange(row.shape[0], dtype=np.int64) + np.repeat(lo - (np.cumsum(length) - length), length)
        if self._zeroed:
            alive = self.values[at, -1] > 0
            row, at = row[alive], at[alive]
        keys = (row << KEY_BITS) | (self.keys[at] & VALUE_MASK)
        values = self.values[at]
        if self.recent:
            extra_keys: list[int] = []
            extra_rows: list[list[float]] = []
            for i, profile in enumerate(profiles.tolist()):
                for value, entry in self.recent.get(profile, {}).items():
                    extra_keys.append((i << KEY_BITS) | value)
                    extra_rows.append(entry)
            if extra_keys:
                keys = np.concatenate([keys, np.array(extra_keys, dtype=np.int64)])
                values = np.concatenate([values, np.array(extra_rows, dtype=np.float64)])
        return keys, values


def _add_entry(entries: dict[int, list[float]], value: int, row: list[float]) -> None:
    """Add ``row`` into ``entries[value]``."""
    old = entries.get(value)
    entries[value] = row if old is None else [a + b for a, b in zip(old, row, strict=True)]


def sum_rows(
    keys: NDArray[np.int64], values: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Sorted unique ``keys`` and the column sums of ``values`` rows per key."""
    unique, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.empty((unique.shape[0], values.shape[1]))
    for j in range(values.shape[1]):
        sums[:, j] = np.bincount(inverse, weights=values[:, j], minlength=unique.shape[0])
    return unique.astype(np.int64, copy=False), sums
