"""The events behind the dedupe window, so a merge can count an event both shards folded once.

The event-id window (:mod:`affinity_sdk.ingest.dedupe`) remembers ids; this journal keeps the
folded events that carry them, in the same two generations (it rotates when the window does, so
it holds at least every event whose id the window holds, and at most one generation more). When
two stores merge, an id held by both windows is an event both folded: the merge takes the other
store's copy back out of every view (:meth:`~affinity_sdk.profile.store.ProfileStore.merge`), so
the merged store equals one store that saw the union, within the window.

Memory: the events' columns, about 48 bytes per event plus 37 per product line, for the events
whose ids are in the window (events without an ``event_id`` are not kept). ``dedupe_window=None``
turns the window and the journal off; ``journal=False`` the journal alone (a scorer that is never
merged, such as a CLI command's). Events taken one at a time (:meth:`EventJournal.append_row`,
the one-event ingest path) wait as plain row tuples, at most :data:`ROWS_PER_CHUNK` of them, and
become columns when that many have come or the journal is read: a row costs one list append, and a
kept event the same bytes as one that came in a batch.

Examples
--------
>>> import numpy as np
>>> from affinity_sdk.ingest.batch import EventBatch
>>> lines = b'{"type":"app_opened","user_id":"a","timestamp":0,"event_id":"x"}\\n'
>>> lines += b'{"type":"app_opened","user_id":"b","timestamp":0}\\n'
>>> journal = EventJournal()
>>> journal.append(EventBatch.from_ndjson(lines), rotations=0)
>>> len(journal), first_of_each_id(journal.batch()).tolist()
(1, [True])
>>> # one event, as the one-event path hands it over: its event columns, then its item rows
>>> row = (1, 0, 5, 0, np.nan, np.nan, False, -1, 99, -1)  # user "b", event id hash 99
>>> journal.append_row(row, [], rotations=0, interners=journal.batch().interners)
>>> len(journal), journal.batch().user.tolist(), journal.batch().ts_ms.tolist()
(2, [0, 1], [0, 5])
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.ingest.batch import (
    EVENT_COLUMNS,
    ITEM_COLUMNS,
    EventBatch,
    Interners,
    concat_batches,
    take_rows,
)

__all__ = ["ROWS_PER_CHUNK", "EventJournal", "first_of_each_id"]

#: Rows :meth:`EventJournal.append_row` holds as tuples before it turns them into columns: the
#: conversion (about 0.5 µs a row) then stays near half a millisecond, and the ~430 bytes a held
#: one-product row costs (against ~90 as columns) are held for at most this many events.
ROWS_PER_CHUNK: Final = 1024
_ITEM_VALUES: Final = tuple((name, dtype) for name, dtype in ITEM_COLUMNS.items() if name != "item_event")


def first_of_each_id(batch: EventBatch) -> NDArray[np.bool_]:
    """Rows holding the first occurrence of their ``event_id`` in ``batch``."""
    first = np.zeros(len(batch), dtype=np.bool_)
    first[np.unique(batch.event_id, return_index=True)[1]] = True
    return first


class EventJournal:
    """Folded events with an ``event_id``, in two generations that follow the window's."""

    def __init__(self) -> None:
        self._current: list[EventBatch] = []
        self._previous: list[EventBatch] = []
        self._rotations = 0
        #: Profile moves (:meth:`move_user`) not yet applied to the kept events, in order:
        #: ``(source, target)``.
        self._moves: list[tuple[int, int]] = []
        #: Current events from :meth:`append_row` after every part of ``_current``, not yet columns:
        #: event rows, and ``(row in _rows, item rows)`` for those with product lines.
        self._rows: list[tuple[Any, ...]] = []
        self._items: list[tuple[int, list[tuple[Any, ...]]]] = []
        self._interners: Interners | None = None

    def __len__(self) -> int:
        return sum(len(b) for b in self._current) + sum(len(b) for b in self._previous) + len(self._rows)

    def _follow(self, rotations: int) -> None:
        behind = rotations - self._rotations
        if behind >= 2:
            self._previous, self._current, self._moves = [], [], []
            self._rows, self._items = [], []
        elif behind == 1:
            self._flush()
            self._previous, self._current = self._current, []
        self._rotations = rotations

    def append_row(
        self,
        row: tuple[Any, ...],
        item_rows: list[tuple[Any, ...]],
        *,
        rotations: int,
        interners: Interners,
    ) -> None:
        """Keep one event that carries an id, as :meth:`append` would keep it in a one-row batch.

        ``row`` holds its values in :data:`~affinity_sdk.ingest.batch.EVENT_COLUMNS` order, coded
        in ``interners``; ``item_rows`` one tuple per product line in the order of
        :data:`~affinity_sdk.ingest.batch.ITEM_COLUMNS` after ``item_event``. ``rotations`` is the
        window's counter now. Nothing is checked: the caller passes what the screen accepted.

        Examples
        --------
        >>> from affinity_sdk.ingest.batch import Interners
        >>> journal = EventJournal()
        >>> item = (0, 0, 0, 59.0, np.nan, 1)  # product, category, brand codes; price, discount, quantity
        >>> journal.append_row((0, 3, 5, 0, 59.0, np.nan, False, -1, 7, -1), [item], rotations=0,
        ...                    interners=Interners())
        >>> kept = journal.batch()
        >>> kept.event_id.tolist(), kept.item_event.tolist(), kept.item_price.tolist()
        ([7], [0], [59.0])
        """
        if rotations != self._rotations:
            self._follow(rotations)
        rows = self._rows
        if item_rows:
            self._items.append((len(rows), item_rows))
        rows.append(row)
        self._interners = interners
        if len(rows) >= ROWS_PER_CHUNK:
            self._flush()

    def _flush(self) -> None:
        """Turn the rows :meth:`append_row` holds into one batch at the end of ``_current``."""
        rows = self._rows
        if not rows or self._interners is None:
            return
        n = len(rows)
        columns: dict[str, Any] = {
            name: np.fromiter(values, dtype=dtype, count=n)
            for (name, dtype), values in zip(EVENT_COLUMNS.items(), zip(*rows, strict=True), strict=True)
        }
        pairs = self._items
        item_event = [event for event, item_rows in pairs for _ in item_rows]
        n_items = len(item_event)
        columns["item_event"] = np.fromiter(item_event, dtype=np.int64, count=n_items)
        values = [item for _, item_rows in pairs for item in item_rows]
        by_column = zip(*values, strict=True) if values else [()] * len(_ITEM_VALUES)
        for (name, dtype), column in zip(_ITEM_VALUES, by_column, strict=True):
            columns[name] = np.fromiter(column, dtype=dtype, count=n_items)
        self._current.append(EventBatch(**columns, interners=self._interners))
        self._rows, self._items = [], []

    def append(self, batch: EventBatch, *, rotations: int) -> None:
        """Keep ``batch``'s events that carry an id; ``rotations`` is the window's counter now."""
        self._follow(rotations)
        has_id = batch.event_id != 0
        if not has_id.any():
            return
        kept = batch if has_id.all() else take_rows(batch, has_id)
        self._flush()
        self._current.append(replace(kept, source=None))

    def batch(self) -> EventBatch | None:
        """Every kept event as one batch (``None`` when empty); compacts the generations."""
        self._apply_moves()
        parts = [*self._previous, *self._current]
        if not parts:
            return None
        interners = parts[0].interners
        if len(self._previous) > 1:
            self._previous = [concat_batches(self._previous, interners)]
        if len(self._current) > 1:
            self._current = [concat_batches(self._current, interners)]
        return concat_batches([*self._previous, *self._current], interners)

    def erase_users(self, codes: NDArray[np.int64]) -> None:
        """Drop every kept event of these profiles (a forget)."""
        self._apply_moves()
        for generation in (self._previous, self._current):
            for i, part in enumerate(generation):
                hit = np.isin(part.user, codes)
                if hit.any():
                    generation[i] = take_rows(part, ~hit)

    def move_user(self, source: int, target: int) -> None:
        """Kept events of profile ``source`` now belong to ``target`` (identity stitching).

        Recorded in O(1) amortised; the kept events are re-coded once, by the next read
        (:meth:`batch`, :meth:`erase_users`, :meth:`to_arrays`), for every move since the last.

        Examples
        --------
        >>> from affinity_sdk.ingest.batch import EventBatch
        >>> journal = EventJournal()
        >>> line = b'{"type":"app_opened","user_id":"a","timestamp":0,"event_id":"x"}'
        >>> journal.append(EventBatch.from_ndjson(line), rotations=0)
        >>> journal.move_user(0, 3)
        >>> journal.move_user(3, 5)
        >>> journal.batch().user.tolist()
        [5]
        """
        if source != target and (self._previous or self._current or self._rows):
            self._moves.append((source, target))

    def _apply_moves(self) -> None:
        """Turn held rows into columns, then re-code the kept events by the recorded moves (one
        pass over them): what every read of the kept events starts with."""
        self._flush()
        if not self._moves:
            return
        # Where an event held at each moved code ends up, the moves composed from the last back:
        # a move s -> t sends s wherever t goes after it (a -> b then b -> c: a ends at c; a -> b
        # then b -> a: a stays, b ends at a), in one pass whatever the order or cycles.
        ends: dict[int, int] = {}
        for source, target in reversed(self._moves):
            ends[source] = ends.get(target, target)
        self._moves = []
        sources = np.fromiter(ends.keys(), dtype=np.int64, count=len(ends))
        targets = np.fromiter(ends.values(), dtype=np.int64, count=len(ends))
        order = np.argsort(sources)
        sources, targets = sources[order], targets[order]
        for generation in (self._previous, self._current):
            for i, part in enumerate(generation):
                user = part.user.astype(np.int64, copy=False)
                at = np.minimum(np.searchsorted(sources, user), sources.shape[0] - 1)
                hit = sources[at] == user
                if hit.any():  # new arrays: a kept batch may be the caller's
                    moved = np.where(hit, targets[at], user).astype(part.user.dtype, copy=False)
                    generation[i] = replace(part, user=moved)

    def extend(self, batch: EventBatch | None, *, rotations: int) -> None:
        """Add ``batch`` (another store's journal, already coded in this store) as current events."""
        self._follow(rotations)
        if batch is not None and len(batch):
            self._flush()
            self._current.append(batch)

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The kept events' columns, for a state file (with ``generation``: 0 previous, 1 current)."""
        self._apply_moves()
        parts = [*self._previous, *self._current]
        if not parts:
            return {}
        whole = concat_batches(parts, parts[0].interners)
        n_previous = sum(len(b) for b in self._previous)
        arrays: dict[str, NDArray[Any]] = {
            name: getattr(whole, name) for name in (*EVENT_COLUMNS, *ITEM_COLUMNS)
        }
        arrays["generation"] = (np.arange(len(whole)) >= n_previous).astype(np.int8)
        return arrays

    def load_arrays(self, arrays: dict[str, NDArray[Any]], interners: Interners, rotations: int) -> None:
        """Restore :meth:`to_arrays` output (codes in ``interners``); ``ValueError`` if malformed."""
        self._previous, self._current, self._rotations, self._moves = [], [], rotations, []
        self._rows, self._items = [], []
        if not arrays:
            return
        try:
            names = (*EVENT_COLUMNS, *ITEM_COLUMNS)
            columns: dict[str, Any] = {name: arrays[name] for name in names}
            generation = arrays["generation"]
        except KeyError as exc:
            raise ValueError(f"journal column {exc} is missing") from None
        n = generation.shape[0]
        n_items = columns["item_event"].shape[0]
        if any(columns[k].ndim != 1 or columns[k].shape[0] != n for k in EVENT_COLUMNS) or any(
            columns[k].ndim != 1 or columns[k].shape[0] != n_items for k in ITEM_COLUMNS
        ):
            raise ValueError("journal columns have mismatched lengths")
        dtypes = {**EVENT_COLUMNS, **ITEM_COLUMNS}
        if any(columns[k].dtype != np.dtype(dtypes[k]) for k in columns):
            raise ValueError("journal columns have the wrong types")
        users, item_event = columns["user"], columns["item_event"]
        if (n and (users.min() < 0 or users.max() >= len(interners.users))) or (
            n_items and (item_event.min() < 0 or item_event.max() >= n)
        ):
            raise ValueError("journal rows refer to unknown users or events")
        whole = EventBatch(**columns, interners=interners)
        previous = generation == 0
        if previous.any():
            self._previous = [take_rows(whole, previous)]
        if not previous.all():
            self._current = [take_rows(whole, ~previous)]
