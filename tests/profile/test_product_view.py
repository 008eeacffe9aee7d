"""The products view of the profile store: stream = batch = merged shards = map-side Dask
partitions (same numbers, compared by name), replays exact, forget erases every trace of a
profile, save / load round-trips, malformed state is refused."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from affinity_sdk._persist import read_container, write_container
from affinity_sdk.capture.events import Event, OrderCompleted, Product, ProductAdded, ProductViewed
from affinity_sdk.errors import StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.profile.product_view import COLUMNS, KINDS, ProductView
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.sim.shop import simulate_shop

KIND = "affinity_sdk.ProfileStore"
Snapshot = tuple[dict[tuple[str, str], tuple[float, ...]], dict[str, tuple[str, str, float]]]


@cache
def sim_events() -> tuple[Event, ...]:
    sim = simulate_shop(60, weeks=3, horizon_weeks=0, seed=4)
    return tuple(sim.iter_events())


def store_of(events: Sequence[Event], backend: str = "auto", **kwargs: Any) -> ProfileStore:
    store = ProfileStore(views=("products",), backend=backend, **kwargs)
    if events:
        store.ingest(list(events))
    return store


def snapshot(store: ProfileStore, now_ms: int) -> Snapshot:
    """Every visible (user, product) entry by name (decayed columns at ``now_ms``, then counts)
    and the catalogue by name: what must agree however the events arrived."""
    view: ProductView = store.view("products")
    users, products, acc = view.rows()
    values = acc * view.factors(now_ms)
    visible = store.visible()
    names = store.interners
    entries = {
        (names.users.names[u], names.products.names[p]): tuple(row)
        for u, p, row in zip(users.tolist(), products.tolist(), values.tolist(), strict=True)
        if visible[u]
    }
    catalogue = {
        names.products.names[p]: (
            names.categories.names[int(view.category[p])],
            names.brands.names[int(view.brand[p])],
            float(view.price[p]),
        )
        for p in range(view.n_products)
        if view.category[p] >= 0
    }
    return entries, catalogue


def assert_same(a: ProfileStore, b: ProfileStore) -> None:
    now = max(a.now_ms(None), b.now_ms(None))
    (ea, ca), (eb, cb) = snapshot(a, now), snapshot(b, now)
    assert ea.keys() == eb.keys()
    for key, row in ea.items():
        np.testing.assert_allclose(row, eb[key], rtol=1e-9, atol=1e-12, err_msg=str(key))
        assert row[len(KINDS) :] == eb[key][len(KINDS) :]  # counts are exact
    assert ca == cb


def test_batch_equals_one_event_at_a_time(backend: str) -> None:
    events = sim_events()
    stream = store_of([], backend)
    for event in events:
        stream.ingest(event)
    batch = store_of(events, backend)
    assert_same(stream, batch)
    assert len(snapshot(batch, batch.now_ms(None))[0]) > 100


def test_every_kind_is_kept_and_counted() -> None:
    shoe = Product(product_id="shoe", category="shoes", brand="acme", price=50.0)
    events: list[Event] = [
        ProductViewed(user_id="ann", timestamp=0, product=shoe),
        ProductViewed(user_id="ann", timestamp=1, product=shoe),
        ProductAdded(user_id="ann", timestamp=2, product=shoe),
        OrderCompleted(user_id="ann", timestamp=3, order_id="o", revenue=50.0, products=[shoe]),
    ]
    (entries, catalogue) = snapshot(store_of(events), 3)
    counts = entries[("ann", "shoe")][len(KINDS) :]
    assert counts == (2.0, 1.0, 1.0)
    assert catalogue == {"shoe": ("shoes", "acme", 50.0)}
    assert len(COLUMNS) == 2 * len(KINDS)


def test_catalogue_takes_the_latest_line_whatever_the_order() -> None:
    old = Product(product_id="p", category="shoes", brand="acme", price=50.0)
    new = Product(product_id="p", category="shoes", brand="acme", price=40.0)
    events: list[Event] = [
        ProductViewed(user_id="ann", timestamp=10, product=new),
        ProductViewed(user_id="bob", timestamp=5, product=old),
    ]
    forward, backward = store_of(events), store_of(events[::-1])
    assert snapshot(forward, 10)[1] == snapshot(backward, 10)[1] == {"p": ("shoes", "acme", 40.0)}


@pytest.mark.parametrize("seed", [0, 1])
def test_merged_shards_equal_one_store(backend: str, seed: int) -> None:
    """Shards split by event (a user's events land in both), interned in different orders."""
    events = sim_events()
    side = np.random.default_rng(seed).integers(0, 2, len(events))
    first = store_of([e for e, s in zip(events, side, strict=True) if s == 0][::-1], backend)
    second = store_of([e for e, s in zip(events, side, strict=True) if s == 1], backend)
    first.merge(second)
    assert_same(first, store_of(events, backend))


def test_overlapping_shards_fold_shared_events_once(backend: str) -> None:
    events = sim_events()
    n = len(events)
    first = store_of(events[: 2 * n // 3], backend)
    second = store_of(events[n // 3 :], backend)
    first.merge(second)
    assert_same(first, store_of(events, backend))


def test_map_side_dask_partitions_equal_one_store() -> None:
    """The Dask path of this view is map-side: each partition folds into its own store and the
    stores merge by addition (a tree reduction), which must equal one store."""
    dask = pytest.importorskip("dask")
    events = sim_events()
    parts = [list(events[i::4]) for i in range(4)]

    def fold(part: list[Event]) -> ProfileStore:
        return store_of(part)

    def merge(a: ProfileStore, b: ProfileStore) -> ProfileStore:
        return a.merge(b)

    stores = [dask.delayed(fold)(p) for p in parts]
    while len(stores) > 1:
        stores = [dask.delayed(merge)(stores[i], stores[i + 1]) for i in range(0, len(stores), 2)]
    (merged,) = dask.compute(*stores, scheduler="sync")
    assert_same(merged, store_of(events))


def test_replayed_events_change_nothing(backend: str) -> None:
    events = sim_events()
    assert all(e.event_id is not None for e in events)
    once = store_of(events, backend)
    twice = store_of(events, backend)
    report = twice.ingest(list(events[: len(events) // 2]))
    assert report.accepted == 0 and report.n_duplicates == len(events) // 2
    assert_same(once, twice)


def test_forget_erases_the_profile_everywhere(backend: str, tmp_path: Path) -> None:
    events = sim_events()
    victim = events[0].user_id
    store = store_of(events, backend)
    assert store.forget(victim)
    without = store_of([e for e in events if e.user_id != victim], backend)
    assert_same(store, without)
    view: ProductView = store.view("products")
    users, _, _ = view.rows()
    assert store.interners.users.lookup(victim) is None
    assert users.shape[0] == snapshot(without, without.now_ms(None))[0].__len__()
    path = tmp_path / "state.afs"
    write_container(path, KIND, *store.to_container())
    assert victim.encode() not in path.read_bytes()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    events = sim_events()
    store = store_of(events)
    path = tmp_path / "state.afs"
    write_container(path, KIND, *store.to_container())
    loaded = ProfileStore.from_container(path, *read_container(path, KIND))
    assert_same(loaded, store)
    # the loaded store keeps folding exactly
    extra = ProductViewed(
        user_id="newcomer",
        timestamp=store.now_ms(None),
        product=Product(product_id="p-new", category="c", brand="b", price=1.0),
    )
    loaded.ingest(extra)
    store.ingest(extra)
    assert_same(loaded, store)


@pytest.mark.parametrize(
    "damage",
    [
        lambda h, a: a.update(keys=a["keys"][::-1].copy()),
        lambda h, a: a.update(acc=-a["acc"]),
        lambda h, a: a.update(category=a["category"][:-1].copy()),
        lambda h, a: h.update(half_lives_s=[1.0, 2.0, 3.0]),
        lambda h, a: h.update(format=99),
        lambda h, a: a.pop("seen_ms"),
    ],
    ids=["unsorted", "negative", "short-catalogue", "half-lives", "format", "missing"],
)
def test_malformed_state_is_refused(damage: Any) -> None:
    store = store_of(sim_events())
    header, arrays = store.view("products").to_arrays()
    header, arrays = dict(header), dict(arrays)
    damage(header, arrays)
    with pytest.raises(StateError, match="products state"):
        ProductView().load_arrays(header, arrays, store.n_users)


def test_folding_other_interners_is_refused() -> None:
    store = store_of(sim_events()[:50])
    foreign = EventBatch.from_events(list(sim_events()[:5]))
    with pytest.raises(StateError, match="other Interners"):
        store.view("products").fold(foreign)


def test_linked_ids_fold_into_one_profile() -> None:
    shoe = Product(product_id="shoe", category="shoes", brand="acme", price=50.0)
    hat = Product(product_id="hat", category="hats", brand="zed", price=20.0)
    linked = store_of([ProductViewed(user_id="anon", timestamp=0, product=shoe)])
    linked.link("anon", "ann")
    linked.ingest(
        OrderCompleted(user_id="ann", timestamp=5, order_id="o", revenue=20.0, products=[hat, shoe])
    )
    one = store_of(
        [
            ProductViewed(user_id="ann", timestamp=0, product=shoe),
            OrderCompleted(user_id="ann", timestamp=5, order_id="o", revenue=20.0, products=[hat, shoe]),
        ]
    )
    assert_same(linked, one)
