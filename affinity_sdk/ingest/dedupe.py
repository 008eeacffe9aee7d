"""A bounded, memory-capped window of recently seen event ids, so replays fold only once.

Keys are the ``uint64`` :attr:`EventBatch.event_id <affinity_sdk.ingest.batch.EventBatch>` column: the
64-bit FNV-1a hash of each event's ``event_id`` (``0`` = the event has no id and is never treated
as a duplicate). :class:`EventIdWindow` keeps two *generations*, each a fixed-size open-addressing
hash table (linear probing, load factor at most 1/2) of raw ``uint64`` keys:

- a new id goes into the *current* generation; when a new id finds it full (``generation_size``
  ids), the current generation becomes the *previous* one and the old previous generation is
  dropped whole (rotation by count);
- an id is a duplicate if either generation holds it, or it occurred earlier in the same call.

Size and memory
    ``generation_size`` is the requested ``capacity`` rounded up to a power of two; each table has
    ``2 · generation_size`` slots of 8 bytes, so the window costs ``32 · generation_size`` bytes
    (32 bytes per guaranteed id, 16 per id at its fullest), allocated on the first event id seen.
    The default, :data:`DEFAULT_WINDOW` = 2¹⁹ ids, costs 16 MiB; the largest,
    :data:`MAX_WINDOW` = 2²⁸ ids, costs 8 GiB (a bigger request is a ``ValueError``, so a saved
    state cannot ask for unbounded memory).

Eviction (false negatives)
    The most recent ``generation_size`` distinct ids are always remembered, and up to
    ``2 · generation_size - 1`` are. A replay of an id older than that is *not* recognised and is
    folded again. Size the window to cover the longest replay you expect (e.g. the events between
    two snapshots, see :meth:`affinity_sdk.Scorer.save`).

Hash collisions (false positives)
    Two distinct ids with the same 64-bit hash look like a replay, so the second event is dropped.
    Among ``n`` distinct ids that happens with probability about ``n² / 2⁶⁵`` (1.4·10⁻⁸ for
    ``n = 10⁶`` ids held at once, about ``n · w / 2⁶⁴`` for a stream of ``n`` ids against a window
    of ``w``). Within the table, keys are compared in full, so the table itself adds no error.

The window is not thread-safe on its own; :class:`~affinity_sdk.Scorer` calls it under its lock.

Kernels
    The probe runs on the window's ``backend``: ``"reference"`` is the plain-Python oracle
    (:mod:`affinity_sdk.kernels._dedupe_reference`), ``"numba"`` and ``"cpp"`` (``csrc/dedupe.hpp``)
    its compiled twins. Numba is imported only when the numba probe first runs.

Examples
--------
>>> import numpy as np
>>> window = EventIdWindow(4)
>>> window.seen(np.array([11, 12, 11, 0, 0], dtype=np.uint64)).tolist()
[False, False, True, False, False]
>>> window.seen(np.array([12, 13], dtype=np.uint64)).tolist()
[True, False]
>>> len(window), window.generation_size, window.nbytes
(3, 4, 128)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from affinity_sdk._backends import BackendName, native, resolve_backend
from affinity_sdk.kernels import _dedupe_reference

if TYPE_CHECKING:
    from affinity_sdk.kernels.protocol import WindowKernels

__all__ = ["DEFAULT_WINDOW", "MAX_WINDOW", "EventIdWindow"]

#: Default number of most recent distinct event ids guaranteed to be remembered (16 MiB).
DEFAULT_WINDOW: Final = 1 << 19
MAX_WINDOW: Final = 1 << 28


def _impl(backend: BackendName) -> WindowKernels:
    """The probe kernel of ``backend``: the plain-Python oracle, its Numba twin, or the C++ one
    (``csrc/dedupe.hpp``; an extension built before it existed falls back to Numba)."""
    if backend == "reference":
        return _dedupe_reference
    if backend == "cpp":
        module = native()
        if module is not None and hasattr(module, "probe_insert"):
            kernels: WindowKernels = module
            return kernels
    from affinity_sdk.kernels import _dedupe_numba

    return _dedupe_numba


class EventIdWindow:
    """Remembers the most recent ``capacity`` (rounded up to a power of two) distinct event ids.

    Parameters
    ----------
    capacity:
        Number of most recent distinct ids guaranteed to be recognised as replays; at least 1.
    backend:
        Kernel backend for the probe (see :func:`affinity_sdk.resolve_backend`); the chosen one is
        kept in ``backend``. Every backend gives the same answers.

    Examples
    --------
    >>> import numpy as np
    >>> window = EventIdWindow(2)
    >>> [window.seen(np.array([k], dtype=np.uint64)).item() for k in (1, 2, 3, 4, 1, 5, 1)]
    [False, False, False, False, True, False, False]
    >>> window.seen(np.array([4, 3], dtype=np.uint64)).tolist()
    [True, True]
    """

    __slots__ = ("_count", "_cur", "_old", "_shift", "backend", "generation_size", "rotations")

    def __init__(self, capacity: int = DEFAULT_WINDOW, *, backend: str | None = "auto") -> None:
        if not 1 <= int(capacity) <= MAX_WINDOW:
            raise ValueError(f"dedupe window capacity must be in [1, {MAX_WINDOW}] (got {capacity})")
        bits = max(int(capacity) - 1, 1).bit_length()
        #: Ids per generation: the guaranteed window.
        self.generation_size = 1 << bits
        #: The kernel backend the probe runs on (``"cpp"`` runs the Numba probe).
        self.backend: BackendName = resolve_backend(backend)
        self._shift = 64 - (bits + 1)
        self._cur: NDArray[np.uint64] | None = None
        self._old: NDArray[np.uint64] | None = None
        self._count = 0
        #: How many times the current generation became the previous one (the journal follows it).
        self.rotations = 0

    def __repr__(self) -> str:
        return (
            f"EventIdWindow(generation_size={self.generation_size}, held={len(self)}, "
            f"backend={self.backend!r})"
        )

    def __len__(self) -> int:
        """Number of ids currently remembered (both generations)."""
        if self._old is None:
            return 0
        return self._count + int(np.count_nonzero(self._old))

    @property
    def nbytes(self) -> int:
        """Bytes the window holds once in use: ``2 tables × 2 · generation_size × 8``."""
        return 2 * 2 * self.generation_size * 8

    def _allocate(self) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
        if self._cur is None or self._old is None:
            self._cur = np.zeros(2 * self.generation_size, dtype=np.uint64)
            self._old = np.zeros(2 * self.generation_size, dtype=np.uint64)
        return self._cur, self._old

    def _rotate(self, *, clear: bool = True) -> None:
        """The current generation becomes the previous one; the dropped one, emptied, the current
        (``clear=False`` when it was never written, so its slots are not touched)."""
        cur, old = self._allocate()
        if clear:
            old.fill(0)
        self._cur, self._old = old, cur
        self._count = 0
        self.rotations += 1

    def seen(self, event_ids: ArrayLike) -> NDArray[np.bool_]:
        """Mark replays and remember the rest.

        Returns a boolean array, ``True`` where the id is already in the window or occurred
        earlier in ``event_ids``; every other non-zero id is added. Id ``0`` is never a replay.

        Examples
        --------
        >>> import numpy as np
        >>> EventIdWindow(8).seen(np.array([5, 0, 5, 0], dtype=np.uint64)).tolist()
        [False, False, True, False]
        """
        keys = np.ascontiguousarray(event_ids, dtype=np.uint64)
        dup = np.zeros(keys.shape[0], dtype=np.bool_)
        if not keys.any():
            return dup
        cur, old = self._allocate()
        probe = _impl(self.backend).probe_insert
        start = 0
        while True:
            room = self.generation_size - self._count
            start, inserted = probe(cur, old, keys, dup, start, room, self._shift)
            self._count += inserted
            if start >= keys.shape[0]:
                return dup
            self._rotate()
            cur, old = self._allocate()

    def seen_one(self, key: int) -> bool:
        """:meth:`seen` for one id (the one-event ingest path): whether ``key`` is a replay,
        remembering it if not; on the ``"cpp"`` backend one scalar probe, no array.

        Examples
        --------
        >>> window, twin = EventIdWindow(2), EventIdWindow(2)
        >>> keys = (7, 7, 8, 7, 9, 3, 7)  # 9 starts a new generation; 7 is in the previous one
        >>> [window.seen_one(k) for k in keys]
        [False, True, False, True, False, False, True]
        >>> [twin.seen(np.array([k], dtype=np.uint64)).item() for k in keys]
        [False, True, False, True, False, False, True]
        """
        if key == 0:
            return False
        module = native() if self.backend == "cpp" else None
        probe = getattr(module, "live_probe", None)
        if probe is None:
            return bool(self.seen(np.array([key], dtype=np.uint64))[0])
        cur, old = self._allocate()
        while True:
            found: int = probe(cur, old, key, self.generation_size - self._count, self._shift)
            if found >= 0:
                self._count += 1 - found
                return found == 1
            self._rotate()
            cur, old = self._allocate()

    def contains(self, event_ids: ArrayLike) -> NDArray[np.bool_]:
        """Which ids the window holds now, without remembering anything (meant for merges, not
        for the per-event path).

        The ids are looked up in the two tables along the probe paths :meth:`seen` inserts on,
        all at once, one probe step per round: work in proportion to the ids asked about, not
        to the window (a merge used to sort every held id on each call).

        Examples
        --------
        >>> import numpy as np
        >>> window = EventIdWindow(8)
        >>> _ = window.seen(np.array([5, 6], dtype=np.uint64))
        >>> window.contains(np.array([6, 7, 0], dtype=np.uint64)).tolist()
        [True, False, False]
        """
        keys = np.ascontiguousarray(event_ids, dtype=np.uint64)
        found = np.zeros(keys.shape[0], dtype=np.bool_)
        if self._cur is None or self._old is None:
            return found
        asked = np.flatnonzero(keys)
        home = (keys[asked] * np.uint64(_dedupe_reference.GOLDEN)) >> np.uint64(self._shift)
        for table in (self._old, self._cur):
            mask = np.uint64(table.shape[0] - 1)
            rows, pos = asked, home
            while rows.shape[0]:  # load <= 1/2: probe paths are short
                slot = table[pos]
                hit = slot == keys[rows]
                found[rows[hit]] = True
                going = ~hit & (slot != 0)  # an empty slot ends the path: not held
                rows, pos = rows[going], (pos[going] + np.uint64(1)) & mask
        return found

    def to_arrays(self) -> dict[str, NDArray[np.uint64]]:
        """The remembered ids, compactly (8 bytes each), for saving: ``{"previous", "current"}``."""
        if self._cur is None or self._old is None:
            empty = np.zeros(0, dtype=np.uint64)
            return {"previous": empty, "current": empty.copy()}
        return {"previous": self._old[self._old != 0], "current": self._cur[self._cur != 0]}

    @classmethod
    def from_arrays(
        cls, capacity: int, previous: ArrayLike, current: ArrayLike, *, backend: str | None = "auto"
    ) -> EventIdWindow:
        """Rebuild a window saved with :meth:`to_arrays`.

        Examples
        --------
        >>> import numpy as np
        >>> window = EventIdWindow(4)
        >>> _ = window.seen(np.arange(1, 7, dtype=np.uint64))
        >>> clone = EventIdWindow.from_arrays(4, **window.to_arrays())
        >>> clone.seen(np.array([6, 5, 1, 9], dtype=np.uint64)).tolist()
        [True, True, True, False]
        """
        window = cls(capacity, backend=backend)
        prev = np.asarray(previous, dtype=np.uint64)
        curr = np.asarray(current, dtype=np.uint64)
        size = window.generation_size
        if prev.ndim != 1 or curr.ndim != 1:
            raise ValueError("saved dedupe window arrays must be one-dimensional")
        if prev.shape[0] > size or curr.shape[0] > size or not (prev.all() and curr.all()):
            raise ValueError("saved dedupe window does not fit its capacity or holds id 0")
        if prev.shape[0] or curr.shape[0]:
            window.seen(prev)
            if prev.shape[0]:
                # The other table was never written: filling it would touch every slot a
                # (possibly hostile) header asked for.
                window._rotate(clear=False)
            window.seen(curr)
        return window
