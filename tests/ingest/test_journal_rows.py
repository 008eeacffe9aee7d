"""The event journal's per-row path (``EventJournal.append_row``, what the one-event ingest path
calls): a journal fed rows keeps exactly what one fed the same events as one-row batches keeps,
through rotations, identity moves, forgets, merges and reads in between; and a scorer taking single
events with ids (some replayed) leaves the batch path's state, saved file and merge result."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affinity_sdk import Scorer
from affinity_sdk.capture.events import AppOpened, OrderCompleted, Product, ProductViewed
from affinity_sdk.config import ScoringConfig
from affinity_sdk.ingest import journal as journal_module
from affinity_sdk.ingest import one_event
from affinity_sdk.ingest.batch import EVENT_COLUMNS, ITEM_COLUMNS, EventBatch, Interners
from affinity_sdk.ingest.journal import EventJournal

CONFIG = ScoringConfig.from_toml(
    """
version = "journal-rows"
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
"""
)
T0 = 1_767_225_600_000  # 2026-01-01
HOUR = 3_600_000
USERS = ["ann", "bob", "cy", "dee", "eve"]
IDS = [f"e{i}" for i in range(10)]  # few ids: replays are common


def _product(draw: st.DrawFn) -> Product:
    return Product(
        product_id=draw(st.sampled_from(["p1", "p2", "p3"])),
        category=draw(st.sampled_from(["shoes", "hats"])),
        brand=draw(st.sampled_from(["acme", "zed"])),
        price=draw(st.sampled_from([0.0, 2.5, 59.0])),  # binary-exact: sums do not depend on order
        discount=draw(st.sampled_from([None, 0.5, 1.0])),
        quantity=draw(st.integers(1, 3)),
    )


@st.composite
def events(draw: st.DrawFn, *, with_id: bool | None = None) -> Any:
    """An app open, a product view or an order (0-2 product lines), with an id from a small pool
    (``with_id``: always, never, or either when ``None``)."""
    has_id = draw(st.booleans()) if with_id is None else with_id
    common = {
        "user_id": draw(st.sampled_from(USERS)),
        "timestamp": T0 + draw(st.integers(-48 * HOUR, 48 * HOUR)),
        "event_id": draw(st.sampled_from(IDS)) if has_id else None,
    }
    kind = draw(st.sampled_from(["app", "view", "order"]))
    if kind == "app":
        return AppOpened(**common)
    if kind == "view":
        return ProductViewed(**common, product=_product(draw))
    products = [_product(draw) for _ in range(draw(st.integers(0, 2)))]
    revenue = draw(st.sampled_from([0.0, 12.5, 100.0]))
    return OrderCompleted(**common, order_id="o1", products=products, revenue=revenue)


# --- the journal alone -----------------------------------------------------------------------


def _row_of(one: EventBatch) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """A one-row batch's values as Python scalars, as the one-event path hands them over."""
    row = tuple(getattr(one, name)[0].item() for name in EVENT_COLUMNS)
    values = [name for name in ITEM_COLUMNS if name != "item_event"]
    items = [tuple(getattr(one, name)[k].item() for name in values) for k in range(one.n_items)]
    return row, items


ops = st.one_of(
    st.tuples(st.just("one"), events(with_id=True)),
    st.tuples(st.just("one"), events(with_id=True)),
    st.tuples(st.just("one"), events(with_id=True)),
    st.tuples(st.just("many"), st.lists(events(), min_size=1, max_size=4)),
    st.tuples(st.just("extend"), st.lists(events(with_id=True), max_size=3)),
    st.tuples(st.just("rotate"), st.integers(1, 2)),
    st.tuples(st.just("move"), st.integers(0, len(USERS) - 1), st.integers(0, len(USERS) - 1)),
    st.tuples(st.just("erase"), st.integers(0, len(USERS) - 1)),
    st.tuples(st.just("read")),
)


def _same_journal(rows: EventJournal, batches: EventJournal) -> None:
    assert len(rows) == len(batches)
    got, want = rows.to_arrays(), batches.to_arrays()
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].tobytes() == want[name].tobytes(), name  # bitwise: NaN == NaN


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.lists(ops, min_size=1, max_size=40), chunk=st.sampled_from([1, 2, 3, 1024]))
def test_rows_are_kept_as_one_row_batches_would_be(stream: list[tuple[Any, ...]], chunk: int) -> None:
    names = Interners()
    names.users.intern_many(USERS)
    rows, batches = EventJournal(), EventJournal()
    rotations = 0
    saved = journal_module.ROWS_PER_CHUNK
    journal_module.ROWS_PER_CHUNK = chunk  # type: ignore[misc]  # rows turn into columns mid-stream
    try:
        for op in stream:
            if op[0] == "one":
                one = EventBatch.from_events([op[1]], names)
                row, items = _row_of(one)
                rows.append_row(row, items, rotations=rotations, interners=names)
                batches.append(one, rotations=rotations)
            elif op[0] == "many":
                many = EventBatch.from_events(op[1], names)
                rows.append(many, rotations=rotations)
                batches.append(many, rotations=rotations)
            elif op[0] == "extend":
                other = EventBatch.from_events(op[1], names)
                rows.extend(other, rotations=rotations)
                batches.extend(other, rotations=rotations)
            elif op[0] == "rotate":
                rotations += op[1]
            elif op[0] == "move":
                rows.move_user(op[1], op[2])
                batches.move_user(op[1], op[2])
            elif op[0] == "erase":
                rows.erase_users(np.array([op[1]], dtype=np.int64))
                batches.erase_users(np.array([op[1]], dtype=np.int64))
            else:
                _same_journal(rows, batches)
        empty = EventBatch.empty(names)
        rows.append(empty, rotations=rotations)  # what saving does: follow the window first
        batches.append(empty, rotations=rotations)
        _same_journal(rows, batches)
        whole = rows.batch()
        assert (whole is None) == (batches.batch() is None)
    finally:
        journal_module.ROWS_PER_CHUNK = saved  # type: ignore[misc]


