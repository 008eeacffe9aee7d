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
    (:mod:`affinity_sdk.kernels._dedupe_reference`), ``"numba"`` its compiled twin; there is no C++
    probe, so ``"cpp"`` runs the Numba one. Numba is imported when the window first probes.

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

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from affinity_sdk._backends import BackendName, resolve_backend
from affinity_sdk.capture import events as ev
from affinity_sdk.kernels import _dedupe_reference

if TYPE_CHECKING:
    from affinity_sdk.ingest.batch import EventBatch
    from affinity_sdk.kernels.protocol import WindowKernels

__all__ = ["DEFAULT_WINDOW", "MAX_WINDOW", "EventIdWindow", "screen_rows", "take_rows"]

#: Default number of most recent distinct event ids guaranteed to be remembered (16 MiB).
DEFAULT_WINDOW: Final = 1 << 19
MAX_WINDOW: Final = 1 << 28


def _impl(backend: BackendName) -> WindowKernels:
    """The probe kernel of ``backend`` (no C++ twin: ``"cpp"`` runs the Numba kernel)."""
    if backend == "reference":
        return _dedupe_reference
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

    def _rotate(self) -> None:
        cur, old = self._allocate()
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

    def contains(self, event_ids: ArrayLike) -> NDArray[np.bool_]:
        """Which ids the window holds now, without remembering anything (a set lookup over the
        held ids: meant for merges, not for the per-event path).

        Examples
        --------
        >>> import numpy as np
        >>> window = EventIdWindow(8)
        >>> _ = window.seen(np.array([5, 6], dtype=np.uint64))
        >>> window.contains(np.array([6, 7, 0], dtype=np.uint64)).tolist()
        [True, False, False]
        """
        keys = np.ascontiguousarray(event_ids, dtype=np.uint64)
        held = self.to_arrays()
        found: NDArray[np.bool_] = np.isin(keys, np.concatenate([held["previous"], held["current"]]))
        found &= keys != 0
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
                window._rotate()
            window.seen(curr)
        return window


def take_rows(batch: EventBatch, keep: NDArray[np.bool_]) -> EventBatch:
    """The events of ``batch`` where ``keep`` is true, with their item rows (renumbered).

    Examples
    --------
    >>> import numpy as np
    >>> from affinity_sdk.ingest.batch import EventBatch
    >>> from affinity_sdk.capture.events import OrderCompleted, Product
    >>> p = Product(product_id="p", category="c", brand="b", price=1.0)
    >>> orders = [OrderCompleted(user_id=u, timestamp=0, order_id=u, products=[p, p], revenue=2.0)
    ...           for u in ("a", "b")]
    >>> kept = take_rows(EventBatch.from_events(orders), np.array([False, True]))
    >>> len(kept), kept.item_event.tolist(), kept.user.tolist()
    (1, [0, 0], [1])
    """
    if keep.all():
        return batch
    event_columns = "user event_type ts_ms channel revenue discount has_coupon campaign event_id consent"
    item_columns = "item_product item_category item_brand item_price item_discount item_quantity"
    new_row = np.cumsum(keep, dtype=np.int64) - 1
    keep_items = keep[batch.item_event]
    changes: dict[str, Any] = {name: getattr(batch, name)[keep] for name in event_columns.split()}
    changes.update({name: getattr(batch, name)[keep_items] for name in item_columns.split()})
    changes["item_event"] = new_row[batch.item_event[keep_items]]
    changes["source"] = None if batch.source is None else batch.source.take(keep)
    return replace(batch, **changes)


#: Largest revenue an event row can carry: a product line's price × quantity at their maxima.
MAX_ROW_REVENUE: Final = ev.MAX_AMOUNT * 1_000_000


def _bad_amount(values: NDArray[np.float64], limit: float) -> NDArray[np.bool_]:
    """Not missing (NaN) and not a number in ``0 .. limit`` (so ±inf and negatives are bad)."""
    bad: NDArray[np.bool_] = (values < 0.0) | (values > limit)  # NaN compares false both ways
    return bad


