"""The propensity view: its features equal the batch features, and consent / forget hold in every path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from affinity_sdk.capture.events import CHANNELS
from affinity_sdk.errors import ConfigError, StateError
from affinity_sdk.ingest.batch import EventBatch, take_rows
from affinity_sdk.models import propensity as P
from affinity_sdk.profile.flags import opted_out_users
from affinity_sdk.profile.propensity_view import PropensityView
from affinity_sdk.profile.store import NowBeforeDataError, ProfileStore
from affinity_sdk.score.scorer import Scorer
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop

DAY = 86_400_000
WEEK = 7 * DAY
T0 = 1_704_067_200_000  # 2024-01-01
ALL_VIEWS = ("signals", "affinity", "propensity")
#: Every optional feature on (the default half-lives, which the store's view decays at).
FULL = P.FeatureSpec(bgnbd=True, order_days=True, order_day_value_power=0.5)
SPECS = (P.FeatureSpec(), FULL)


@pytest.fixture(scope="module")
def sim() -> ShopSimulation:
    return simulate_shop(600, weeks=8, horizon_weeks=2, seed=11)


def _store(backend: str, views: tuple[Any, ...] = ALL_VIEWS) -> ProfileStore:
    return ProfileStore(views=views, backend=backend, max_future=None)


def _view_vs_batch(
    store: ProfileStore,
    batch: EventBatch,
    now_ms: int,
    spec: P.FeatureSpec,
    backend: str,
    population: Any = None,
) -> tuple[P.Features, P.Features, np.ndarray]:
    """The view's features and the batch's, and per store code the batch code of the same id."""
    view = store.view("propensity")
    got = view.features(now_ms, spec, population=population)
    names = store.interners.users.names
    codes = np.array([-1 if (c := batch.interners.users.lookup(n)) is None else c for n in names])
    batch_population = None
    if population is not None:
        batch_population = np.zeros(len(batch.interners.users), dtype=bool)
        batch_population[codes[codes >= 0]] = population[codes >= 0]
    want = P.profile_features(batch, now_ms, spec=spec, backend=backend, population=batch_population)
    return got, want, codes


def _assert_same_features(store: ProfileStore, batch: EventBatch, now_ms: int, backend: str) -> None:
    for spec in SPECS:
        got, want, codes = _view_vs_batch(store, batch, now_ms, spec, backend)
        assert got.names == want.names
        live = codes >= 0
        # Every user with events has a live profile; retired (forgotten) codes hold empty rows.
        assert sorted(codes[live].tolist()) == np.unique(batch.user).tolist()
        np.testing.assert_allclose(got.X[live], want.X[codes[live]], rtol=0, atol=1e-9)
        assert got.seen[live].tolist() == want.seen[codes[live]].tolist()
        assert not got.seen[~live].any()


def _split(batch: EventBatch, rng: np.random.Generator, parts: int) -> list[EventBatch]:
    """``batch``'s events dealt at random into ``parts`` batches (each keeps the time order)."""
    which = rng.integers(0, parts, len(batch))
    return [take_rows(batch, which == k) for k in range(parts)]


def _random_lines(rng: np.random.Generator, n: int, *, n_users: int = 25) -> list[bytes]:
    """Random valid events of every type the features read, some before 1970 (negative days)."""
    kinds = [
        "page_viewed",
        "products_searched",
        "product_viewed",
        "product_added",
        "product_list_viewed",
        "cart_viewed",
        "checkout_started",
        "order_completed",
        "order_completed",
        "order_refunded",
        "email_opened",
        "sms_clicked",
        "push_opened",
        "unsubscribed",
        "app_installed",
        "app_opened",
        "app_uninstalled",
        "consent_changed",
    ]

    def product() -> dict[str, Any]:
        return {
            "product_id": f"p{rng.integers(40)}",
            "category": f"c{rng.integers(7)}",
            "brand": f"b{rng.integers(5)}",
            "price": float(rng.integers(1, 500)) / 4,
            "quantity": int(rng.integers(1, 4)),
        }

    lines = []
    for i in range(n):
        kind = kinds[rng.integers(len(kinds))]
        base = T0 if rng.random() < 0.9 else -40 * DAY  # a few events in 1969
        event: dict[str, Any] = {
            "type": kind,
            "user_id": f"u{rng.integers(n_users)}",
            "timestamp": int(base + rng.integers(0, 120 * DAY)),
            "event_id": f"e{i}",
        }
        if rng.random() < 0.5:
            event["channel"] = CHANNELS[rng.integers(len(CHANNELS))]
        if kind in ("product_viewed", "product_added"):
            event["product"] = product()
        elif kind in ("product_list_viewed", "cart_viewed", "checkout_started", "order_completed"):
            event["products"] = [product() for _ in range(rng.integers(0, 4))]
        if kind in ("order_completed", "order_refunded"):
            event["order_id"] = f"o{i}"
            event["revenue"] = float(rng.integers(0, 40_000)) / 100
        if kind == "consent_changed":
            event["granted"] = bool(rng.random() < 0.5)
        lines.append(msgspec.json.encode(event))
    return lines


