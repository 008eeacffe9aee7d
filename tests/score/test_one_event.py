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


def test_the_compiled_report_is_the_python_one() -> None:
    make = one_event._compiled()[1]
    if make is None:
        pytest.skip("needs the C++ extension")
    for scored in (False, True):
        got, want = make(IngestReport, one_event._ACCEPTED_FIELDS[scored], 7), one_event._accepted(7, scored)
        assert type(got) is IngestReport and got == want and vars(got).keys() == vars(want).keys()
        assert got.user_codes.dtype == np.int64 and got.user_codes.tolist() == [7] and got.scored == scored
        assert (
            got.rejected == []
            and got.rejected is not make(IngestReport, one_event._ACCEPTED_FIELDS[1], 7).rejected
        )
    assert one_event._ACCEPTED_FIELDS[1]["rejected"] == []  # the template is not changed


def test_without_the_extension_the_event_id_hash_is_pythons(monkeypatch: pytest.MonkeyPatch) -> None:
    from affinity_sdk.ingest.interner import event_id_hash

    ids = ["e1", "Jos\u00e9", "x" * 300]
    compiled = [one_event._hash(i) for i in ids]
    monkeypatch.setattr(one_event, "native", lambda: None)
    assert [one_event._hash(i) for i in ids] == compiled == [event_id_hash(i) for i in ids]
    scorer = Scorer(CONFIG, backend="numba" if "numba" in BACKENDS else "reference")
    event = AppOpened(user_id="ann", timestamp=T0, event_id="e1")
    assert [scorer.ingest(event).accepted for _ in range(2)] == [1, 0]


def _plain(fields: tuple[Any, ...] | None) -> Any:
    """A reader's answer with NaN spelled out (NaN != NaN would fail any comparison)."""
    if fields is None:
        return None
    return tuple("nan" if isinstance(x, float) and x != x else x for x in fields)


odd_values = st.sampled_from([None, 0, 1, -1, 2**31, 2**70, 0.0, 3.5, -0.0, -2.0, float("nan"), 1e13, 1e30])


@st.composite
def odd_events(draw: st.DrawFn) -> Any:
    """Structs as anything may build them (a Struct validates nothing on construction): every field
    of its usual type or not, in range or not."""
    product = Product(
        product_id=draw(st.sampled_from(["p1", "", 7])),
        category=draw(st.sampled_from(["shoes", None])),
        brand=draw(st.sampled_from(["acme", b"acme"])),
        price=draw(st.one_of(odd_values, st.floats(0.0, 1e12))),
        quantity=draw(st.one_of(odd_values, st.integers(1, 5))),
        discount=draw(odd_values),
    )
    common = {
        "user_id": draw(st.sampled_from(["ann", "", "Jose\u0301", 5, None])),
        "timestamp": draw(st.sampled_from([T0, -(2**62), 2**62, float(T0), True])),
        "event_id": draw(st.sampled_from([None, "e1", "", "\ud800", 3])),
        "channel": draw(st.sampled_from([None, "", "web", "email", "pigeon", 4])),
    }
    kind = draw(st.sampled_from([AppOpened, PageViewed, EmailOpened, ProductViewed, OrderCompleted]))
    if kind is ProductViewed:
        return ProductViewed(**common, product=draw(st.sampled_from([product, None, "p"])))
    if kind is OrderCompleted:
        return OrderCompleted(**common, order_id="o", products=[product], revenue=10.0)
    return kind(**common)


def _known_names() -> Any:
    """Interners knowing some of the names the strategies draw (and not others)."""
    scorer = Scorer(CONFIG)
    scorer.ingest(ProductViewed(user_id="ann", timestamp=T0, product=_product(1.0)))
    scorer.ingest(AppOpened(user_id="Jos\u00e9", timestamp=T0))
    scorer.interners.brands.intern("other")
    return scorer.interners