def test_rows_read_back_after_a_load() -> None:
    """Rows held as tuples are saved, and a loaded journal takes more rows after them."""
    names = Interners()
    stream = [
        ProductViewed(
            user_id=u,
            timestamp=T0,
            product=Product(product_id="p", category="c", brand="b", price=1.0),
            event_id=f"x{i}",
        )
        for i, u in enumerate(USERS)
    ]
    journal, loaded = EventJournal(), EventJournal()
    for event in stream[:3]:
        row, items = _row_of(EventBatch.from_events([event], names))
        journal.append_row(row, items, rotations=0, interners=names)
    loaded.load_arrays(journal.to_arrays(), names, rotations=0)
    for event in stream[3:]:
        row, items = _row_of(EventBatch.from_events([event], names))
        journal.append_row(row, items, rotations=0, interners=names)
        loaded.append_row(row, items, rotations=0, interners=names)
    _same_journal(loaded, journal)
    assert len(journal) == len(USERS)
    assert journal.batch().item_event.tolist() == list(range(len(USERS)))  # type: ignore[union-attr]


# --- a scorer taking single events ----------------------------------------------------------


def _state(scorer: Scorer) -> tuple[Any, dict[str, bytes]]:
    header, arrays = scorer.store.to_container()
    return header, {name: array.tobytes() for name, array in sorted(arrays.items())}


def _same_loaded(loaded: Scorer, saved: Scorer) -> None:
    """The state saved, loaded back: the same bytes, but the id window's held ids as a set (a
    loaded window re-inserts them, so they may sit in other slots)."""
    (got_header, got), (want_header, want) = _state(loaded), _state(saved)
    assert got_header == want_header
    for name in ("dedupe.previous", "dedupe.current"):
        got_ids, want_ids = (np.sort(np.frombuffer(x.pop(name), dtype=np.uint64)) for x in (got, want))
        assert np.array_equal(got_ids, want_ids), name
    assert got == want


def _ingest_each(scorer: Scorer, stream: list[Any], *, one_event_path: bool) -> None:
    one_event.ONE_EVENT_PATH = one_event_path
    try:
        for event in stream:
            scorer.ingest(event)
    finally:
        one_event.ONE_EVENT_PATH = True


