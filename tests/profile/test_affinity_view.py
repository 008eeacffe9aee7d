"""The affinity view of the profile store: consent and forget hold in every AffinityModel output,
merges of shards (interned in different orders) equal one model over all events, save / load
round-trips, malformed state is refused. Every test that folds events runs on every backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from affinity_sdk._persist import read_container, write_container
from affinity_sdk.capture.events import (
    ConsentChanged,
    Event,
    OrderCompleted,
    PageViewed,
    Product,
    ProductAdded,
    ProductAddedToWishlist,
    ProductViewed,
)
from affinity_sdk.errors import StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.models.affinity import DIMENSIONS, AffinityModel
from affinity_sdk.profile.affinity_view import VALUE_BITS, AffinityView
from affinity_sdk.profile.store import NowBeforeDataError, ProfileStore

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01
NOW = T0 + 62 * DAY
CATEGORIES = [f"cat{i}" for i in range(6)]
BRANDS = [f"brand{i}" for i in range(8)]
KIND = "affinity_sdk.AffinityModel"


# --- a small shop with two planted shoe fans ------------------------------------------------------
def catalogue(seed: int = 0) -> list[Product]:
    rng = np.random.default_rng(seed)
    products = [
        Product(
            product_id=f"p{i}",
            category=CATEGORIES[int(rng.integers(0, len(CATEGORIES)))],
            brand=BRANDS[int(rng.integers(0, len(BRANDS)))],
            price=float(np.round(rng.lognormal(3.0, 0.8), 2)),
        )
        for i in range(40)
    ]
    shoes = [
        Product(product_id=f"shoe{i}", category="shoes", brand="acme", price=50.0 + 10 * i) for i in range(3)
    ]
    return products + shoes


PRODUCTS = catalogue()
SHOES = [p for p in PRODUCTS if p.category == "shoes"]
OTHERS = [p for p in PRODUCTS if p.category != "shoes"]


def shop_events(seed: int = 1, n_users: int = 30, n_events: int = 700) -> list[Event]:
    """Random product events of users u0..u29, plus shoe fans ``ann`` and ``bea`` (discount hunters)."""
    rng = np.random.default_rng(seed)
    events: list[Event] = []
    for i in range(n_events):
        user = f"u{int(rng.integers(0, n_users))}"
        ts = T0 + int(rng.random() * 60 * DAY)
        product = OTHERS[int(rng.integers(0, len(OTHERS)))]
        kind = rng.choice(5, p=[0.5, 0.15, 0.05, 0.2, 0.1])
        if kind == 0:
            events.append(ProductViewed(user_id=user, timestamp=ts, product=product))
        elif kind == 1:
            events.append(ProductAdded(user_id=user, timestamp=ts, product=product))
        elif kind == 2:
            events.append(ProductAddedToWishlist(user_id=user, timestamp=ts, product=product))
        elif kind == 3:
            lines = [OTHERS[int(j)] for j in rng.integers(0, len(OTHERS), int(rng.integers(1, 4)))]
            coupon = "SAVE" if rng.random() < 0.3 else None
            events.append(OrderCompleted(user_id=user, timestamp=ts, order_id=f"o{i}", products=lines,
                                         revenue=10.0, coupon=coupon))  # fmt: skip
        else:
            events.append(PageViewed(user_id=user, timestamp=ts))
    for fan in ("ann", "bea"):
        for i in range(25):
            ts = T0 + int(rng.random() * 60 * DAY)
            events.append(ProductViewed(user_id=fan, timestamp=ts, product=SHOES[i % len(SHOES)]))
        for i in range(5):
            ts = T0 + int(rng.random() * 60 * DAY)
            events.append(OrderCompleted(user_id=fan, timestamp=ts, order_id=f"{fan}{i}", products=SHOES[:1],
                                         revenue=50.0, coupon="SAVE"))  # fmt: skip
    order = rng.permutation(len(events))
    return [events[int(i)] for i in order]


def catalogue_batch(products: Sequence[Product]) -> EventBatch:
    """One view per product (in this order): what ``fit_price_bands`` reads."""
    return EventBatch.from_events(
        [ProductViewed(user_id="catalogue", timestamp=T0, product=p) for p in products]
    )


def fitted(backend: str, events: Sequence[Event], interners: Interners | None = None) -> AffinityModel:
    """A model with price bands on the whole catalogue, fed ``events``."""
    model = AffinityModel(backend=backend).fit_price_bands(catalogue_batch(PRODUCTS))
    return model.ingest(EventBatch.from_events(events, interners))


def by_name(
    model: AffinityModel, dimension: Any, now: int = NOW
) -> dict[tuple[str, str], tuple[float, float]]:
    """(user, value) -> (decayed engagement, affinity) of every stored pair."""
    s = model.scores(dimension, now)
    users = model.interners.users.names
    out = {}
    for u in range(s.n_profiles):
        for j in range(int(s.indptr[u]), int(s.indptr[u + 1])):
            out[(users[u], s.names[int(s.cols[j])])] = (float(s.decayed[j]), float(s.affinity[j]))
    return out


def assert_same_scores(got: AffinityModel, want: AffinityModel) -> None:
    for dim in DIMENSIONS:
        a, b = by_name(got, dim), by_name(want, dim)
        assert a.keys() == b.keys(), dim
        for key, (decayed, lift) in b.items():
            assert a[key][0] == pytest.approx(decayed, rel=1e-9, abs=1e-300), (dim, key)
            assert a[key][1] == pytest.approx(lift, rel=1e-9), (dim, key)
    da, db = got.discount_sensitivity(NOW), want.discount_sensitivity(NOW)
    assert da.population_rate == pytest.approx(db.population_rate, rel=1e-9)
    rates_a = dict(zip(got.interners.users.names, da.rate.tolist(), strict=False))
    rates_b = dict(zip(want.interners.users.names, db.rate.tolist(), strict=False))
    for user, rate in rates_b.items():
        if user in rates_a and user not in ("", "catalogue"):
            assert rates_a[user] == pytest.approx(rate, rel=1e-9), user


def assert_same_lookalikes(got: AffinityModel, want: AffinityModel, seeds: list[str]) -> None:
    a = dict(got.lookalikes(seeds, n=1000, now_ms=NOW))
    b = dict(want.lookalikes(seeds, n=1000, now_ms=NOW))
    assert a.keys() == b.keys()
    for user, score in b.items():
        assert a[user] == pytest.approx(score, rel=1e-9, abs=1e-12), user


def assert_hidden(model: AffinityModel, user: str) -> None:
    """``user`` appears in no output and cannot seed lookalikes."""
    code = model.interners.users.lookup(user)
    for dim in DIMENSIONS:
        assert model.top_affinities(user, dim, now_ms=NOW) == []
        top = model.top_affinities_all(dim, 3, NOW)
        if code is not None:
            assert top.codes[code].tolist() == [-1, -1, -1]
            s = model.scores(dim, NOW)
            assert s.indptr[code] == s.indptr[code + 1]
        for value in range(len(model.scores(dim, NOW).names)):
            assert user not in model.audience(dim, value, min_affinity=0.0, now_ms=NOW)
    from affinity_sdk.models.affinity import affinities_table, lookalikes_table

    assert user not in affinities_table(model, "category", 3, NOW)["user_id"]
    assert model.discount_class(user, NOW) == "Low"
    assert model.lookalikes([user], n=50, now_ms=NOW) == []
    others = [u for u in ("bea", "ann", "u1") if u != user]
    assert user not in {u for u, _ in model.lookalikes(others, n=1000, now_ms=NOW)}
    assert user not in lookalikes_table(model, others, n=1000)["user_id"]
    if code is not None:
        assert model.discount_sensitivity(NOW).orders[code] == 0.0
        codes, _ = model.lookalike_codes([code], 10, now_ms=NOW)
        assert codes.tolist() == []
        assert np.isnan(model.lookalike_scores([code, 0], now_ms=NOW)[code])


EVENTS = shop_events()
WITHOUT_ANN = [e for e in EVENTS if e.user_id != "ann"]


# --- consent --------------------------------------------------------------------------------------
def test_the_planted_fans_show_up_when_consenting(backend: str) -> None:
    model = fitted(backend, EVENTS)
    assert model.top_affinities("ann", "category", 1, NOW)[0][0] == "shoes"
    assert "ann" in model.audience("brand", "acme", min_affinity=1.5, now_ms=NOW)
    assert "ann" in [u for u, _ in model.lookalikes(["bea"], n=3, now_ms=NOW)]
    assert model.discount_class("ann", NOW) == "High"


@pytest.mark.parametrize("how", ["event", "call"])
def test_opted_out_user_leaves_every_output_and_the_population(backend: str, how: str) -> None:
    model = fitted(backend, EVENTS)
    if how == "event":
        model.ingest(
            EventBatch.from_events([ConsentChanged(user_id="ann", timestamp=T0 + 61 * DAY, granted=False)])
        )
    else:
        model.opt_out("ann", at=T0 + 61 * DAY)
    assert_hidden(model, "ann")
    # an opted-out user's data is not used at all: population shares, discount base rate and the
    # lookalikes' behaviour standardisation are those of a shop that never saw them
    without = fitted(backend, WITHOUT_ANN)
    assert_same_scores(model, without)
    assert_same_lookalikes(model, without, ["bea", "u3"])
    # a later grant brings everything back
    model.opt_in("ann", at=T0 + 62 * DAY)
    assert_same_scores(model, fitted(backend, EVENTS))
    assert model.top_affinities("ann", "category", 1, NOW)[0][0] == "shoes"


def test_an_earlier_grant_does_not_undo_a_revocation(backend: str) -> None:
    model = fitted(backend, EVENTS)
    model.opt_out("ann", at=T0 + 61 * DAY)
    model.ingest(
        EventBatch.from_events([ConsentChanged(user_id="ann", timestamp=T0 + 60 * DAY, granted=True)])
    )
    assert_hidden(model, "ann")


# --- forget ---------------------------------------------------------------------------------------
def test_forget_erases_the_profile_from_state_and_file(backend: str, tmp_path: Path) -> None:
    model = fitted(backend, EVENTS)
    code = model.interners.users.lookup("ann")
    assert code is not None
    assert model.forget("ann") is True
    assert model.forget("nobody") is False
    _, arrays = model.to_arrays()
    for dim in DIMENSIONS:
        assert code not in (arrays[f"{dim}.keys"] >> VALUE_BITS).tolist()
    assert not arrays["activity"][code].any()
    assert_same_scores(model, fitted(backend, WITHOUT_ANN))
    path = tmp_path / "forgot.afs"
    model.save(path)
    header, saved = read_container(path, KIND)
    assert "ann" not in header["interners"]["users"]
    for dim in DIMENSIONS:
        assert code not in (saved[f"affinity.{dim}.keys"] >> VALUE_BITS).tolist()
    assert not saved["affinity.activity"][code].any()
    assert b"ann" not in path.read_bytes()
    # replayed old events of the forgotten user are suppressed
    model.ingest(EventBatch.from_events([e for e in EVENTS if e.user_id == "ann"]))
    assert_hidden(model, "ann")
    assert_same_scores(model, fitted(backend, WITHOUT_ANN))


# --- merge ----------------------------------------------------------------------------------------
def shards(seed: int) -> tuple[list[Event], list[Event]]:
    """A random split of the events; ann's revocation lands in the first shard."""
    rng = np.random.default_rng(seed)
    side = rng.random(len(EVENTS)) < 0.5
    first = [e for e, s in zip(EVENTS, side, strict=True) if s]
    second = [e for e, s in zip(EVENTS, side, strict=True) if not s]
    first.append(ConsentChanged(user_id="ann", timestamp=T0 + 61 * DAY, granted=False))
    return first, second


