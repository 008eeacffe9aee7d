"""The one-row identity fold (``fold_row`` of each view, the journal's lazy moves) leaves the
state the earlier whole-state path (each view's ``merge_rows`` into itself, then ``erase``)
leaves, for any sequence of links, ingests, forgets and merges."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affinity_sdk.capture.events import AppOpened, Event, OrderCompleted, Product, ProductAdded, ProductViewed
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.kernels import _affinity_reference
from affinity_sdk.profile.propensity_tables import KeyTable
from affinity_sdk.profile.sparse_table import VALUE_BITS, SparseTable
from affinity_sdk.profile.store import ProfileStore

T0 = 1_767_225_600_000
HOUR_MS = 3_600_000
USERS = [f"u{i}" for i in range(6)]
PRODUCTS = [
    Product(product_id="p1", category="shoes", brand="acme", price=80.0),
    Product(product_id="p2", category="hats", brand="zed", price=20.0),
    Product(product_id="p3", category="shoes", brand="zed", price=140.0),
]
ALL_VIEWS = ("signals", "affinity", "propensity", "products")


def _event(kind: int, user: str, hour: int, product: int, serial: int) -> Event:
    common: dict[str, Any] = {"user_id": user, "timestamp": T0 + hour * HOUR_MS, "event_id": f"e{serial}"}
    item = PRODUCTS[product]
    if kind == 0:
        return ProductViewed(product=item, **common)
    if kind == 1:
        return ProductAdded(product=item, **common)
    if kind == 2:
        return OrderCompleted(order_id=f"o{serial}", products=[item], revenue=item.price or 0.0, **common)
    return AppOpened(**common)


events_st = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(USERS), st.integers(0, 2_000), st.integers(0, 2)),
    min_size=1,
    max_size=25,
)
# an operation: ("ingest", events), ("link", (a, b)) or ("forget", a)
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("ingest"), events_st),
        st.tuples(st.just("link"), st.tuples(st.sampled_from(USERS), st.sampled_from(USERS))),
        st.tuples(st.just("forget"), st.sampled_from(USERS)),
    ),
    min_size=1,
    max_size=10,
)


def _run(ops: list[tuple[str, Any]], backend: str, *, whole: bool) -> ProfileStore:
    store = ProfileStore(views=ALL_VIEWS, backend=backend)
    if whole:  # the earlier path, per instance
        store._fold_profile = partial(store._fold_profile, whole=True)  # type: ignore[method-assign]
    serial = 0
    for op, arg in ops:
        if op == "ingest":
            events = []
            for kind, user, hour, product in arg:
                events.append(_event(kind, user, hour, product, serial))
                serial += 1
            store.ingest(events)
        elif op == "link":
            store.link(*arg)
        else:
            store.forget(arg, at=T0 - 1)
    return store


def _assert_same_state(got: ProfileStore, want: ProfileStore) -> None:
    assert got.interners.users.names == want.interners.users.names
    assert got.visible().tolist() == want.visible().tolist()
    for name in ALL_VIEWS:
        got_header, got_arrays = got.views[name].to_arrays()
        want_header, want_arrays = want.views[name].to_arrays()
        assert got_header == want_header, name
        assert sorted(got_arrays) == sorted(want_arrays), name
        for key, value in want_arrays.items():
            fields = value.dtype.names or (None,)
            for field in fields:
                a = got_arrays[key] if field is None else got_arrays[key][field]
                b = value if field is None else value[field]
                if np.issubdtype(b.dtype, np.floating):
                    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300, err_msg=f"{name}.{key}")
                else:
                    np.testing.assert_array_equal(a, b, err_msg=f"{name}.{key}.{field}")
    got_journal, want_journal = got.journal, want.journal
    assert got_journal is not None and want_journal is not None
    got_batch, want_batch = got_journal.batch(), want_journal.batch()
    assert (got_batch is None) == (want_batch is None)
    if got_batch is not None and want_batch is not None:
        assert got_batch.user.tolist() == want_batch.user.tolist()
        assert not got.flags.retired[got_batch.user].any()  # kept events moved with their profile
        assert got_batch.event_id.tolist() == want_batch.event_id.tolist()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_st, tail=events_st)
def test_links_via_fold_row_equal_the_whole_state_path(
    ops: list[tuple[str, Any]], tail: Any, backend: str
) -> None:
    """Any sequence of ingests, links (chains, repeats, self-links) and forgets, then a merge of
    a shard that folded some of the same events (the journal's moved events are taken back)."""
    got = _run(ops, backend, whole=False)
    want = _run(ops, backend, whole=True)
    _assert_same_state(got, want)
    shard_events = [_event(k, u, h, p, i) for i, (k, u, h, p) in enumerate(tail)]
    for store in (got, want):
        shard = ProfileStore(views=ALL_VIEWS, backend=backend)
        shard.ingest(shard_events)
        store.merge(shard)
    _assert_same_state(got, want)


def test_sparse_table_fold_row_finds_every_run_and_moves_only_the_source() -> None:
    """Entries in the sorted keys and in pending runs move; other profiles and a second fold of
    the emptied source stay as they were."""
    impl = _affinity_reference
    table = SparseTable(width=1)
    table.add_unsorted(np.array([(1 << VALUE_BITS) | 4, (2 << VALUE_BITS) | 4, 7]), np.ones((3, 1)), impl)
    table.compact(impl)
    table.add_unsorted(np.array([(1 << VALUE_BITS) | 5, (1 << VALUE_BITS) | 4]), np.full((2, 1), 2.0), impl)
    table.fold_row(1, 2, impl)
    assert table.n_entries == 4  # 7, and profile 2's values 4 (twice: a pending run) and 5
    table.fold_row(1, 0, impl)  # nothing left to move
    table.compact(impl)
    pairs = {
        (int(k) >> VALUE_BITS, int(k) & 0xFFFF): float(a)
        for k, a in zip(table.keys, table.acc[:, 0], strict=True)
    }
    assert pairs == {(0, 7): 1.0, (2, 4): 4.0, (2, 5): 2.0}


def test_many_folds_keep_the_table_exact() -> None:
    """More folds than the table lets pending runs pile up: the runs are merged and the sums stay
    exact (a chain folding every profile into the last)."""
    impl = _affinity_reference
    table = SparseTable(width=1)
    n = 200
    keys = np.array([(u << VALUE_BITS) | (u % 3) for u in range(n)], dtype=np.int64)
    table.add_unsorted(keys, np.ones((n, 1)), impl)
    table.compact(impl)
    for u in range(n - 1):
        table.fold_row(u, u + 1, impl)
    table.compact(impl)
    assert table.keys.tolist() == [((n - 1) << VALUE_BITS) | v for v in range(3)]
    assert table.acc[:, 0].tolist() == [float(len(range(v, n, 3))) for v in range(3)]


def test_key_table_fold_row_hides_the_source_before_and_after_compaction() -> None:
    table = KeyTable(1)
    table.add(np.arange(100, dtype=np.int64) | (1 << 32), np.ones((100, 1)))  # a pending run
    table.add(np.array([(1 << 32) | 3, (2 << 32) | 3]), np.ones((2, 1)))  # small adds
    table.fold_row(1, 2)
    assert table.entries_of(1) == {} and table.column_of(1, 0) == []
    assert table.entries_of(2)[3] == [3.0] and len(table.entries_of(2)) == 100
    keys, _ = table.take(np.array([1, 2]))
    assert set((keys >> 32).tolist()) == {1}  # row 1 of the request: profile 2
    table.compact()
    assert (table.keys >> 32).tolist() == [2] * 100


def test_a_fold_with_a_journal_remaps_kept_events_lazily() -> None:
    store = ProfileStore(views=("signals",))
    store.ingest([AppOpened(user_id=u, timestamp=T0, event_id=f"e-{u}") for u in ("a", "b", "c")])
    store.link("a", "b")
    store.link("b", "c")
    assert store.journal is not None
    batch = store.journal.batch()
    assert batch is not None
    assert set(batch.user.tolist()) == {store.code_of("c")}


@pytest.mark.parametrize("target", ["2", "new"])
def test_signal_fold_row_equals_merge_then_erase_bit_for_bit(target: str, backend: str) -> None:
    lines = b"\n".join(
        b'{"type":"app_opened","user_id":"%d","timestamp":%d}' % (i % 3, T0 + i * HOUR_MS) for i in range(7)
    )
    batch = EventBatch.from_ndjson(lines)
    stores = [ProfileStore(views=("signals",), backend=backend) for _ in range(2)]
    for store in stores:
        store.ingest(batch)
    stores[0].link("0", target)
    stores[1]._fold_profile = partial(stores[1]._fold_profile, whole=True)  # type: ignore[method-assign]
    stores[1].link("0", target)
    _assert_same_state_signals(stores[0], stores[1])


def _assert_same_state_signals(got: ProfileStore, want: ProfileStore) -> None:
    a = got.views["signals"].to_arrays()[1]["records"]
    b = want.views["signals"].to_arrays()[1]["records"]
    for field in b.dtype.names or ():
        np.testing.assert_array_equal(a[field], b[field])