@pytest.mark.skipif(one_event._compiled()[0] is None, reason="needs the C++ extension")
@settings(max_examples=400, deadline=None)
@given(event=st.one_of(events(), odd_events()))
def test_the_compiled_reader_reads_as_the_python_reader(event: Any) -> None:
    """Where the compiled reader answers, it answers what _event and _hash give, with the codes the
    interners hold for the user and the items as spelled (None where one is missing); where it
    passes (None), the Python reader decides."""
    if isinstance(event, bytes):
        event = one_event._decode_line(event)
    names = _known_names()
    one_event._shape_of(type(event))  # the class's shape is known before the compiled reader looks
    got = one_event._compiled()[0](event, names)
    try:
        found = one_event._event(event)
        want = None if found is None else (*found, one_event._hash(found[9]))
    except Exception:  # ingest_one leaves such an event to the batch path
        want = None
    if got is None:
        return
    assert want is not None
    assert _plain(got[:12]) == _plain(want)
    assert [type(x) for x in got[:12]] == [type(x) for x in want]
    user_code, items = got[12:]
    known = {n: names.users.lookup(n) for n in names.users.names}
    assert user_code == known.get(want[1])
    tables = (names.products, names.categories, names.brands)
    ids = [(p.product_id, p.category, p.brand) for p in want[10]]
    if all(n in t.names for row in ids for t, n in zip(tables, row, strict=True)):
        assert items == one_event._intern_items(names, want[7], want[10])
    else:
        assert items is None


def test_the_compiled_reader_takes_the_common_events() -> None:
    compiled = one_event._compiled()[0]
    if compiled is None:
        pytest.skip("needs the C++ extension")
    names = _known_names()
    common = [
        AppOpened(user_id="ann", timestamp=T0, event_id="e1", channel="web"),
        ProductViewed(user_id="ann", timestamp=T0, product=_product(3.0)),
        ProductViewed(user_id="new", timestamp=T0, product=_product(3.0)),
    ]
    for event in common:
        one_event._shape_of(type(event))
    assert [compiled(e, names)[12:] for e in common] == [
        (0, (-1, [])),
        (0, (-1, [(0, 0, 0)])),
        (None, (-1, [(0, 0, 0)])),
    ]


@pytest.mark.skipif("cpp" not in BACKENDS, reason="needs the C++ extension")
def test_compiled_coefficients_are_numpys() -> None:
    """raw_of's compiled coefficients (numpy's own exp loop) give score()'s raw scores bit for bit
    at every time, including after the landmark moved."""
    from affinity_sdk.profile.signals import compiled_exp_matches

    assert compiled_exp_matches()
    scorer = Scorer(CONFIG, backend="cpp")
    assert scorer.signals._raw_at is not None
    rng = np.random.default_rng(11)
    latest = T0
    for step in range(40):
        for _ in range(5):
            latest += int(rng.integers(0, 30 * HOUR))
            scorer.ingest(
                OrderCompleted(
                    user_id=f"u{rng.integers(8)}",
                    timestamp=latest,
                    order_id="o",
                    products=[],
                    revenue=float(rng.uniform(1, 100)),
                )
            )
        now = latest + int(rng.integers(0, 400 * HOUR)) * (step % 2)
        result = scorer.score(now)
        assert [scorer.score_of(u, now) for u in result.user_ids] == result.score.tolist()
        raw = [scorer.signals.raw_of(scorer.store.code_of(u), now) for u in result.user_ids]  # type: ignore[arg-type]
        assert np.array(raw).tobytes() == result.raw_score.tobytes()


@pytest.mark.skipif("cpp" not in BACKENDS, reason="needs the C++ extension")
@settings(max_examples=200, deadline=None)
@given(
    previous=st.sampled_from([-1, 0, 1, 2]),
    offsets=st.lists(st.sampled_from([-1.0, -1e-12, 0.0, 1e-12, 1.0]), min_size=6, max_size=6),
    banded=st.booleans(),
)
def test_the_compiled_tier_is_the_scalar_rule(previous: int, offsets: list[float], banded: bool) -> None:
    """SignalView.tier_at gives ScalarCutoffs.tier of raw_of, cut-offs just below, at and above
    the raw score, for every previous tier (none, past the end of the tiers, too)."""
    from affinity_sdk.score.tiers import ScalarCutoffs

    scorer = Scorer(CONFIG, backend="cpp")
    scorer.ingest(ProductViewed(user_id="ann", timestamp=T0, product=_product(3.0)))
    view, now = scorer.signals, T0 + HOUR
    raw = view.raw_of(0, now)
    up = [raw * (1 + o) for o in offsets[:4]] if banded else [raw * (1 + o) for o in offsets[:2]]
    cuts = ScalarCutoffs.of(np.array(up), np.array([raw * (1 + o) for o in offsets[4:]]))
    array = np.array([*cuts.enter, *cuts.first, *cuts.down])
    tiers = np.array([previous], dtype=np.int8)
    assert view.tier_at(0, now, tiers, array) == cuts.tier(raw, previous)
    assert view.tier_at(0, now, tiers[:0], array) == cuts.tier(raw)
