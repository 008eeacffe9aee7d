"""The Scorer's calls that one compiled call answers in the usual case (:class:`LiveCalls`, a base
of :class:`~affinity_sdk.score.scorer.Scorer`): ``tier_of`` and ``score_of`` at the latest event
time, and the ingest of one common event (``Scorer.ingest``'s first try).

The compiled calls (``csrc/bind_live_calls.cpp``, set up by
:func:`~affinity_sdk.ingest.one_event.live_calls`) take the objects they read as positional
arguments, loaded here: an attribute load costs far less in bytecode than through the C API, and
they are read again on every call, so nothing the calls keep can go stale. Whatever a call is
unsure of it leaves to the Python path below it, having changed nothing. The lookups are written
out in the public methods themselves because a Python call frame more would cost a tenth of the
compiled ``tier_of``.

Examples
--------
>>> from affinity_sdk import Scorer
>>> scorer = Scorer()
>>> _ = scorer.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":0}')
>>> scorer.tier_of("ann"), scorer.score_of("ann") > 0, scorer.tier_of("bob"), scorer.score_of("bob")
('high', True, None, None)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.ingest.one_event import live_calls
from affinity_sdk.score.tier_changes import LABELS, TierLabel
from affinity_sdk.score.tiers import NO_TIER, Cutoffs, ScalarCutoffs, TierPlan

if TYPE_CHECKING:
    from affinity_sdk.ingest.pipeline import IngestReport
    from affinity_sdk.profile.signals import SignalView
    from affinity_sdk.profile.store import ProfileStore

__all__ = ["LiveCalls"]


class LiveCalls:
    """``tier_of``, ``score_of`` and the one-event ingest of
    :class:`~affinity_sdk.score.scorer.Scorer`: its compiled whole-call shortcuts
    (``_live_ingest``, ``_live_tier_of``, ``_live_score_of``; ``None`` without the extension),
    each given what it reads, then the Python path, under the scorer's lock."""

    store: ProfileStore
    signals: SignalView
    plan: TierPlan
    _lock: threading.RLock
    _tiers: NDArray[np.int8]
    _cutoffs: Cutoffs | None
    # (of, as floats, as the array [enter, first, stay] for the compiled tier_at)
    _scalar_cuts: tuple[Cutoffs | None, ScalarCutoffs | None, NDArray[np.float64]]
    _scalar_cutoffs: Callable[[int], ScalarCutoffs]  # the current cut-offs as floats (Scorer)

    def _attach_live(self) -> None:
        """Set up the compiled calls (once per process) and keep them."""
        self._live_ingest, self._live_tier_of, self._live_score_of = live_calls(LABELS)

    def _ingest_live(self, data: Any, format: str) -> IngestReport | None:
        """The compiled ingest of one common event (a Struct or one NDJSON line): its report, or
        ``None`` (no extension, or nothing changed: take the Python path). The lock is the
        caller's."""
        live = self._live_ingest
        if live is None:
            return None
        store = self.store
        report: IngestReport | None = live(
            store,
            data,
            format,
            store.interners,
            store.flags,
            store.suppression,
            store.views,
            store.dedupe,
            store.latest_ms,
            store.max_future_ms,
            store.events_ingested,
        )
        return report

    def score_of(self, user_id: str, now: datetime | str | int | None = None) -> float | None:
        """One user's 0-100 score, or ``None`` for an unknown, opted-out or forgotten user."""
        store = self.store
        with self._lock:  # store.code_of and store.now_ms, inlined as in tier_of
            live = self._live_score_of
            if now is None and live is not None:  # as in tier_of
                flags, signals = store.flags, self.signals
                state = signals.state
                found: float | None = live(
                    user_id,
                    store.interners.users,
                    flags.opted_out,
                    flags.retired,
                    store.latest_ms,
                    signals._raw_at,
                    signals._table,
                    state._acc,
                    state.landmark_ms,
                    self.plan.half_point,
                )
                if found is not NotImplemented:
                    return found
            code = store.interners.users.lookup(user_id)
            if code is None or not store.is_visible(code):
                return None
            latest = store.latest_ms
            now_ms = (0 if latest is None else latest) if now is None else store.now_ms(now)
            return self.plan.score_one(self.signals.raw_of(code, now_ms))

    def tier_of(self, user_id: str, now: datetime | str | int | None = None) -> TierLabel | None:
        """One user's tier against the current cut-offs (those of the last ``score`` run or
        ``refresh_cutoffs_every`` refresh; computed once on first use if there are none), with
        hysteresis against their last tier; ``None`` for an unknown, opted-out or forgotten user."""
        store = self.store
        with self._lock:
            live = self._live_tier_of
            if now is None and live is not None:
                # The usual call: one compiled call answers it (NotImplemented: the code below).
                flags, signals = store.flags, self.signals
                state = signals.state
                found: TierLabel | None = live(
                    user_id,
                    store.interners.users,
                    flags.opted_out,
                    flags.retired,
                    store.latest_ms,
                    signals._raw_at,
                    signals._table,
                    state._acc,
                    state.landmark_ms,
                    self._scalar_cuts,
                    self._cutoffs,
                    self._tiers,
                )
                if found is not NotImplemented:
                    return found
            code = store.interners.users.lookup(user_id)
            if code is None or not store.is_visible(code):
                return None
            latest = store.latest_ms  # store.now_ms(now), its default inlined (the usual call)
            now_ms = (0 if latest is None else latest) if now is None else store.now_ms(now)
            of, cuts, cut_array = self._scalar_cuts
            if cuts is None or of is not self._cutoffs:
                cuts = self._scalar_cutoffs(now_ms)
                cut_array = self._scalar_cuts[2]
            tiers = self._tiers
            tier = self.signals.tier_at(code, now_ms, tiers, cut_array)
            if tier is None:
                previous = int(tiers[code]) if code < tiers.shape[0] else NO_TIER
                tier = cuts.tier(self.signals.raw_of(code, now_ms), previous)
            return LABELS[tier]