# --- the view's features are the batch features ------------------------------------------------
def test_view_equals_batch_features_on_the_simulator_split_across_ingests(
    sim: ShopSimulation, backend: str
) -> None:
    rng = np.random.default_rng(1)
    store = _store(backend)
    for part in _split(sim.batch, rng, 5):
        store.ingest(part)
    assert store.events_ingested == len(sim.batch)
    for now_ms in (int(sim.batch.ts_ms.max()), sim.end_ms, sim.end_ms + 3 * WEEK):
        _assert_same_features(store, sim.batch, now_ms, backend)


def test_view_equals_batch_features_across_two_merged_stores_and_a_save_load(
    sim: ShopSimulation, backend: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(2)
    halves = _split(sim.batch, rng, 2)
    a, b = Scorer(views=ALL_VIEWS, backend=backend, max_future=None), _store(backend)
    for part in _split(halves[0], rng, 3):
        a.ingest(part)
    for part in _split(halves[1], rng, 2):
        b.ingest(part)
    a.store.merge(b)
    _assert_same_features(a.store, sim.batch, sim.end_ms, backend)
    a.save(tmp_path / "state.bin")
    again = Scorer.load(tmp_path / "state.bin", backend=backend)
    for spec in SPECS:
        before = a.store.view("propensity").features(sim.end_ms, spec)
        np.testing.assert_array_equal(again.store.view("propensity").features(sim.end_ms, spec).X, before.X)
    # The loaded store goes on folding as the one it was saved from.
    extra = EventBatch.from_ndjson(b"\n".join(_random_lines(rng, 300)))
    a.ingest(extra)
    again.ingest(extra)
    later = sim.end_ms + WEEK
    for spec in SPECS:
        np.testing.assert_allclose(
            again.store.view("propensity").features(later, spec).X,
            a.store.view("propensity").features(later, spec).X,
            rtol=0,
            atol=1e-12,
        )


def test_view_equals_batch_features_on_random_events_shards_and_replays(backend: str) -> None:
    rng = np.random.default_rng(3)
    for trial in range(3):
        lines = _random_lines(rng, 600)
        batch = EventBatch.from_ndjson(b"\n".join(lines))
        # Two shards, each fed in a few calls; a tenth of the events reach both (same event ids).
        shard = rng.integers(0, 2, len(lines))
        both = rng.random(len(lines)) < 0.1
        stores = [_store(backend), _store(backend)]
        for k, store in enumerate(stores):
            mine = [line for line, s, twice in zip(lines, shard, both, strict=True) if s == k or twice]
            for chunk in np.array_split(np.arange(len(mine)), 1 + trial):
                store.ingest(b"\n".join(mine[i] for i in chunk.tolist()))
        stores[0].merge(stores[1])
        assert stores[0].events_ingested == len(batch)
        newest = int(batch.ts_ms.max())
        _assert_same_features(stores[0], batch, newest, backend)
        _assert_same_features(stores[0], batch, newest + 10 * DAY, backend)


def test_view_refuses_other_half_lives_an_early_now_and_merges_of_other_views() -> None:
    view = PropensityView(backend="reference")
    view.grow(1)
    view.fold(EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"u","timestamp":5000}'))
    with pytest.raises(ConfigError, match="half-lives"):
        view.features(5000, P.FeatureSpec(half_lives=("7d", "28d")))
    with pytest.raises(NowBeforeDataError):
        view.features(4999)
    other = PropensityView(P.FeatureSpec(half_lives=("7d", "28d")), backend="reference")
    with pytest.raises(StateError, match="half-lives"):
        view.merge_rows(other, np.zeros(1, np.int64), np.zeros(1, np.int64))
    wide = PropensityView(P.FeatureSpec(half_lives=("7d", "28d")), backend="reference")
    wide.grow(1)
    assert wide.features(0, P.FeatureSpec(half_lives=("7d", "28d"), order_days=True)).X.shape[0] == 1


def test_state_saved_before_the_whatsapp_channel_loads_with_a_zero_column() -> None:
    view = PropensityView(backend="reference")
    lines = _random_lines(np.random.default_rng(5), 120, n_users=5)
    view.fold(EventBatch.from_ndjson(b"\n".join(lines)))
    header, arrays = view.to_arrays()
    old = {**arrays, "channels": arrays["channels"][:, :6].copy()}
    fresh = PropensityView(backend="reference")
    fresh.load_arrays(header, old, view.n_profiles)
    expected = view.channels.copy()
    expected[:, 6:] = 0
    np.testing.assert_array_equal(fresh.channels, expected)


def test_load_refuses_malformed_arrays() -> None:
    view = PropensityView(backend="reference")
    lines = _random_lines(np.random.default_rng(4), 200, n_users=6)
    view.fold(EventBatch.from_ndjson(b"\n".join(lines)))
    header, arrays = view.to_arrays()
    n = view.n_profiles
    fresh = PropensityView(backend="reference")
    fresh.load_arrays(header, arrays, n)  # the untouched arrays load
    np.testing.assert_array_equal(fresh.features(T0 + 200 * DAY).X, view.features(T0 + 200 * DAY).X)

    def broken(**changes: Any) -> dict[str, Any]:
        return {**arrays, **changes}

    bad_arrays = [
        {k: v for k, v in arrays.items() if k != "day.keys"},
        broken(**{"day.keys": arrays["day.keys"][::-1].copy()}),
        broken(**{"day.revenue": -arrays["day.revenue"] - 1}),
        broken(**{"day.orders": np.zeros_like(arrays["day.orders"])}),
        broken(**{"category.keys": arrays["category.keys"].astype(np.float64)}),
        broken(**{"category.keys": arrays["category.keys"] + (np.int64(n) << 32)}),
        broken(channels=arrays["channels"][:, :2].copy()),
        broken(refunds=arrays["refunds"] - 5),
        broken(records=arrays["records"][:-1]),
    ]
    for bad in bad_arrays:
        with pytest.raises(StateError):
            PropensityView(backend="reference").load_arrays(header, bad, n)
    for bad_header in (
        {**header, "format": 99},
        {**header, "half_lives_s": [1.0, 2.0]},
        {**header, "categories": header["categories"][:1]},
        {**header, "landmark_ms": None},
        {**header, "last_ms": "soon"},
    ):
        with pytest.raises(StateError):
            PropensityView(backend="reference").load_arrays(bad_header, arrays, n)
    with pytest.raises(StateError):
        PropensityView(backend="reference").load_arrays(header, arrays, n + 1)


# --- consent and forget -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(sim: ShopSimulation) -> dict[str, P.PropensityModel]:
    out = {}
    for name, spec in (("plain", SPECS[0]), ("full", FULL)):
        data = P.build_training_set(sim.batch, "purchase", [sim.end_ms - 2 * WEEK], "2w", spec=spec)
        out[name] = P.PropensityModel.fit(data)
    return out


def test_batch_paths_leave_out_users_who_revoked_consent(
    sim: ShopSimulation, models: dict[str, P.PropensityModel], backend: str
) -> None:
    hidden = opted_out_users(sim.batch)
    assert 0 < hidden.sum() < 0.1 * hidden.shape[0]  # the simulator revokes for a few
    data = P.build_training_set(sim.batch, "churn", [sim.end_ms - 4 * WEEK, sim.end_ms - 2 * WEEK], "2w")
    assert len(data) > 0 and not hidden[data.user].any()
    for model in models.values():
        p, seen = model.score_batch(sim.batch, sim.end_ms, backend=backend)
        assert np.isnan(p[hidden]).all() and not seen[hidden].any()
        assert np.isfinite(p[~hidden]).all()
        tiers = model.tiers(p)
        assert (tiers[hidden] == 0).all()
        # Quantile tiers rank only the users with a probability.
        np.testing.assert_array_equal(tiers[~hidden], model.tiers(p[~hidden]))


def test_hand_case_latest_decision_wins_and_ties_revoke() -> None:
    lines = [
        b'{"type":"page_viewed","user_id":"out","timestamp":1000}',
        b'{"type":"consent_changed","user_id":"out","timestamp":2000,"granted":false}',
        b'{"type":"consent_changed","user_id":"back","timestamp":1000,"granted":false}',
        b'{"type":"consent_changed","user_id":"back","timestamp":3000,"granted":true}',
        b'{"type":"consent_changed","user_id":"tie","timestamp":3000,"granted":true}',
        b'{"type":"consent_changed","user_id":"tie","timestamp":3000,"granted":false}',
        b'{"type":"app_opened","user_id":"plain","timestamp":500}',
    ]
    batch = EventBatch.from_ndjson(b"\n".join(lines))
    assert P.visible_users(batch).tolist() == [False, True, False, True]
    mask = np.array([True, True, True, False])
    assert P.visible_users(batch, mask).tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match="one flag per user"):
        P.visible_users(batch, mask[:2])