def reordered_interners(seed: int) -> Interners:
    """Interners with categories and brands in a shuffled order (as another shard would see them)."""
    rng = np.random.default_rng(seed)
    names = Interners()
    names.categories.intern_many(["shoes", *[CATEGORIES[int(i)] for i in rng.permutation(len(CATEGORIES))]])
    names.brands.intern_many(["acme", *[BRANDS[int(i)] for i in rng.permutation(len(BRANDS))]])
    return names


def shard_model(backend: str, events: list[Event], seed: int) -> AffinityModel:
    rng = np.random.default_rng(seed)
    products = [PRODUCTS[int(i)] for i in rng.permutation(len(PRODUCTS))]  # cuts fitted in another order
    model = AffinityModel(backend=backend).fit_price_bands(catalogue_batch(products))
    return model.ingest(EventBatch.from_events(events[::-1], reordered_interners(seed)))


@pytest.mark.parametrize("seed", [3, 4])
def test_merged_shards_equal_one_model_over_all_events(backend: str, seed: int) -> None:
    first, second = shards(seed)
    one = fitted(backend, [*first, *second])
    for left, right in ((first, second), (second, first)):
        a, b = shard_model(backend, left, seed), shard_model(backend, right, seed + 1)
        assert list(a.interners.categories.names) != list(b.interners.categories.names)
        merged = a.merge(b)
        assert_same_scores(merged, one)
        assert_same_lookalikes(merged, one, ["bea", "u2"])
        assert_hidden(merged, "ann")
        np.testing.assert_array_equal(
            _cuts_by_name(merged), _cuts_by_name(one)
        )  # per category name, whatever the codes
        for table in merged.view.tables.values():
            table.compact(merged.view.impl)
            assert np.all(np.diff(table.keys) > 0)


