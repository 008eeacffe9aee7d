"""Tier changes at ingest: after an ``ingest`` call, re-tier the users it touched against the
current cut-offs and report who moved (:meth:`Scorer.ingest
<affinity_sdk.score.scorer.Scorer.ingest>`; the callbacks fire with
:func:`~affinity_sdk.score.tier_changes.fire` once the lock is released).

The users are tiered at the latest event time with hysteresis against the tier they last had, and
that tier is remembered, so the next ``score()`` does not report the same change again.

Examples
--------
>>> from affinity_sdk import Scorer
>>> scorer = Scorer()
>>> _ = scorer.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":0}')
>>> _ = scorer.ingest(b'{"type":"order_completed","user_id":"bob","timestamp":0,'
...                   b'"order_id":"o1","products":[],"revenue":30}')
>>> _ = scorer.score()
>>> _ = scorer.on_tier_change(print)
>>> report = scorer.store.ingest(b'{"type":"order_completed","user_id":"ann","timestamp":1,'
...                              b'"order_id":"o2","products":[],"revenue":90}')
>>> [(c.user_id, c.old, c.new) for c in ingest_changes(scorer, report)]
[('ann', 'low', 'high')]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from affinity_sdk import kernels
from affinity_sdk.ingest.pipeline import IngestReport
from affinity_sdk.score.tier_changes import LABELS, TierChange
from affinity_sdk.score.tiers import NO_TIER

if TYPE_CHECKING:
    from affinity_sdk.score.scorer import Scorer

__all__ = ["ingest_changes", "one_change"]


def ingest_changes(scorer: Scorer, report: IngestReport) -> list[TierChange]:
    """After an ingest (lock held): refresh the cut-offs if ``refresh_cutoffs_every`` is due,
    then, with callbacks registered, re-tier the users the call touched and return the changes."""
    now_ms = scorer.store.now_ms(None)
    if scorer._refresh_every is not None:
        scorer._since_cutoffs += report.accepted
        if scorer._since_cutoffs >= scorer._refresh_every:
            scorer._refresh_cutoffs(now_ms)
    codes = report.user_codes
    if not scorer._callbacks or codes.shape[0] == 0:
        return []
    if codes.shape[0] == 1 and scorer.signals.live is not None:
        return one_change(scorer, int(codes[0]), now_ms)
    flags = scorer.store.flags
    codes = codes[~(flags.opted_out[codes] | flags.retired[codes])]
    if codes.shape[0] == 0:
        return []
    cut_up, cut_down = scorer._cutoffs if scorer._cutoffs is not None else scorer._refresh_cutoffs(now_ms)
    if scorer.backend == "reference":
        # numpy's BLAS dot may round a row differently among a few rows than among all of
        # them: score every row, as score() does, so both see the same raw scores bit for bit.
        raw = scorer.signals.raw_scores(now_ms)[codes]
    else:
        # The kernel score() uses, on the touched rows only: each row is summed on its own.
        state = scorer.signals.state
        coefs = scorer.signals.weights * state.factors(now_ms)
        raw = kernels.raw_scores(state.acc[codes], coefs, backend=scorer.backend)
    tiers_all = scorer._grown_tiers()
    previous = tiers_all[codes]
    tiers = scorer.plan.assign(raw, cut_up, cut_down, previous, backend=scorer.backend)
    tiers_all[codes] = tiers
    before = np.where(previous == NO_TIER, 0, previous)
    moved = np.flatnonzero(tiers != before)
    if moved.shape[0] == 0:
        return []
    names = scorer.interners.users.names
    score = scorer.plan.to_score(raw[moved])
    return [
        TierChange(names[code], LABELS[old], LABELS[new], value)
        for code, old, new, value in zip(
            codes[moved].tolist(),
            before[moved].tolist(),
            tiers[moved].tolist(),
            score.tolist(),
            strict=True,
        )
    ]


def one_change(scorer: Scorer, code: int, now_ms: int) -> list[TierChange]:
    """:func:`ingest_changes` for one user on scalars (compiled signals view): the same raw
    score, rule and tier as the array path."""
    flags = scorer.store.flags
    if flags.opted_out[code] or flags.retired[code]:
        return []
    cuts = scorer._scalar_cutoffs(now_ms)
    raw = scorer.signals.raw_of(code, now_ms)
    tiers_all = scorer._grown_tiers()
    previous = int(tiers_all[code])
    tier = cuts.tier(raw, previous)
    tiers_all[code] = tier
    before = 0 if previous == NO_TIER else previous
    if tier == before:
        return []
    name = scorer.interners.users.names[code]
    return [TierChange(name, LABELS[before], LABELS[tier], scorer.plan.score_one(raw))]