def test_store_visibility_reaches_the_batch_paths_and_score_profiles(
    sim: ShopSimulation, models: dict[str, P.PropensityModel], backend: str
) -> None:
    scorer = Scorer(views=ALL_VIEWS, backend=backend, max_future=None)
    scorer.ingest(sim.batch)
    names = sim.batch.interners.users.names
    active = np.bincount(sim.batch.user, minlength=len(names)) > 0
    consenting = np.flatnonzero(~opted_out_users(sim.batch) & active)
    api_out, forgotten = names[consenting[0]], names[consenting[1]]
    scorer.opt_out(api_out, at=sim.end_ms)
    assert scorer.forget(forgotten, at=sim.end_ms)
    hidden = opted_out_users(sim.batch)
    hidden[[consenting[0], consenting[1]]] = True
    for name, model in models.items():
        users, p = model.score_profiles(scorer, now=sim.end_ms, backend=backend)
        p_batch, seen = model.score_batch(sim.batch, sim.end_ms, backend=backend, visible=scorer)
        assert seen.tolist() == (~hidden & active).tolist(), name
        assert np.isnan(p_batch[hidden]).all()
        assert sorted(users) == sorted(names[c] for c in np.flatnonzero(~hidden & active))
        codes = [sim.batch.interners.users.lookup(u) for u in users]
        np.testing.assert_allclose(p, p_batch[codes], rtol=0, atol=1e-9)
        # A store passed to build_training_set hides the same users.
        data = P.build_training_set(sim.batch, "purchase", [sim.end_ms - 2 * WEEK], "2w", visible=scorer)
        assert not hidden[data.user].any()
    # A callable over the batch's ids does the same (ids without events are unknown to the store).
    shown = set(users)
    by_store = P.visible_users(sim.batch, scorer.store)
    assert by_store[~active].all()
    assert (by_store & active).tolist() == P.visible_users(
        sim.batch, lambda ids: [i in shown for i in ids]
    ).tolist()
    with pytest.raises(NowBeforeDataError):
        models["plain"].score_profiles(scorer.store, now=sim.end_ms - WEEK)