def _cuts_by_name(model: AffinityModel) -> Any:
    names = model.interners.categories.names
    cuts = model.price_cuts_
    return np.array([cuts[names.index(c)] for c in sorted([*CATEGORIES, "shoes"])])


def test_merge_keeps_our_price_cuts_and_takes_theirs_for_new_categories() -> None:
    def priced(category: str, scale: float) -> list[Product]:
        return [
            Product(product_id=f"{category}{i}", category=category, brand="b", price=scale * (i + 1))
            for i in range(4)
        ]

    ours = AffinityModel(backend="reference").fit_price_bands(catalogue_batch(priced("hats", 1.0)))
    theirs = AffinityModel(backend="reference").fit_price_bands(
        catalogue_batch(priced("socks", 1.0) + priced("hats", 10.0))
    )
    ours.merge(theirs)
    names = ours.interners.categories.names
    np.testing.assert_allclose(ours.price_cuts_[names.index("hats")], [2.0, 3.0])
    np.testing.assert_allclose(ours.price_cuts_[names.index("socks")], [2.0, 3.0])
    assert ours.price_cuts_.shape == (2, 2)


def test_merging_into_and_from_an_empty_model(backend: str) -> None:
    full = fitted(backend, EVENTS)
    into_empty = AffinityModel(backend=backend).merge(fitted(backend, EVENTS))
    assert_same_scores(into_empty, full)
    assert_same_scores(fitted(backend, EVENTS).merge(AffinityModel(backend=backend)), full)


