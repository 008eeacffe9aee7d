"""One event at a time (affinity_sdk.ingest.one_event, Scorer.tier_of / score_of): the scalar path
leaves exactly the state the batch path leaves, bit for bit, on every backend, for every kind of
event the pipeline treats specially; and a stream of single events scores as one batch."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affinity_sdk import Scorer, available_backends
from affinity_sdk.capture.events import (
    AppOpened,
    ConsentChanged,
    EmailOpened,
    OrderCompleted,
    PageViewed,
    Product,
    ProductViewed,
)
from affinity_sdk.config import ScoringConfig
from affinity_sdk.errors import AffinityError
from affinity_sdk.ingest import one_event
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.pipeline import IngestReport
from affinity_sdk.score.scorer import TierChange

# A 1-hour half-life moves the decay landmark (REBASE_EXPONENT) after about 92 hours.
CONFIG = ScoringConfig.from_toml(
    """
version = "one-event"
[signals.app_opened]
weight = 1.0
half_life = "1h"
[signals.product_viewed]
weight = 2.0
half_life = "3d"
[signals.order_completed]
weight = 10.0
half_life = "30d"
value = "revenue"
[signals.email_opened]
weight = 0.5
half_life = "7d"
[tiers]
method = "quantile"
high = 0.7
medium = 0.4
hysteresis = 0.1
"""
)
T0 = 1_767_225_600_000  # 2026-01-01
HOUR = 3_600_000
BACKENDS = available_backends()
# Non-ASCII ids in two spellings: the interner keeps one normal form.
USERS = ["ann", "bob", "cy", "Jos\u00e9", "Jose\u0301", "dee"]


@contextmanager
def batch_path() -> Iterator[None]:
    """Run the block with the one-event path off (every call takes the batch pipeline)."""
    one_event.ONE_EVENT_PATH = False
    try:
        yield
    finally:
        one_event.ONE_EVENT_PATH = True


def _product(price: float) -> Product:
    return Product(product_id="p1", category="shoes", brand="acme", price=price)


@st.composite
def events(draw: st.DrawFn) -> Any:
    user = draw(st.sampled_from(USERS))
    far = draw(st.sampled_from([0, 0, 0, 0, 200 * HOUR, -200 * HOUR, 400 * 24 * HOUR]))
    ts = T0 + far + draw(st.integers(-48 * HOUR, 48 * HOUR))
    common = {
        "user_id": user,
        "timestamp": ts,
        "event_id": draw(st.sampled_from([None, None, "e1", "e2", "e3", "e4"])),
    }
    amount = draw(st.sampled_from([0.0, 5.0, 120.5, -3.0, float("nan"), float("inf")]))
    kind = draw(st.sampled_from(["app", "view", "order", "consent", "email", "page"]))
    if kind == "app":
        event: Any = AppOpened(**common)
    elif kind == "view":
        event = ProductViewed(**common, product=_product(abs(amount) if amount == amount else 1.0))
    elif kind == "order":
        event = OrderCompleted(**common, order_id="o1", products=[_product(10.0)], revenue=amount)
    elif kind == "consent":
        event = ConsentChanged(
            **common, granted=draw(st.booleans()), medium=draw(st.sampled_from([None, "email"]))
        )
    elif kind == "email":
        event = EmailOpened(**common, campaign_id=draw(st.sampled_from([None, "c1", "c2"])))
    else:
        event = PageViewed(**common)
    if draw(st.booleans()):
        return msgspec.json.encode(event) + b"\n"  # one NDJSON line
    return event


ops = st.one_of(
    st.tuples(st.just("event"), events()),
    st.tuples(st.just("event"), events()),
    st.tuples(st.just("event"), events()),
    st.tuples(st.just("forget"), st.sampled_from(USERS), st.integers(-HOUR, HOUR)),
    st.tuples(st.just("opt_out"), st.sampled_from(USERS), st.integers(-HOUR, HOUR)),
    st.tuples(st.just("score")),
)


def _apply(scorer: Scorer, op: tuple[Any, ...]) -> Any:
    """Run one operation; its outcome (a report's fields, or the error raised)."""
    try:
        if op[0] == "event":
            report = scorer.ingest(op[1])
            fields = {k: v for k, v in vars(report).items() if k != "user_codes"}
            return fields, report.user_codes.tolist(), report.user_codes.dtype
        if op[0] == "forget":
            return scorer.forget(op[1], at=T0 + op[2])
        if op[0] == "opt_out":
            return scorer.opt_out(op[1], at=T0 + op[2])
        result = scorer.score()
        return result.user_ids, result.raw_score.tobytes(), result.tier.tolist()
    except (AffinityError, TypeError) as exc:  # TypeError: a product_viewed line with price null
        return type(exc).__name__, _clockless(str(exc))


def _clockless(message: str) -> str:
    """The message without the wall-clock time a far-future rejection names (it moves)."""
    return re.sub(r"later than -?\d+ ms", "later than <clock> ms", message)


def _state(scorer: Scorer) -> tuple[Any, dict[str, bytes]]:
    header, arrays = scorer.store.to_container()
    return header, {name: array.tobytes() for name, array in sorted(arrays.items())}


def _lookups(scorer: Scorer) -> list[Any]:
    return [(scorer.tier_of(u), scorer.score_of(u)) for u in [*USERS, "nobody"]]


def _pair(backend: str, **options: Any) -> tuple[Scorer, Scorer, list[TierChange], list[TierChange]]:
    fast, slow = Scorer(CONFIG, backend=backend, **options), Scorer(CONFIG, backend=backend, **options)
    fast_changes: list[TierChange] = []
    slow_changes: list[TierChange] = []
    fast.on_tier_change(fast_changes.append)
    slow.on_tier_change(slow_changes.append)
    return fast, slow, fast_changes, slow_changes


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=st.lists(ops, min_size=1, max_size=40),
    window=st.sampled_from([2, 4, 1 << 19, None]),
    max_future=st.sampled_from(["366d", "1d", None]),
    refresh=st.sampled_from([None, 3]),
)
def test_one_event_path_leaves_the_batch_paths_state(
    backend: str,
    stream: list[tuple[Any, ...]],
    window: int | None,
    max_future: str | None,
    refresh: int | None,
) -> None:
    """Duplicates (small windows rotate), late and far-future events, rejected numbers, consent,
    opt-outs, forgotten users' suppressed events, new and non-ASCII users, landmark moves: the
    outcome of every call, the ingest-time tier changes, the lookups and the saved state agree."""
    options = {"dedupe_window": window, "max_future": max_future, "refresh_cutoffs_every": refresh}
    fast, slow, fast_changes, slow_changes = _pair(backend, **options)
    for op in stream:
        got = _apply(fast, op)
        with batch_path():
            want = _apply(slow, op)
        assert got == want, op
    assert fast_changes == slow_changes
    assert _lookups(fast) == _lookups(slow)
    assert _state(fast) == _state(slow)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rejected_event_raises_the_batch_message_and_changes_nothing(backend: str) -> None:
    scorer = Scorer(CONFIG, backend=backend)
    scorer.ingest(AppOpened(user_id="ann", timestamp=T0, event_id="e0"))
    before = _state(scorer)
    bad = [
        OrderCompleted(user_id="new", timestamp=T0, order_id="o", products=[], revenue=-1.0, event_id="x"),
        OrderCompleted(user_id="ann", timestamp=T0, order_id="o", products=[], revenue=float("nan")),
        ProductViewed(
            user_id="ann",
            timestamp=T0,
            product=Product(product_id="p", category="c", brand="b", price=float("inf")),
        ),
        AppOpened(user_id="ann", timestamp=int(time.time() * 1000) + 400 * 24 * HOUR),
        b'{"type":"app_opened","user_id":"ann"}',
        b'{"type":"app_opened","user_id":"ann","timestamp":1}\n{"type":"nope"}',
    ]
    for event in bad:
        with pytest.raises(AffinityError) as fast_error:
            scorer.ingest(event)
        with batch_path(), pytest.raises(AffinityError) as batch_error:
            scorer.ingest(event)
        assert _clockless(str(fast_error.value)) == _clockless(str(batch_error.value))
        assert _state(scorer) == before


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15, deadline=None)
@given(offsets=st.lists(st.integers(0, 2000 * HOUR), min_size=1, max_size=60), data=st.data())
def test_a_stream_of_single_events_scores_as_one_batch(backend: str, offsets: list[int], data: Any) -> None:
    """The same events one call each, or in one batch: the same counts, totals and first / last
    times exactly, and the same scores up to the landmark's rounding."""
    stream = [
        ProductViewed(user_id=data.draw(st.sampled_from(USERS)), timestamp=T0 + dt, product=_product(3.0))
        if i % 3
        else AppOpened(user_id=data.draw(st.sampled_from(USERS)), timestamp=T0 + dt)
        for i, dt in enumerate(offsets)
    ]
    one_by_one, batched = Scorer(CONFIG, backend=backend), Scorer(CONFIG, backend=backend)
    for event in stream:
        one_by_one.ingest(event)
    batched.ingest(EventBatch.from_events(stream))
    now = T0 + max(offsets)
    a, b = one_by_one.score(now), batched.score(now)
    assert sorted(a.user_ids) == sorted(b.user_ids)
    order_a, order_b = np.argsort(a.user_ids), np.argsort(b.user_ids)
    np.testing.assert_allclose(a.raw_score[order_a], b.raw_score[order_b], rtol=1e-9, atol=1e-300)
    for field in ("count", "total", "first_ms", "last_ms"):
        rows_a = one_by_one.signals.state.records[field][[one_by_one.store.code_of(u) for u in a.user_ids]]
        rows_b = batched.signals.state.records[field][[batched.store.code_of(u) for u in a.user_ids]]
        assert np.array_equal(rows_a, rows_b), field


