"""Tier changes: the record ``on_tier_change`` callbacks receive, and how a batch of them is fired.

:class:`~affinity_sdk.score.scorer.Scorer` reports a change when ``score()`` re-tiers a user or an
``ingest`` call folds events of a user whose tier then moves.

Examples
--------
>>> seen = []
>>> fire([TierChange("ann", "low", "high", 91.0)], [seen.append])
>>> seen
[TierChange(user_id='ann', old='low', new='high', score=91.0)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["LABELS", "TierChange", "TierLabel", "fire"]

TierLabel = Literal["low", "medium", "high"]

#: Tier code -> label (``TIER_LABELS`` as ``str``).
LABELS: Final[tuple[TierLabel, TierLabel, TierLabel]] = ("low", "medium", "high")


@dataclass(frozen=True)
class TierChange:
    """A user's tier moved (passed to ``on_tier_change`` callbacks): at a ``score()`` run, or at an
    ``ingest`` call that folded the user's events. ``score`` is the 0-100 score the new tier was
    assigned from."""

    user_id: str
    old: TierLabel
    new: TierLabel
    score: float


def fire(changes: list[TierChange], callbacks: list[Callable[[TierChange], None]]) -> None:
    """Run every callback on every change, in order (the caller has released the lock)."""
    for change in changes:
        for callback in callbacks:
            callback(change)
