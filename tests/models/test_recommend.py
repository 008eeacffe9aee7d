"""Recommendations and similar products: the same whether events came one by one, in a batch or
in merged shards; hidden users get nothing and leak nothing; bought items stay out unless they
are repeat purchases; popularity is the fallback; similarity is a symmetric shrunk lift."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import pytest

from affinity_sdk.capture.events import AppOpened, Event, OrderCompleted, Product, ProductViewed
from affinity_sdk.errors import ConfigError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.models.affinity import AffinityModel
from affinity_sdk.models.recommend import Recommender
from affinity_sdk.profile.store import NowBeforeDataError, ProfileStore, ViewName
from affinity_sdk.sim.shop import simulate_shop

T0 = 1_767_225_600_000
Recs = list[tuple[str, float]]


@cache
def sim_events() -> tuple[Event, ...]:
    return tuple(simulate_shop(80, weeks=3, horizon_weeks=0, seed=9).iter_events())


def store_of(
    events: Sequence[Event], views: tuple[ViewName, ...] = ("affinity", "products"), backend: str = "auto"
) -> ProfileStore:
    store = ProfileStore(views=views, backend=backend)
    if "affinity" in views:
        # price bands from the whole catalogue up front, as a shop would: a stream fits them
        # otherwise from the first products it sees (an affinity-view rule, not this one's)
        AffinityModel.of(store).fit_price_bands(EventBatch.from_events(list(sim_events())))
    if events:
        store.ingest(list(events))
    return store


def assert_same_recs(a: Recs, b: Recs) -> None:
    """Same scores; the same products except where near-equal scores may swap at the cut."""
    sa, sb = np.array([s for _, s in a]), np.array([s for _, s in b])
    np.testing.assert_allclose(sa, sb, rtol=1e-9, atol=1e-12)
    da, db = dict(a), dict(b)
    last = sa[-1] if sa.shape[0] else 0.0
    for product in set(da) ^ set(db):
        assert abs(da.get(product, db.get(product, 0.0)) - last) <= 1e-9 * max(abs(last), 1.0)
    for product in set(da) & set(db):
        assert da[product] == pytest.approx(db[product], rel=1e-9, abs=1e-12)


def assert_same_recommender(a: Recommender, b: Recommender, users: Sequence[str], k: int = 8) -> None:
    for user in users:
        assert_same_recs(a.recommend(user, k), b.recommend(user, k))
    for product in ("p00010", "p00020", "p00123"):
        assert_same_recs(a.similar_products(product, k), b.similar_products(product, k))


def users_of(events: Sequence[Event]) -> list[str]:
    return sorted({e.user_id for e in events})


# --- stream = batch = merge ---------------------------------------------------------------------
def test_stream_batch_and_merged_shards_recommend_the_same(backend: str) -> None:
    events = sim_events()
    batch = store_of(events, backend=backend)
    stream = store_of([], backend=backend)
    for event in events:
        stream.ingest(event)
    side = np.random.default_rng(3).integers(0, 2, len(events))
    merged = store_of([e for e, s in zip(events, side, strict=True) if s == 0], backend=backend)
    merged.merge(store_of([e for e, s in zip(events, side, strict=True) if s == 1][::-1], backend=backend))
    users = users_of(events)[:30]
    assert any(len(Recommender(batch).recommend(u)) for u in users)
    assert_same_recommender(Recommender(stream), Recommender(batch), users)
    assert_same_recommender(Recommender(merged), Recommender(batch), users)


def test_recommend_all_equals_recommend_per_user() -> None:
    rec = Recommender(store_of(sim_events()))
    table = rec.recommend_all(k=5)
    assert list(table) == ["user_id", "rank", "product_id", "score"]
    for user in users_of(sim_events())[:20]:
        rows = [i for i, u in enumerate(table["user_id"]) if u == user]
        assert [table["rank"][i] for i in rows] == list(range(1, len(rows) + 1))
        got = [(table["product_id"][i], table["score"][i]) for i in rows]
        assert got == rec.recommend(user, 5)
        scores = [s for _, s in got]
        assert scores == sorted(scores, reverse=True)


def test_later_replays_change_no_recommendation() -> None:
    events = sim_events()
    once = store_of(events)
    twice = store_of(events)
    twice.ingest(list(events[::3]))
    assert_same_recommender(Recommender(once), Recommender(twice), users_of(events)[:20])


# --- consent and forget -------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["opt_out", "forget"])
def test_hidden_users_get_nothing_and_leak_nothing(how: str) -> None:
    events = sim_events()
    victims = users_of(events)[:10]
    # products only: the affinity view's price bands are catalogue facts fitted from all lines
    store = store_of(events, views=("products",))
    for user in victims:
        getattr(store, how)(user)
    without = store_of([e for e in events if e.user_id not in victims], views=("products",))
    rec = Recommender(store)
    for user in victims:
        assert rec.recommend(user) == []
    assert not set(rec.recommend_all(k=3)["user_id"]) & set(victims)
    assert_same_recommender(rec, Recommender(without), users_of(events)[10:40])
    assert rec.popular(20) == Recommender(without).popular(20)
    assert rec.repeat_products() == Recommender(without).repeat_products()


def test_opt_in_brings_a_user_back() -> None:
    store = store_of(sim_events())
    user = users_of(sim_events())[0]
    rec = Recommender(store)
    before = rec.recommend(user)
    store.opt_out(user, at=T0 + 100 * 86_400_000)
    assert rec.recommend(user) == []
    store.opt_in(user, at=T0 + 101 * 86_400_000)
    assert rec.recommend(user) == before


# --- handcrafted shop ---------------------------------------------------------------------------
def item(pid: str, category: str = "kitchen", brand: str = "b") -> Product:
    return Product(product_id=pid, category=category, brand=brand, price=10.0)


def order(user: str, products: Sequence[Product], day: int = 0, n: int = 0) -> OrderCompleted:
    return OrderCompleted(
        user_id=user,
        timestamp=T0 + day * 86_400_000,
        order_id=f"{user}-{day}-{n}",
        revenue=10.0 * len(products),
        products=list(products),
    )


def test_bought_items_stay_out_unless_repeat_purchases() -> None:
    tea, cup, milk = item("tea"), item("cup"), item("milk")
    events: list[Event] = []
    for i in range(4):  # milk: every buyer buys it again -> a repeat-purchase product
        events += [order(f"m{i}", [milk], day=1), order(f"m{i}", [milk, tea], day=2)]
    events += [order("ann", [tea, milk], day=1), order("ann", [milk], day=3), order("bob", [cup], day=1)]
    store = store_of(events)
    rec = Recommender(store)
    assert rec.repeat_products() == ["milk"]
    got = [p for p, _ in rec.recommend("ann", k=10)]
    assert "tea" not in got and "milk" in got and "cup" in got
    # ann's own repeat purchase comes back through the repeat term
    flat = dict(Recommender(store, repeat_weight=0.0).recommend("ann", k=10))
    assert dict(rec.recommend("ann", k=10))["milk"] > flat["milk"]
    strict = Recommender(store, repeat_share=1.0)  # every buyer a repeater: milk still qualifies
    assert strict.repeat_products() == ["milk"]
    few = Recommender(store, min_repeat_buyers=10)
    assert few.repeat_products() == []
    # no longer a repeat product of the population, milk stays one for ann (two orders with it)
    assert "milk" in [p for p, _ in few.recommend("ann", k=10)]
    store.ingest(order("cy", [milk], day=4))
    assert "milk" not in [p for p, _ in few.recommend("cy", k=10)]
    assert "milk" in [p for p, _ in Recommender(store).recommend("cy", k=10)]


def test_new_and_history_less_users_get_the_popular_products() -> None:
    a, b, c = item("a"), item("b"), item("c")
    events: list[Event] = [order(f"u{i}", [a]) for i in range(3)] + [order(f"v{i}", [b]) for i in range(2)]
    events += [ProductViewed(user_id="w", timestamp=T0, product=c), AppOpened(user_id="idle", timestamp=T0)]
    store = store_of(events)
    rec = Recommender(store)
    assert rec.popular(3) == [("a", 3.0), ("b", 2.0), ("c", 0.0)]
    n_users = store.n_users
    stranger = rec.recommend("stranger", k=3)
    assert [p for p, _ in stranger] == ["a", "b"]  # c has no buyer: no popularity
    assert store.n_users == n_users  # asking creates no profile
    assert [p for p, _ in rec.recommend("idle", k=3)] == ["a", "b"]
    assert rec.recommend("idle", k=3) == stranger
    store.forget("idle")
    assert rec.recommend("idle") == []


def test_similarity_is_the_documented_symmetric_shrunk_lift() -> None:
    tea, cup, pot = item("tea"), item("cup"), item("pot")
    events = [order("ann", [tea, cup]), order("bob", [tea, cup]), order("cy", [pot]), order("dee", [tea])]
    rec = Recommender(store_of(events), shrinkage=5.0, purchase_weight=1.0, view_weight=0.5)
    # C = 2 shared buyers, n_tea = 3, n_cup = 2, N = 4 buyers: E = 1.5; the same sets co-view
    lift = (2 + 5.0) / (1.5 + 5.0)
    (name, value), *_ = rec.similar_products("tea", k=1)
    assert name == "cup" and value == pytest.approx(1.5 * (lift - 1.0))
    assert rec.similar_products("cup", k=1) == [("tea", value)]
    assert rec.similar_products("pot") == []  # co-occurs with nothing
    assert rec.similar_products("unknown") == []


def test_similarity_matrix_is_symmetric_and_nonnegative_on_a_simulated_shop() -> None:
    rec = Recommender(store_of(sim_events()))
    names = rec.store.interners.products.names
    checked = 0
    for product in names[:200]:
        for other, value in rec.similar_products(product, k=5):
            assert value > 0 and other != product
            assert dict(rec.similar_products(other, k=10_000))[product] == pytest.approx(value, rel=1e-12)
            checked += 1
    assert checked > 50


def test_affinity_orders_equally_popular_products() -> None:
    hat, shoe, boot = item("hat", "hats", "zed"), item("shoe", "shoes", "acme"), item("boot", "shoes", "acme")
    events: list[Event] = [order(f"h{i}", [hat]) for i in range(3)] + [
        order(f"s{i}", [shoe]) for i in range(3)
    ]
    events += [ProductViewed(user_id="fan", timestamp=T0 + i, product=boot) for i in range(5)]
    store = store_of(events)
    assert [p for p, _ in Recommender(store, affinity_weight=0.0).recommend("fan", 2)] == ["hat", "shoe"]
    assert [p for p, _ in Recommender(store).recommend("fan", 2)] == ["shoe", "hat"]
    # without an affinity view the factor is 1
    flat = store_of(events, views=("products",))
    assert [p for p, _ in Recommender(flat).recommend("fan", 2)] == ["hat", "shoe"]


# --- bad input ----------------------------------------------------------------------------------
def test_bad_arguments_are_refused() -> None:
    store = store_of(sim_events())
    rec = Recommender(store)
    with pytest.raises(ConfigError, match="k must be >= 0"):
        rec.recommend("x", k=-1)
    with pytest.raises(NowBeforeDataError):
        rec.recommend(users_of(sim_events())[0], now=T0 - 86_400_000)
    with pytest.raises(ConfigError, match="popularity_weight"):
        Recommender(store, popularity_weight=float("nan"))
    with pytest.raises(ConfigError, match="repeat_share"):
        Recommender(store, repeat_share=2.0)
    with pytest.raises(KeyError, match="products"):
        Recommender(ProfileStore(views=("signals",)))