def screen_rows(
    batch: EventBatch, *, max_ts_ms: int | None = None
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], Callable[[int], str]]:
    """Rows whose numbers cannot be folded: ``(bad, future, message)``.

    The decoders already enforce the schema, but Structs built in Python skip validation and an
    :class:`~affinity_sdk.ingest.batch.EventBatch` can be built by hand, so the Scorer checks every
    batch before folding: event-type and channel codes in range; timestamps within
    1900-01-01 .. 2200-01-01; revenue, discounts and prices missing (NaN) or finite, non-negative
    and at most :data:`~affinity_sdk.capture.events.MAX_AMOUNT` (revenue: times the largest quantity;
    required for ``order_completed``); quantities at least 1. ``future`` marks the rows (also in
    ``bad``) stamped after ``max_ts_ms``; ``message(row)`` says what is wrong with a bad row,
    msgspec-style.

    Examples
    --------
    >>> from affinity_sdk.ingest.batch import EventBatch
    >>> from affinity_sdk.capture.events import AppOpened, OrderCompleted
    >>> good = AppOpened(user_id="a", timestamp=5)
    >>> bad = OrderCompleted(user_id="b", timestamp=0, order_id="o", products=[], revenue=float("inf"))
    >>> flags, future, message = screen_rows(EventBatch.from_events([good, bad]), max_ts_ms=4)
    >>> flags.tolist(), future.tolist()
    ([True, True], [True, False])
    >>> message(1)
    'Expected a number in 0 .. 1e+18 or nothing, got inf - at `$[1].revenue`'
    """
    n = len(batch)
    n_types, n_channels = len(ev.EVENT_TYPES), len(ev.CHANNELS)
    ts = batch.ts_ms
    revenue_required = batch.event_type == ev.EVENT_TYPE_CODES["order_completed"]
    checks: list[tuple[NDArray[np.bool_], Callable[[int], str]]] = [
        (
            batch.event_type >= n_types,
            lambda r: f"Unknown event type code {int(batch.event_type[r])} - at {batch.locate(r, 'type')}",
        ),
        (
            batch.channel >= n_channels,
            lambda r: f"Unknown channel code {int(batch.channel[r])} - at {batch.locate(r, 'channel')}",
        ),
        (
            (ts < ev.MIN_TS_MS) | (ts > ev.MAX_TS_MS),
            lambda r: (
                f"Timestamp {int(ts[r])} ms is outside 1900-01-01 .. 2200-01-01 "
                f"- at {batch.locate(r, 'timestamp')}"
            ),
        ),
        (
            _bad_amount(batch.revenue, MAX_ROW_REVENUE) | (np.isnan(batch.revenue) & revenue_required),
            lambda r: (
                f"Expected a number in 0 .. {MAX_ROW_REVENUE:g} or nothing, got {batch.revenue[r]} "
                f"- at {batch.locate(r, 'revenue')}"
            ),
        ),
        (
            _bad_amount(batch.discount, ev.MAX_AMOUNT),
            lambda r: (
                f"Expected a number in 0 .. {ev.MAX_AMOUNT:g} or nothing, got {batch.discount[r]} "
                f"- at {batch.locate(r, 'discount')}"
            ),
        ),
    ]
    item_bad = (
        np.isnan(batch.item_price)
        | _bad_amount(batch.item_price, ev.MAX_AMOUNT)
        | _bad_amount(batch.item_discount, ev.MAX_AMOUNT)
        | (batch.item_quantity < 1)
    )
    bad_items = np.zeros(n, dtype=np.bool_)
    bad_items[batch.item_event[item_bad]] = True
    checks.append(
        (
            bad_items,
            lambda r: (
                f"A product's price or discount is not a number in 0 .. {ev.MAX_AMOUNT:g}, or its "
                f"quantity is below 1 - at {batch.locate(r, 'products')}"
            ),
        )
    )
    future = np.zeros(n, dtype=np.bool_) if max_ts_ms is None else ts > max_ts_ms
    checks.append(
        (
            future,
            lambda r: (
                f"Timestamp {int(ts[r])} ms is later than {max_ts_ms} ms, the newest time accepted "
                f"(max_future after the newest event or the clock) - at {batch.locate(r, 'timestamp')}"
            ),
        )
    )
    bad = np.zeros(n, dtype=np.bool_)
    for flags, _ in checks:
        bad |= flags

    def message(row: int) -> str:
        return next(describe(row) for flags, describe in checks if flags[row])

    return bad, future, message