def _as_sent(event: Any, as_bytes: bool) -> Any:
    return msgspec.json.encode(event) if as_bytes else event


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=st.lists(st.tuples(events(with_id=True), st.booleans()), min_size=1, max_size=40),
    overlap=st.lists(events(), max_size=8),
    window=st.sampled_from([2, 4, 1 << 19]),
)
def test_single_events_with_ids_leave_the_batch_paths_state(
    stream: list[tuple[Any, bool]], overlap: list[Any], window: int
) -> None:
    """Replays, window rotations (small windows), Structs and NDJSON lines: the one-event path
    and the batch path (one event a call) leave the same state, bit for bit; so do a save and
    load of it and a later merge of it into a store that folded some of the same events."""
    sent = [_as_sent(event, as_bytes) for event, as_bytes in stream]
    fast, slow = Scorer(CONFIG, dedupe_window=window), Scorer(CONFIG, dedupe_window=window)
    _ingest_each(fast, sent, one_event_path=True)
    _ingest_each(slow, sent, one_event_path=False)
    assert _state(fast) == _state(slow)
    with tempfile.TemporaryDirectory() as folder:
        fast.save(Path(folder) / "fast.state")
        slow.save(Path(folder) / "slow.state")
        assert (Path(folder) / "fast.state").read_bytes() == (Path(folder) / "slow.state").read_bytes()
        _same_loaded(Scorer.load(Path(folder) / "fast.state", CONFIG), fast)
    shared = [event for event, _ in stream[::2]] + overlap  # events both stores folded
    into_fast, into_slow = Scorer(CONFIG, dedupe_window=window), Scorer(CONFIG, dedupe_window=window)
    into_fast.ingest(EventBatch.from_events(shared))
    into_slow.ingest(EventBatch.from_events(shared))
    into_fast.merge(fast)
    into_slow.merge(slow)
    assert _state(into_fast) == _state(into_slow)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=st.lists(events(with_id=True), min_size=1, max_size=40),
    overlap=st.lists(events(), max_size=8),
)
def test_single_events_with_ids_journal_as_one_batch(stream: list[Any], overlap: list[Any]) -> None:
    """Without a rotation, single events (replays among them) keep the journal and the id window
    one batch of them keeps, bit for bit, and merge into another store as it does."""
    one_by_one, batched = Scorer(CONFIG), Scorer(CONFIG)
    _ingest_each(one_by_one, stream, one_event_path=True)
    batched.ingest(EventBatch.from_events(stream))
    a, b = one_by_one.store.to_container()[1], batched.store.to_container()[1]
    # a replay's user gets a code in a batch, none alone: users compare by name
    for name in [k for k in b if k.startswith(("journal.", "dedupe.")) and k != "journal.user"]:
        assert a[name].tobytes() == b[name].tobytes(), name
    named = [
        [s.interners.users.names[c] for c in x["journal.user"].tolist()]
        for s, x in ((one_by_one, a), (batched, b))
    ]
    assert named[0] == named[1]
    merged: list[Scorer] = []
    for store in (one_by_one, batched):
        into = Scorer(CONFIG)
        into.ingest(EventBatch.from_events(stream[::2] + overlap))
        merged.append(into.merge(store))
    first, second = merged[0].store, merged[1].store
    assert first.events_ingested == second.events_ingested
    named = sorted({event.user_id for event in stream + overlap})
    users = [u for u in named if first.code_of(u) is not None]  # a replay alone makes no profile
    assert users == [u for u in named if second.code_of(u) is not None]
    records = [m.signals.state.records for m in merged]
    for field in ("count", "total", "first_ms", "last_ms"):
        rows = [r[field][[m.store.code_of(u) for u in users]] for r, m in zip(records, merged, strict=True)]
        assert np.array_equal(rows[0], rows[1]), field


def test_more_rows_than_a_chunk() -> None:
    """Enough single events that the held rows turn into columns several times between reads."""
    n = 3 * journal_module.ROWS_PER_CHUNK + 5
    product = Product(product_id="p", category="c", brand="b", price=2.0)
    stream = [
        ProductViewed(user_id=USERS[i % 5], timestamp=T0 + i, product=product, event_id=f"m{i % (n - 40)}")
        for i in range(n)
    ]
    fast, slow = Scorer(CONFIG), Scorer(CONFIG)
    _ingest_each(fast, stream, one_event_path=True)
    _ingest_each(slow, stream, one_event_path=False)
    assert len(fast.store.journal) == n - 40  # type: ignore[arg-type]  # the replays are not kept
    assert _state(fast) == _state(slow)


@pytest.mark.parametrize("forget", [False, True])
def test_identity_and_forget_reach_held_rows(forget: bool) -> None:
    """A link or a forget between single events re-codes or drops the rows not yet columns."""
    product = Product(product_id="p", category="c", brand="b", price=2.0)
    stream = [ProductViewed(user_id=u, timestamp=T0, product=product, event_id=f"i{u}") for u in USERS]
    stream.append(ProductViewed(user_id="bob", timestamp=T0 + 2 * HOUR, product=product, event_id="late"))
    fast, slow = Scorer(CONFIG), Scorer(CONFIG)
    for scorer, path in ((fast, True), (slow, False)):
        _ingest_each(scorer, stream[:3], one_event_path=path)
        if forget:
            scorer.forget("bob", at=T0 + HOUR)
        else:
            scorer.identify("bob", "ann")
        _ingest_each(scorer, stream[3:], one_event_path=path)
    assert _state(fast) == _state(slow)


@pytest.mark.parametrize(
    ("moves", "ends"),
    [
        ([(0, 1), (1, 2)], [2, 2, 2]),  # a chain: a -> b, then b -> c
        ([(1, 2), (0, 1)], [1, 2, 2]),  # b -> c first: a, moved later, stays at b
        ([(0, 1), (1, 0)], [0, 0, 2]),  # a cycle: a -> b, then b -> a (it used to loop for ever)
        ([(0, 1), (1, 2), (2, 0)], [0, 0, 0]),
    ],
)
def test_moves_apply_in_the_order_they_were_made(moves: list[tuple[int, int]], ends: list[int]) -> None:
    names = Interners()
    lines = b"\n".join(
        b'{"type":"app_opened","user_id":"%s","timestamp":0,"event_id":"x%d"}' % (u, i)
        for i, u in enumerate((b"a", b"b", b"c"))
    )
    journal = EventJournal()
    journal.append(EventBatch.from_ndjson(lines, names), rotations=0)
    for source, target in moves:
        journal.move_user(source, target)
    whole = journal.batch()
    assert whole is not None and whole.user.tolist() == ends