def test_batches_with_their_own_interners_are_matched_by_name(backend: str) -> None:
    model = AffinityModel(backend=backend).fit_price_bands(catalogue_batch(PRODUCTS))
    for part in np.array_split(np.arange(len(EVENTS)), 3):
        model.ingest(
            EventBatch.from_events([EVENTS[int(i)] for i in part[::-1]], reordered_interners(int(part[0])))
        )
    assert_same_scores(model, fitted(backend, EVENTS))


# --- one store, several views ---------------------------------------------------------------------
def test_a_model_of_a_shared_store_reads_its_consent(backend: str) -> None:
    store = ProfileStore(views=("signals", "affinity"), backend=backend)
    model = AffinityModel.of(store)
    model.fit_price_bands(catalogue_batch(PRODUCTS))
    store.ingest(EventBatch.from_events(EVENTS))
    assert_same_scores(model, fitted(backend, EVENTS))
    store.opt_out("ann", at=T0 + 61 * DAY)
    assert_hidden(AffinityModel.of(store), "ann")
    assert_same_scores(AffinityModel.of(store), fitted(backend, WITHOUT_ANN))


def test_a_scorers_affinity_reads_the_scorers_store(backend: str) -> None:
    from affinity_sdk import Scorer

    scorer = Scorer(views=("signals", "affinity"), backend=backend)
    scorer.affinity.fit_price_bands(catalogue_batch(PRODUCTS))
    scorer.ingest(EventBatch.from_events(EVENTS))
    assert_same_scores(scorer.affinity, fitted(backend, EVENTS))
    scorer.store.forget("ann")
    assert_hidden(scorer.affinity, "ann")
    assert_same_scores(scorer.affinity, fitted(backend, WITHOUT_ANN))


