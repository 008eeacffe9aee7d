"""Tier-change triggers at ingest: ``on_tier_change`` callbacks fire during ``ingest`` for the users
the call touched (against the current cut-offs, with hysteresis), once per change, never for
opted-out or forgotten users, agree with ``score()``, and cost nothing without callbacks; the
``refresh_cutoffs_every`` knob."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affinity_sdk import Scorer, kernels
from affinity_sdk.capture.events import (
    AppOpened,
    ConsentChanged,
    Event,
    OrderCompleted,
    Product,
    ProductAdded,
    ProductViewed,
)
from affinity_sdk.config import ScoringConfig
from affinity_sdk.score.scorer import TierChange

CONFIG = ScoringConfig.from_toml(
    """
version = "test-1"
[signals.product_viewed]
weight = 1.0
half_life = "3d"
[signals.product_added]
weight = 4.0
half_life = "7d"
[signals.order_completed]
weight = 10.0
half_life = "30d"
value = "revenue"
[tiers]
method = "quantile"
high = 0.8
medium = 0.5
"""
)
# Absolute cut-offs on the 0-100 score (half_point 10): enter Medium at raw 30/7 = 4.29, High at
# raw 15; stay in Medium down to raw 10/9 = 1.11, in High down to raw 20/3 = 6.67.
ABSOLUTE = ScoringConfig.from_toml(
    """
version = "test-abs"
[signals.product_viewed]
weight = 1.0
half_life = "1d"
[tiers]
method = "absolute"
high = 50
medium = 20
hysteresis = 10
"""
)
BANDED = ScoringConfig.from_toml(
    """
version = "test-band"
[signals.product_viewed]
weight = 1.0
half_life = "2d"
[signals.product_added]
weight = 4.0
half_life = "7d"
[signals.order_completed]
weight = 10.0
half_life = "30d"
value = "revenue"
[tiers]
method = "quantile"
high = 0.8
medium = 0.5
hysteresis = 0.1
"""
)
# The same absolute tiers over a mix of signals, for the random streams.
ABSOLUTE_MIX = ScoringConfig.from_toml(
    """