@pytest.mark.parametrize("backend", BACKENDS)
def test_lookups_match_score(backend: str) -> None:
    """tier_of and score_of give the tier and score score() gives, user by user."""
    scorer = Scorer(CONFIG, backend=backend)
    rng = np.random.default_rng(5)
    for i in range(300):
        scorer.ingest(
            ProductViewed(user_id=f"u{rng.integers(60)}", timestamp=T0 + i * 60_000, product=_product(2.0))
        )
    result = scorer.score()
    for user, tier, score in zip(result.user_ids, result.tier.tolist(), result.score.tolist(), strict=True):
        assert scorer.tier_of(user) == tier
        assert scorer.score_of(user) == score


def test_views_other_than_signals_take_the_batch_path() -> None:
    scorer = Scorer(CONFIG, views=("signals", "affinity"))
    event = ProductViewed(user_id="ann", timestamp=T0, product=_product(2.0))
    assert not one_event.takes_one(scorer.store, event, "ndjson")
    assert scorer.ingest(event).accepted == 1
    assert scorer.affinity is not None and scorer.n_users == 1


def test_the_fast_report_is_an_ingest_report() -> None:
    got = one_event._report(1, 1, np.array([4]), n_duplicates=2)
    want = IngestReport(accepted=1, scored=1, n_duplicates=2, user_codes=np.array([4]))
    assert type(got) is IngestReport and got == want and got.user_codes.tolist() == [4]
    assert vars(got).keys() == vars(want).keys()
    assert got.rejected == [] and got.rejected is not one_event._report(0, 0, None).rejected


def test_without_the_extension_the_event_id_hash_is_pythons(monkeypatch: pytest.MonkeyPatch) -> None:
    from affinity_sdk.ingest.interner import event_id_hash

    ids = ["e1", "Jos\u00e9", "x" * 300]
    compiled = [one_event._hash(i) for i in ids]
    monkeypatch.setattr(one_event, "native", lambda: None)
    assert [one_event._hash(i) for i in ids] == compiled == [event_id_hash(i) for i in ids]
    scorer = Scorer(CONFIG, backend="numba" if "numba" in BACKENDS else "reference")
    event = AppOpened(user_id="ann", timestamp=T0, event_id="e1")
    assert [scorer.ingest(event).accepted for _ in range(2)] == [1, 0]