def test_now_before_the_data_is_refused(backend: str) -> None:
    model = fitted(backend, EVENTS)
    before = model.last_ms - 1  # type: ignore[operator]
    calls = [
        lambda: model.scores("brand", before),
        lambda: model.top_affinities_all("brand", 3, before),
        lambda: model.top_affinities("ann", "brand", 3, before),
        lambda: model.audience("brand", "acme", 1.0, before),
        lambda: model.discount_sensitivity(before),
        lambda: model.lookalikes(["ann"], 3, now_ms=before),
    ]
    for call in calls:
        with pytest.raises(NowBeforeDataError):
            call()
    assert model.scores("brand").now_ms == model.last_ms


# --- save / load ----------------------------------------------------------------------------------
def test_save_load_round_trip_keeps_state_and_consent(backend: str, tmp_path: Path) -> None:
    first, second = shards(5)
    model = fitted(backend, first)
    model.opt_out("bea", at=T0 + 61 * DAY)
    path = tmp_path / "aff.afs"
    model.save(path)
    loaded = AffinityModel.load(path, backend=backend)
    assert loaded.config == model.config
    assert_same_scores(loaded, model)
    assert_same_lookalikes(loaded, model, ["u1", "u2"])
    np.testing.assert_array_equal(loaded.price_cuts_, model.price_cuts_)
    assert_hidden(loaded, "bea")
    assert_hidden(loaded, "ann")
    # both go on the same way
    for m in (model, loaded):
        m.ingest(EventBatch.from_events(second))
    assert_same_scores(loaded, model)


def test_load_refuses_old_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "old.afs"
    write_container(path, KIND, {"format": 1, "n_profiles": 0}, {})  # a pre-store AffinityModel file
    with pytest.raises(StateError, match="not supported"):
        AffinityModel.load(path, backend="reference")
    store = ProfileStore(views=("signals", "affinity"), backend="reference")
    write_container(path, KIND, *store.to_container())
    with pytest.raises(StateError, match="not an affinity model"):
        AffinityModel.load(path, backend="reference")


def _state() -> tuple[AffinityView, dict[str, Any], dict[str, Any], int]:
    model = fitted("reference", EVENTS)
    header, arrays = model.to_arrays()
    view = AffinityView(backend="reference")
    view.interners = model.interners
    return view, header, {k: np.array(v) for k, v in arrays.items()}, model.n_profiles


def _tampered(arrays: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    return {**arrays, name: value}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda h, a, n: (h, _tampered(a, "brand.keys", a["brand.keys"][::-1].copy()), n),
            "brand table is malformed",
        ),
        (lambda h, a, n: (h, _tampered(a, "brand.acc", a["brand.acc"][:-1]), n), "brand table is malformed"),
        (lambda h, a, n: (h, _tampered(a, "category.acc", -a["category.acc"]), n), "negative or non-finite"),
        (lambda h, a, n: (h, _tampered(a, "price_band.keys", a["price_band.keys"] + 5), n), "unknown values"),
        (
            lambda h, a, n: (h, _tampered(a, "category.keys", a["category.keys"] + (1 << 40)), n),
            "unknown profiles",
        ),
        (lambda h, a, n: (h, _tampered(a, "activity", a["activity"][:, :2]), n), "activity"),
        (
            lambda h, a, n: (h, _tampered(a, "price_cuts", a["price_cuts"][:, ::-1] + [[1.0, 0.0]]), n),
            "price cuts",
        ),
        (lambda h, a, n: (h, {k: v for k, v in a.items() if k != "activity"}, n), "incomplete or foreign"),
        (lambda h, a, n: ({**h, "format": 99}, a, n), "not supported"),
        (
            lambda h, a, n: ({**h, "config": {**h["config"], "shrinkage": 1.0}}, a, n),
            "another \\[affinity\\] config",
        ),
        (lambda h, a, n: ({**h, "landmark_ms": None}, a, n), "landmark"),
        (lambda h, a, n: (h, a, n - 1), "profiles"),
    ],
)
def test_load_arrays_refuses_malformed_state(change: Any, message: str) -> None:
    view, header, arrays, n = _state()
    view.load_arrays(header, arrays, n)  # the untouched state loads
    header, arrays, n = change(header, arrays, n)
    with pytest.raises(StateError, match=message):
        view.load_arrays(header, arrays, n)