version = "test-abs-mix"
[signals.product_viewed]
weight = 1.0
half_life = "1d"
[signals.product_added]
weight = 4.0
half_life = "3d"
[signals.order_completed]
weight = 0.1
half_life = "10d"
value = "revenue"
[tiers]
method = "absolute"
high = 50
medium = 20
hysteresis = 10
"""
)
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PRODUCT = Product(product_id="p", category="c", brand="b", price=1.0)


def _views(user: str, n: int, ts: int = T0) -> list[Event]:
    return [ProductViewed(user_id=user, timestamp=ts, product=PRODUCT) for _ in range(n)]


def _recorder(scorer: Scorer) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    scorer.on_tier_change(lambda c: seen.append((c.user_id, c.old, c.new)))
    return seen


def _ten_users(scorer: Scorer) -> None:
    """u_i has i + 1 views at T0 (raw scores 1..10), then a score() sets the cut-offs: with the
    quantile plan u5..u7 are Medium, u8 and u9 High."""
    for i in range(10):
        scorer.ingest(_views(f"u{i}", i + 1))
    scorer.score(T0)


def test_crossing_into_high_fires_once_at_ingest_and_not_again_at_score() -> None:
    scorer = Scorer(CONFIG, backend="reference")
    _ten_users(scorer)
    changes: list[TierChange] = []
    scorer.on_tier_change(changes.append)
    scorer.ingest(_views("u0", 10))  # u0: 1 -> 11, past the High cut-off
    assert [(c.user_id, c.old, c.new) for c in changes] == [("u0", "low", "high")]
    assert changes[0].score == pytest.approx(scorer.score_of("u0"))
    assert scorer.tier_of("u0") == "high"
    scorer.ingest(_views("u0", 1))  # still High: nothing
    assert len(changes) == 1
    changes.clear()
    scorer.score(T0)  # new cut-offs move others, but u0's change is not repeated
    assert sorted((c.user_id, c.old, c.new) for c in changes) == [
        ("u5", "medium", "low"),
        ("u8", "high", "medium"),
    ]
    changes.clear()
    scorer.score(T0)
    assert changes == []


def test_one_change_per_user_and_call_in_code_order() -> None:
    scorer = Scorer(CONFIG, backend="reference")
    _ten_users(scorer)
    seen = _recorder(scorer)
    # One change per user (u1's events are split around u2's), from the tier before the call to
    # the one after it, in profile code order (the order score() reports): u1, u2, u3, then new.
    batch = _views("new", 30) + _views("u3", 3) + _views("u1", 4) + _views("u2", 20) + _views("u1", 20)
    report = scorer.ingest(batch)
    names = scorer.interners.users.names
    assert [names[c] for c in report.user_codes.tolist()] == ["u1", "u2", "u3", "new"]
    assert seen == [
        ("u1", "low", "high"),
        ("u2", "low", "high"),
        ("u3", "low", "medium"),
        ("new", "low", "high"),
    ]


def test_hysteresis_against_the_last_tier() -> None:
    scorer = Scorer(ABSOLUTE, backend="reference")
    seen = _recorder(scorer)
    scorer.ingest(_views("u", 20))  # raw 20 >= 15: High
    # raw 2: Low (a user's first tier is cut at the plain thresholds, raw 2.5 / 10: no band)
    scorer.ingest(_views("v", 2))
    assert seen == [("u", "low", "high")]
    scorer.ingest(_views("u", 3, T0 + DAY_MS))  # raw 20/2 + 3 = 13: below 15 but above 6.67
    scorer.ingest(_views("v", 12, T0 + DAY_MS))  # the same raw 2/2 + 12 = 13 from Low: only Medium
    assert seen == [("u", "low", "high"), ("v", "low", "medium")]
    assert (scorer.tier_of("u"), scorer.tier_of("v")) == ("high", "medium")
    scorer.ingest(_views("u", 1, T0 + 5 * DAY_MS))  # raw 13/16 + 1 = 1.81: leaves High, stays Medium
    assert seen[2:] == [("u", "high", "medium")]
    seen.clear()
    result = scorer.score()  # v decayed to 0.81 without new events: score() catches that
    assert seen == [("v", "medium", "low")]
    assert dict(zip(result.user_ids, result.tier.tolist(), strict=True)) == {"u": "medium", "v": "low"}


def test_opted_out_and_forgotten_users_never_fire() -> None:
    scorer = Scorer(CONFIG, backend="reference")
    _ten_users(scorer)
    seen = _recorder(scorer)
    scorer.opt_out("u1")
    scorer.ingest(_views("u1", 50))
    # a revocation in the same call as the events that would lift u2
    scorer.ingest([*_views("u2", 50), ConsentChanged(user_id="u2", timestamp=T0, granted=False)])
    assert seen == []
    assert scorer.tier_of("u1") is None and scorer.tier_of("u2") is None
    scorer.forget("u3", at=T0 + DAY_MS)
    scorer.ingest(_views("u3", 50))  # stamped before the forget: dropped
    scorer.ingest(_views("u3", 50, T0 + 2 * DAY_MS))  # a reborn profile stays opted out
    assert seen == []
    scorer.score()
    assert all(user not in ("u1", "u2", "u3") for user, _, _ in seen)
    scorer.opt_in("u1")  # consenting again: their next change fires
    seen.clear()
    scorer.ingest(_views("u1", 1, T0 + 3 * DAY_MS))
    assert seen == [("u1", "low", "high")]


def test_no_callbacks_no_trigger_work(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_raw_scores = kernels.raw_scores
    real_assign = kernels.assign_tiers

    def raw_spy(*args: object, **kwargs: object) -> object:
        calls.append("raw_scores")
        return real_raw_scores(*args, **kwargs)  # type: ignore[arg-type]

    def assign_spy(*args: object, **kwargs: object) -> object:
        calls.append("assign_tiers")
        return real_assign(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(kernels, "raw_scores", raw_spy)
    monkeypatch.setattr(kernels, "assign_tiers", assign_spy)
    plain = Scorer(CONFIG, backend="reference")
    _ten_users(plain)
    calls.clear()
    for i in range(20):
        plain.ingest(_views(f"u{i % 12}", i + 1, T0 + i))
    assert calls == []  # no callback: nothing is scored or tiered at ingest
    watched = Scorer(CONFIG, backend=plain.backend)
    _ten_users(watched)
    watched.on_tier_change(lambda c: None)
    calls.clear()
    for i in range(20):
        watched.ingest(_views(f"u{i % 12}", i + 1, T0 + i))
    assert calls  # ... and with one, it is
    # The folded state is the same either way.
    a, b = plain.score(), watched.score()
    assert a.user_ids == b.user_ids
    np.testing.assert_array_equal(a.raw_score, b.raw_score)


def test_callbacks_run_outside_the_lock() -> None:
    scorer = Scorer(CONFIG, backend="reference")
    _ten_users(scorer)
    answers: list[str | None] = []

    def lookup_from_another_thread(change: TierChange) -> None:
        worker = threading.Thread(target=lambda: answers.append(scorer.tier_of(change.user_id)))
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive(), "the store lock was still held during the callback"

    scorer.on_tier_change(lookup_from_another_thread)
    scorer.ingest(_views("u0", 10))
    assert answers == ["high"]


def test_ingest_time_tiers_survive_save_and_load(tmp_path: Path) -> None:
    scorer = Scorer(CONFIG, backend="reference")
    _ten_users(scorer)
    seen = _recorder(scorer)
    scorer.ingest(_views("u0", 10))
    assert seen == [("u0", "low", "high")]
    restored = Scorer.load(scorer.save(tmp_path / "state.afs"), backend="reference")
    again = _recorder(restored)
    restored.score(T0)
    assert all(user != "u0" for user, _, _ in again)


def test_report_user_codes() -> None:
    scorer = Scorer(CONFIG, backend="reference")
    assert scorer.ingest([]).user_codes.tolist() == []
    first = [
        ProductViewed(user_id="b", timestamp=T0, product=PRODUCT, event_id="e1"),
        AppOpened(user_id="a", timestamp=T0, event_id="e2"),
        ProductViewed(user_id="b", timestamp=T0, product=PRODUCT, event_id="e3"),
    ]
    report = scorer.ingest(first)
    names = scorer.interners.users.names
    assert report.user_codes.dtype == np.int64
    assert [names[c] for c in report.user_codes.tolist()] == ["b", "a"]  # codes in interning order
    # replays are not folded, so their users are not touched
    again = scorer.ingest([first[1], AppOpened(user_id="c", timestamp=T0, event_id="e4")])
    names = scorer.interners.users.names
    assert [names[c] for c in again.user_codes.tolist()] == ["c"]
    assert scorer.ingest(first).user_codes.tolist() == []


# --- ingest-time tiers agree with score() at the same cut-offs, on random streams ------------
_USERS = ["a", "b", "c", "d", "e", "f"]


@st.composite
def _event(draw: st.DrawFn) -> Event:
    user = draw(st.sampled_from(_USERS))
    ts = T0 + draw(st.integers(min_value=0, max_value=240)) * 3_600_000
    kind = draw(st.sampled_from(["view", "view", "add", "order", "open", "consent"]))
    if kind == "view":
        return ProductViewed(user_id=user, timestamp=ts, product=PRODUCT)
    if kind == "add":
        return ProductAdded(user_id=user, timestamp=ts, product=PRODUCT)
    if kind == "order":
        revenue = float(draw(st.integers(min_value=0, max_value=200)))
        return OrderCompleted(user_id=user, timestamp=ts, order_id="o", products=[], revenue=revenue)
    if kind == "open":
        return AppOpened(user_id=user, timestamp=ts)
    return ConsentChanged(user_id=user, timestamp=ts, granted=draw(st.booleans()))


_CHUNKS = st.lists(st.lists(_event(), min_size=1, max_size=8), min_size=1, max_size=8)


@pytest.mark.parametrize("plan", ["quantile-banded", "absolute"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=_CHUNKS)
def test_ingest_tiers_equal_score_tiers_at_the_same_cutoffs(
    backend: str, plan: str, chunks: list[list[Event]]
) -> None:
    # Absolute cut-offs never move; quantile ones are refreshed after every ingest call, so the
    # ingest-time triggers and the score() that follows see the same cut-offs.
    if plan == "absolute":
        scorer = Scorer(ABSOLUTE_MIX, backend=backend)
    else:
        scorer = Scorer(BANDED, backend=backend, refresh_cutoffs_every=1)
    last: dict[str, str] = {}  # every user's tier as the changes tell it (Low before any)
    log: list[TierChange] = []

    def follow(change: TierChange) -> None:
        assert change.old == last.get(change.user_id, "low") and change.new != change.old
        last[change.user_id] = change.new
        log.append(change)

    scorer.on_tier_change(follow)
    for chunk in chunks:
        mark = len(log)
        report = scorer.ingest(chunk)
        names = scorer.interners.users.names
        touched = {names[c] for c in report.user_codes.tolist() if scorer.store.is_visible(c)}
        fired = [c.user_id for c in log[mark:]]
        assert len(fired) == len(set(fired)) and set(fired) <= touched
        at_ingest = {user: last.get(user, "low") for user in touched}
        mark = len(log)
        result = scorer.score()
        assert not {c.user_id for c in log[mark:]} & touched  # score() repeats nothing
        tiers = dict(zip(result.user_ids, result.tier.tolist(), strict=True))
        assert {user: tiers[user] for user in touched} == at_ingest
        assert all(last.get(user, "low") == tier for user, tier in tiers.items())


# --- refresh_cutoffs_every ------------------------------------------------------------------
def _fresh(refresh: int | None = None) -> Scorer:
    scorer = Scorer(CONFIG, backend="reference", refresh_cutoffs_every=refresh)
    _ten_users(scorer)
    return scorer


def _all_tiers(scorer: Scorer, users: list[str]) -> list[str | None]:
    return [scorer.tier_of(user) for user in users]


def _score_tiers(scorer: Scorer, users: list[str]) -> list[str | None]:
    result = scorer.score()
    tiers = dict(zip(result.user_ids, result.tier.tolist(), strict=True))
    return [tiers.get(user) for user in users]


USERS = [f"u{i}" for i in range(10)] + [f"n{i}" for i in range(8)]


def test_refresh_cutoffs_every_n_events() -> None:
    newcomers = [_views(f"n{i}", 20) for i in range(6)]  # 20 events each, raw 20
    knob, plain, oracle = _fresh(50), _fresh(), _fresh()
    for scorer in (knob, plain, oracle):
        for batch in newcomers[:2]:
            scorer.ingest(batch)
    # 40 events since the score(): the knob's cut-offs are still those of the score()
    assert _all_tiers(knob, USERS) == _all_tiers(plain, USERS)
    for scorer in (knob, plain, oracle):
        scorer.ingest(newcomers[2])
    # 60 >= 50: refreshed over the population now, as a score() would (no hysteresis here)
    assert _all_tiers(knob, USERS) == _score_tiers(oracle, USERS)
    assert knob.tier_of("u9") != "high" and plain.tier_of("u9") == "high"


def test_refresh_cutoffs_feeds_the_triggers() -> None:
    # The refresh comes before the call's triggers: u9 falls out of High at the ingest that moves
    # the cut-offs only if u9 is touched by it.
    knob = _fresh(1)
    seen = _recorder(knob)
    knob.ingest([*(e for i in range(4) for e in _views(f"n{i}", 30)), *_views("u9", 1)])
    assert ("u9", "high", "medium") in seen or ("u9", "high", "low") in seen
    assert knob.tier_of("u8") != "high"  # untouched, but tier_of sees the refreshed cut-offs


def test_refresh_cutoffs_every_counts_across_calls_and_resets_on_score() -> None:
    knob, plain, oracle = _fresh(100), _fresh(), _fresh()
    calls = [
        [*_views("n0", 40), *_views("n1", 40)],  # 80 events since the score()
        _views("n2", 15),  # 95
        _views("n3", 5),  # 100: refreshed
    ]
    for scorer in (knob, plain, oracle):
        for batch in calls[:2]:
            scorer.ingest(batch)
    assert _all_tiers(knob, USERS) == _all_tiers(plain, USERS)
    for scorer in (knob, plain, oracle):
        scorer.ingest(calls[2])
    assert _all_tiers(knob, USERS) == _score_tiers(oracle, USERS) != _all_tiers(plain, USERS)
    # score() resets the count: 99 more events keep its cut-offs, the 100th refreshes them
    knob.score()
    plain.score()
    for scorer in (knob, plain, oracle):
        for user in ("n4", "n5", "n6"):
            scorer.ingest(_views(user, 33))  # 99
    assert _all_tiers(knob, USERS) == _all_tiers(plain, USERS)
    for scorer in (knob, plain, oracle):
        scorer.ingest(_views("n7", 1))  # 100
    assert _all_tiers(knob, USERS) == _score_tiers(oracle, USERS) != _all_tiers(plain, USERS)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "10"])
def test_refresh_cutoffs_every_must_be_a_positive_integer(bad: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refresh_cutoffs_every"):
        Scorer(CONFIG, refresh_cutoffs_every=bad)  # type: ignore[arg-type]
    path = Scorer(CONFIG).save(tmp_path / "s.afs")
    with pytest.raises(ValueError, match="refresh_cutoffs_every"):
        Scorer.load(path, refresh_cutoffs_every=bad)  # type: ignore[arg-type]
    assert Scorer.load(path, refresh_cutoffs_every=3)._refresh_every == 3


@given(users=st.lists(st.integers(min_value=0, max_value=2_000), min_size=1, max_size=300))
def test_distinct_users_of_small_and_large_batches(users: list[int]) -> None:
    from affinity_sdk.ingest.pipeline import _distinct_users

    codes = np.array(users, dtype=np.int64)
    expected = sorted(set(users))
    for n_users in (max(users) + 1, 1_000_000):  # the mask and the sort
        distinct = _distinct_users(codes, n_users)
        assert distinct.dtype == np.int64 and distinct.tolist() == expected
