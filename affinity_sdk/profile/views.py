"""What a view of the profile store implements: fold, erase, merge, save and load.

A view is exact and additive (a forward-decay state or another sum), so the pipeline can run
consent, forget, dedupe and identity once, before any view sees an event, and merging shards is
adding rows. :class:`~affinity_sdk.profile.signals.SignalView` is the scored signals; the affinity
view is :class:`~affinity_sdk.models.affinity.AffinityModel`'s state.

An identity merge folds one profile into another (:func:`fold_row`): a view that implements
:class:`RowFolding` does it in work proportional to the two profiles; any other view falls back
to its whole-state :meth:`View.merge_rows` into itself and :meth:`View.erase`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.ingest.batch import EventBatch

__all__ = ["RowFolding", "View", "fold_row"]


class View(Protocol):
    """One view of the profile store. Profile codes are the store's user codes."""

    #: Section name in state files and ``ProfileStore.views``.
    name: str

    def grow(self, n_profiles: int) -> None:
        """Make room for profile codes below ``n_profiles``."""

    def fold(self, batch: EventBatch) -> int:
        """Fold screened, deduplicated, consented events (codes in the store's interners);
        returns how many events the view used. Must not raise on valid input."""

    def unfold(self, batch: EventBatch) -> None:
        """Take back events :meth:`fold` folded before (exactly): a merge calls it for the
        copies of events that both shards folded (:mod:`affinity_sdk.ingest.journal`)."""

    def erase(self, codes: NDArray[np.int64]) -> None:
        """Forget profiles: every trace of them leaves the view."""

    def merge_rows(self, other: Any, theirs: NDArray[np.int64], mine: NDArray[np.int64]) -> None:
        """Add ``other``'s (same kind, same config) profiles ``theirs`` into profiles ``mine``."""

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """A MessagePack-able header and named arrays for the state file."""

    def load_arrays(self, header: dict[str, Any], arrays: dict[str, NDArray[Any]], n_profiles: int) -> None:
        """Restore :meth:`to_arrays` output; raises :class:`~affinity_sdk.errors.StateError`."""


@runtime_checkable
class RowFolding(Protocol):
    """A view that can fold one profile into another in work proportional to the two rows."""

    def fold_row(self, source: int, target: int) -> None:
        """Add profile ``source`` into ``target`` and empty ``source`` (an identity merge): the
        state :meth:`View.merge_rows` of the view into itself and :meth:`View.erase` of
        ``source`` leave, without touching other profiles' rows."""


def fold_row(view: View, source: int, target: int) -> None:
    """Fold profile ``source`` into ``target`` in ``view``: its :meth:`RowFolding.fold_row`
    where it has one, else :meth:`View.merge_rows` into itself and :meth:`View.erase`.

    Examples
    --------
    >>> from affinity_sdk.config import default_config
    >>> from affinity_sdk.profile.signals import SignalView
    >>> view = SignalView(default_config(), backend="reference")
    >>> batch = EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"u","timestamp":0}')
    >>> view.grow(2)
    >>> view.fold(batch)
    1
    >>> fold_row(view, 0, 1)
    >>> view.state.records["count"].sum(axis=1).tolist()
    [0, 1]
    """
    if isinstance(view, RowFolding):
        view.fold_row(source, target)
        return
    theirs, mine = np.array([source], dtype=np.int64), np.array([target], dtype=np.int64)
    view.merge_rows(view, theirs, mine)
    view.erase(theirs)