# --- unfold: taking back a copy both shards folded ------------------------------------------------
def _view_arrays(view: AffinityView) -> dict[str, Any]:
    return view.to_arrays()[1]


def test_unfold_takes_back_exactly_what_fold_added(backend: str) -> None:
    from affinity_sdk.ingest.batch import take_rows

    full = EventBatch.from_events(EVENTS)
    later = EventBatch.from_events(
        [ProductViewed(user_id="u1", timestamp=T0 + 3 * 365 * DAY, product=OTHERS[0])], full.interners
    )
    rng = np.random.default_rng(0)
    replay = take_rows(full, rng.random(len(full)) < 0.3)
    view, want = AffinityView(backend=backend), AffinityView(backend=backend)
    for v in (view, want):
        v.grow(len(full.interners.users))
        v.set_price_cuts(catalogue_price_cuts_of(full))
        v.fold(full)
    view.fold(later)  # moves the landmark 3 years on, past the rebase threshold
    view.fold(replay)
    view.unfold(replay)
    want.fold(later)
    got, expected = _view_arrays(view), _view_arrays(want)
    assert got.keys() == expected.keys()
    for name, array in expected.items():
        if name.endswith(".keys"):
            np.testing.assert_array_equal(got[name], array)  # emptied entries are dropped
        else:
            np.testing.assert_allclose(
                got[name], array, rtol=1e-9, atol=1e-12 * float(np.abs(array).max(initial=1.0))
            )


def catalogue_price_cuts_of(batch: EventBatch) -> Any:
    from affinity_sdk.profile.affinity_view import price_cuts_of

    return price_cuts_of(catalogue_batch(PRODUCTS), (1 / 3, 2 / 3))[
        [catalogue_batch(PRODUCTS).interners.categories.lookup(c) for c in batch.interners.categories.names]
    ]


def test_unfold_after_a_merge_bands_the_copy_with_the_other_shards_cuts(backend: str) -> None:
    twice = ProductViewed(user_id="ann", timestamp=T0 + DAY, product=SHOES[2])  # 70.0: our "premium"
    mine = [twice, ProductViewed(user_id="bea", timestamp=T0, product=SHOES[1])]
    theirs = [twice, ProductViewed(user_id="cid", timestamp=T0 + 2 * DAY, product=SHOES[0])]
    dear = [Product(product_id=f"x{i}", category="shoes", brand="acme", price=1000.0 + i) for i in range(3)]

    def shard(events: list[Event], catalogue: list[Product]) -> AffinityModel:
        model = AffinityModel(backend=backend).fit_price_bands(catalogue_batch(catalogue))
        return model.ingest(EventBatch.from_events(events))

    # "theirs" also sells dear shoes: its copy of `twice` is banded "mid"
    merged = shard(mine, SHOES).merge(shard(theirs, dear + SHOES))
    merged.view.unfold(EventBatch.from_events([twice], merged.interners))
    want = shard(mine, SHOES).merge(shard(theirs[1:], dear + SHOES))
    assert_same_scores(merged, want)


def test_merged_stores_fold_an_event_both_saw_once(backend: str) -> None:
    with_ids = [msgspec_replace(e, event_id=f"e{i}") for i, e in enumerate(EVENTS)]
    side = np.random.default_rng(7).integers(0, 3, len(with_ids))  # 0: first, 1: second, 2: both
    parts = [[e for e, s in zip(with_ids, side, strict=True) if s in (k, 2)] for k in (0, 1)]
    stores = []
    for events in ([*parts[0], *parts[1]], parts[0], parts[1]):
        store = ProfileStore(views=("affinity",), backend=backend)
        AffinityModel.of(store).fit_price_bands(catalogue_batch(PRODUCTS))
        store.ingest(EventBatch.from_events(events))
        stores.append(store)
    one, first, second = stores
    first.merge(second)
    assert first.events_ingested == len(with_ids) == one.events_ingested
    assert_same_scores(AffinityModel.of(first), AffinityModel.of(one))


def msgspec_replace(event: Event, **changes: Any) -> Event:
    import msgspec

    return msgspec.structs.replace(event, **changes)