def test_forget_erases_the_users_rows_and_keys(sim: ShopSimulation, backend: str) -> None:
    store = _store(backend)
    store.ingest(sim.batch)
    view: PropensityView = store.view("propensity")
    saved = view.to_arrays()[1]
    buyers = np.intersect1d(saved["day.keys"] >> 32, saved["category.keys"] >> 32)
    code = int(buyers[0])  # keys in both tables
    name = store.interners.users.names[code]
    spec = P.FeatureSpec(order_days=True)
    before = view.features(sim.end_ms, spec)
    assert store.forget(name, at=sim.end_ms)
    _, arrays = store.to_container()
    for table in ("category.keys", "day.keys"):
        keys = arrays[f"propensity.{table}"]
        assert keys.shape[0] > 0 and not (keys >> 32 == code).any()
    record = arrays["propensity.records"][code]
    assert record["count"].sum() == 0 and record["acc"].sum() == 0.0 and record["total"].sum() == 0.0
    for column in ("channels", "refunds", "unsubscribes"):
        assert not arrays[f"propensity.{column}"][code].any()
    no_time = np.iinfo(np.int64).min
    assert arrays["propensity.last_use_ms"][code] == arrays["propensity.last_gone_ms"][code] == no_time
    after = view.features(sim.end_ms, spec)
    assert before.seen[code] and not after.seen[code]
    empty = PropensityView(backend=backend)
    empty.grow(1)
    assert after.X[code].tolist() == empty.features(sim.end_ms, spec).X[0].tolist()  # a blank row
    # The others' features do not move.
    rest = np.arange(store.n_users) != code
    np.testing.assert_array_equal(after.X[rest], before.X[rest])
    users, _ = P.PropensityModel.fit(
        P.build_training_set(sim.batch, "purchase", [sim.end_ms - 2 * WEEK], "2w", spec=spec)
    ).score_profiles(store, now=sim.end_ms)
    assert name not in users
