"""What a view of the profile store implements: fold, erase, merge, save and load.

A view is exact and additive (a forward-decay state or another sum), so the pipeline can run
consent, forget, dedupe and identity once, before any view sees an event, and merging shards is
adding rows. :class:`~affinity_sdk.profile.signals.SignalView` is the scored signals; the affinity
view is :class:`~affinity_sdk.models.affinity.AffinityModel`'s state.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.ingest.batch import EventBatch

__all__ = ["View"]


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
