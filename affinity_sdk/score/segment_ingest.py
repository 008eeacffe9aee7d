"""Segment / RudderStack ingest: the calls' events through the Scorer's ingest, then their
identify / alias links, then their identify traits (:meth:`Scorer.ingest_segment
<affinity_sdk.score.scorer.Scorer.ingest_segment>`).

The calls are decoded by :mod:`affinity_sdk.capture.segment_adapter`; a reject names the index of
the call it came from.

Examples
--------
>>> from affinity_sdk import Scorer
>>> scorer = Scorer()
>>> _ = ingest_segment(scorer, [
...     {"type": "track", "event": "App Opened", "anonymousId": "anon-1", "timestamp": 0},
...     {"type": "identify", "anonymousId": "anon-1", "userId": "ann", "traits": {"plan": "gold"},
...      "timestamp": 0}], errors="raise", until=None)
>>> scorer.score().user_ids, scorer.traits_of("anon-1")
(['ann'], {'plan': 'gold'})
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from affinity_sdk.ingest.pipeline import Errors, IngestReport

if TYPE_CHECKING:
    from affinity_sdk.score.scorer import Scorer

__all__ = ["ingest_segment"]


def ingest_segment(
    scorer: Scorer, data: Any, *, errors: Errors, until: datetime | str | int | None
) -> IngestReport:
    """:meth:`Scorer.ingest_segment <affinity_sdk.score.scorer.Scorer.ingest_segment>`: the calls'
    events first, then their links, then their traits; rejects reported by call index."""
    from affinity_sdk._units import to_epoch_ms
    from affinity_sdk.capture.events import timestamp_ms
    from affinity_sdk.capture.segment_adapter import (
        from_segment,
        parse_segment,
        segment_links,
        segment_traits,
    )

    data = parse_segment(data)
    decoded = from_segment(data, errors=errors, unknown_types="skip")
    events, calls = list(decoded), list(decoded.positions)  # the call each event came from
    n_later = 0
    until_ms = None if until is None else to_epoch_ms(until)
    if until_ms is not None:
        kept = [i for i, e in enumerate(events) if timestamp_ms(e) <= until_ms]
        n_later = len(events) - len(kept)
        events, calls = [events[i] for i in kept], [calls[i] for i in kept]
    report = scorer.ingest(events, errors=errors)  # callbacks run outside the lock
    for user_id, into in segment_links(data):
        scorer.identify(user_id, into)
    for user_id, traits, at_ms in segment_traits(data):
        if until_ms is None or at_ms is None or at_ms <= until_ms:
            scorer.store.set_traits(user_id, traits, at=at_ms)
    rejects = decoded.rejects
    return replace(
        report,
        n_rejected=report.n_rejected + rejects.n_invalid,
        # every position is a call's index, as from_segment reports its own rejects
        rejected=[*rejects.errors, *((calls[i], message) for i, message in report.rejected)],
        n_later=n_later,
    )
