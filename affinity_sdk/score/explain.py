"""Explanations: why a user has their score, signal by signal (:meth:`Scorer.explain
<affinity_sdk.score.scorer.Scorer.explain>`).

Each signal's part is its weight times its decayed value at ``now``; the parts sum to the raw
score, and the 0-100 score and tier follow from it as in ``score()``.

Examples
--------
>>> from affinity_sdk import Scorer
>>> scorer = Scorer()
>>> _ = scorer.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":0}')
>>> why = explain(scorer, "ann", None)
>>> why.signals[0].signal, why.signals[0].count, why.tier
('app_opened', 1, 'high')
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from affinity_sdk.score.tier_changes import TierLabel

if TYPE_CHECKING:
    from affinity_sdk.score.scorer import Scorer

__all__ = ["Explanation", "SignalExplanation", "explain"]


class SignalExplanation(msgspec.Struct, frozen=True, kw_only=True):
    """One signal's part in a user's score."""

    signal: str
    weight: float
    decayed: float
    contribution: float
    count: int
    total: float
    first_seen_ms: int | None
    last_seen_ms: int | None


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    """Why a user has their score: contributions sorted by absolute size, largest first."""

    user_id: str
    now_ms: int
    raw_score: float
    score: float
    tier: TierLabel
    signals: list[SignalExplanation]


def explain(scorer: Scorer, user_id: str, now: datetime | str | int | None) -> Explanation:
    """:meth:`Scorer.explain <affinity_sdk.score.scorer.Scorer.explain>`: each signal's decayed
    value, count, first / last seen and contribution, largest first; ``KeyError`` for an unknown,
    opted-out or forgotten user."""
    with scorer._lock:
        code = scorer.store.code_of(user_id)
        if code is None:
            raise KeyError(f"no scorable user {user_id!r}")
        now_ms = scorer.store.now_ms(now)
        state = scorer.signals.state
        record = state.records[code]
        decayed = state.acc[code] * state.factors(now_ms)
        weights = scorer.signals.weights
        contributions = weights * decayed
        signals = [
            SignalExplanation(
                signal=name,
                weight=float(weights[i]),
                decayed=float(decayed[i]),
                contribution=float(contributions[i]),
                count=int(record["count"][i]),
                total=float(record["total"][i]),
                first_seen_ms=int(record["first_ms"][i]) if record["count"][i] else None,
                last_seen_ms=int(record["last_ms"][i]) if record["count"][i] else None,
            )
            for i, name in enumerate(scorer.config.signal_names)
        ]
        signals.sort(key=lambda s: (-abs(s.contribution), s.signal))
        raw = float(contributions.sum())
        tier = scorer.tier_of(user_id, now_ms) or "low"
        score = float(scorer.plan.to_score(np.array([raw]))[0])
    return Explanation(user_id=user_id, now_ms=now_ms, raw_score=raw, score=score, tier=tier, signals=signals)
