"""Live propensity: one user (or a few) scored from the profile store equals the batch path."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk.capture.events import CHANNELS, EVENT_TYPE_CODES
from affinity_sdk.errors import ConfigError
from affinity_sdk.ingest.batch import EventBatch, take_rows
from affinity_sdk.models import propensity as P
from affinity_sdk.profile.propensity_tables import KeyTable
from affinity_sdk.profile.propensity_view import PropensityView
from affinity_sdk.profile.store import NowBeforeDataError, ProfileStore
from affinity_sdk.score.scorer import Scorer
from affinity_sdk.sim.shop import ShopSimulation, simulate_shop

DAY = 86_400_000
WEEK = 7 * DAY
T0 = 1_704_067_200_000  # 2024-01-01
VIEWS = ("signals", "propensity")
#: Every feature the live path serves (all but BG/NBD), value-weighted order days included.
ORDER_DAYS = P.FeatureSpec(order_days=True, order_day_value_power=0.5)
SUBSET = P.FeatureSpec(order_days=True, columns=("log_gap_ratio", "category_concentration", "cart_decay_14d"))


@pytest.fixture(scope="module")
def sim() -> ShopSimulation:
    return simulate_shop(800, weeks=8, horizon_weeks=2, seed=5)


@pytest.fixture(scope="module")
def models(sim: ShopSimulation) -> dict[str, P.PropensityModel]:
    """One model per spec and calibration kind the live path must reproduce."""
    out = {}
    cutoffs = [sim.end_ms - 4 * WEEK, sim.end_ms - 2 * WEEK]
    for name, spec, calibration in (
        ("plain-platt", P.FeatureSpec(), "platt"),
        ("order-days-isotonic", ORDER_DAYS, "isotonic"),
        ("subset-uncalibrated", SUBSET, "none"),
    ):
        data = P.build_training_set(sim.batch, "purchase", cutoffs, "2w", spec=spec)
        out[name] = P.PropensityModel.fit(data, calibration=calibration)  # type: ignore[arg-type]
    assert {m.calibrator_.kind for m in out.values()} == {"platt", "isotonic", "none"}
    return out


def _random_lines(rng: np.random.Generator, n: int, n_users: int = 20) -> list[bytes]:
    """Random valid events of every kind the features read (orders with products, consent, app)."""
    kinds = [
        "page_viewed",
        "product_viewed",
        "product_added",
        "cart_viewed",
        "checkout_started",
        "order_completed",
        "order_completed",
        "order_refunded",
        "email_opened",
        "push_opened",
        "unsubscribed",
        "app_installed",
        "app_opened",
        "app_uninstalled",
        "consent_changed",
    ]

    def product() -> dict[str, Any]:
        return {
            "product_id": f"p{rng.integers(30)}",
            "category": f"c{rng.integers(6)}",
            "brand": "b",
            "price": 9.5,
        }

    lines = []
    for i in range(n):
        kind = kinds[rng.integers(len(kinds))]
        event: dict[str, Any] = {
            "type": kind,
            "user_id": f"u{rng.integers(n_users)}",
            "timestamp": int(T0 + rng.integers(0, 90 * DAY)),
            "event_id": f"e{i}",
        }
        if rng.random() < 0.6:
            event["channel"] = CHANNELS[rng.integers(len(CHANNELS))]
        if kind in ("product_viewed", "product_added"):
            event["product"] = product()
        elif kind in ("cart_viewed", "checkout_started", "order_completed"):
            event["products"] = [product() for _ in range(rng.integers(0, 4))]
        if kind in ("order_completed", "order_refunded"):
            event["order_id"] = f"o{i}"
            event["revenue"] = float(rng.integers(0, 30_000)) / 100
        if kind == "consent_changed":
            event["granted"] = bool(rng.random() < 0.6)
        lines.append(msgspec.json.encode(event))
    return lines


def _assert_live_equals_batch(
    model: P.PropensityModel, scorer: Scorer, batch: EventBatch, now_ms: int, backend: str
) -> None:
    """predict_user, predict_users and score_profiles against score_batch, for every batch user."""
    p_batch, seen = model.score_batch(batch, now_ms, backend=backend)
    names = list(batch.interners.users.names)
    single = np.array([model.predict_user(scorer, name, now_ms) for name in names])
    many = model.predict_users(scorer, names, now_ms, backend=backend)
    assert np.isnan(single).tolist() == (~seen).tolist()
    assert np.isnan(many).tolist() == (~seen).tolist()
    np.testing.assert_allclose(single[seen], p_batch[seen], rtol=0, atol=1e-9)
    np.testing.assert_allclose(many[seen], p_batch[seen], rtol=0, atol=1e-9)
    users, p_store = model.score_profiles(scorer, now_ms, backend=backend)
    codes = [names.index(u) for u in users]
    np.testing.assert_allclose(single[codes], p_store, rtol=0, atol=1e-9)


# --- equal to the batch path --------------------------------------------------------------------
def test_one_event_at_a_time_equals_the_batch_on_random_streams(
    models: dict[str, P.PropensityModel], backend: str
) -> None:
    rng = np.random.default_rng(20261207)
    for _ in range(2):
        lines = _random_lines(rng, 250)
        batch = EventBatch.from_ndjson(b"\n".join(lines))
        scorer = Scorer(views=VIEWS, backend=backend, max_future=None)
        for line in lines:
            scorer.ingest(line)
        newest = int(batch.ts_ms.max())
        # Some users revoked consent in the stream: they get NaN in both paths.
        assert not P.visible_users(batch).all()
        for model in models.values():
            for now_ms in (newest, newest + 5 * DAY):
                _assert_live_equals_batch(model, scorer, batch, now_ms, backend)


def test_large_batches_then_single_events_on_the_simulator(
    sim: ShopSimulation, models: dict[str, P.PropensityModel], backend: str
) -> None:
    """A large ingest leaves a pending run in the view's tables, single events small adds: the
    live read finds both without merging the tables."""
    scorer = Scorer(views=VIEWS, backend=backend, max_future=None)
    last_days = np.flatnonzero(sim.batch.ts_ms >= sim.end_ms - 2 * DAY)
    early = np.ones(len(sim.batch), dtype=bool)
    early[last_days] = False
    scorer.ingest(take_rows(sim.batch, early))
    for i in last_days.tolist():
        scorer.ingest(take_rows(sim.batch, np.arange(len(sim.batch)) == i))
    view: PropensityView = scorer.store.view("propensity")
    assert view.category_table.pending and view.category_table.recent and view.day_table.recent
    for model in models.values():
        _assert_live_equals_batch(model, scorer, sim.batch, sim.end_ms, backend)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), parts=st.integers(1, 40), later_days=st.integers(0, 60))
def test_any_split_of_the_stream_gives_the_batch_numbers(seed: int, parts: int, later_days: int) -> None:
    rng = np.random.default_rng(seed)
    lines = _random_lines(rng, 120, n_users=8)
    batch = EventBatch.from_ndjson(b"\n".join(lines))
    scorer = Scorer(views=VIEWS, backend="reference", max_future=None)
    for chunk in np.array_split(np.arange(len(lines)), parts):
        if chunk.shape[0]:
            scorer.ingest(b"\n".join(lines[i] for i in chunk.tolist()))
    model = _stream_model()
    _assert_live_equals_batch(model, scorer, batch, int(batch.ts_ms.max()) + later_days * DAY, "reference")


_STREAM_MODEL: list[P.PropensityModel] = []


def _stream_model() -> P.PropensityModel:
    """A fitted order-days model (fitted once; hypothesis examples cannot take fixtures)."""
    if not _STREAM_MODEL:
        sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        data = P.build_training_set(sim.batch, "purchase", [sim.end_ms - WEEK], "1w", spec=ORDER_DAYS)
        _STREAM_MODEL.append(P.PropensityModel.fit(data, calibration="isotonic"))
    return _STREAM_MODEL[0]


# --- who gets a probability --------------------------------------------------------------------
def test_hidden_unknown_and_eventless_users_get_nan(
    sim: ShopSimulation, models: dict[str, P.PropensityModel], backend: str
) -> None:
    scorer = Scorer(views=VIEWS, backend=backend, max_future=None)
    scorer.ingest(sim.batch)
    model = models["plain-platt"]
    _, seen = model.score_batch(sim.batch, sim.end_ms, backend=backend)
    names = sim.batch.interners.users.names
    shown = np.flatnonzero(seen)
    out_id, forgotten, kept = names[shown[0]], names[shown[1]], names[shown[2]]
    assert not math.isnan(model.predict_user(scorer, out_id, sim.end_ms))
    scorer.opt_out(out_id, at=sim.end_ms)
    assert scorer.forget(forgotten, at=sim.end_ms)
    scorer.store.opt_out("no-events-yet", at=sim.end_ms)
    scorer.store.opt_in("no-events-yet", at=sim.end_ms + 1)  # visible, but nothing to score
    for user in (out_id, forgotten, "never-seen", "no-events-yet"):
        assert math.isnan(model.predict_user(scorer, user, sim.end_ms + 1)), user
    p = model.predict_users(scorer, [out_id, kept, "never-seen", forgotten, "no-events-yet"], sim.end_ms + 1)
    assert np.isnan(p).tolist() == [True, False, True, True, True]
    assert abs(p[1] - model.predict_user(scorer, kept, sim.end_ms + 1)) < 1e-9
    # A store with no profile at all.
    empty = ProfileStore(views=("propensity",), backend=backend)
    assert math.isnan(model.predict_user(empty, "a")) and np.isnan(model.predict_users(empty, ["a"])).all()


def test_identity_links_score_the_merged_profile(models: dict[str, P.PropensityModel], backend: str) -> None:
    rng = np.random.default_rng(4)
    lines = _random_lines(rng, 200, n_users=6)
    scorer = Scorer(views=VIEWS, backend=backend, max_future=None)
    for line in lines:
        scorer.ingest(line)
    assert scorer.identify("u1", "u2")
    # The same events with u1 written as u2: one person from the start.
    merged = EventBatch.from_ndjson(b"\n".join(lines).replace(b'"u1"', b'"u2"'))
    for model in models.values():
        p_batch, seen = model.score_batch(merged, scorer.latest_ms, backend=backend)
        code = merged.interners.users.lookup("u2")
        assert code is not None
        if seen[code]:
            for user in ("u1", "u2"):
                assert abs(model.predict_user(scorer, user) - p_batch[code]) < 1e-9
            np.testing.assert_allclose(
                model.predict_users(scorer, ["u1", "u2"]), [p_batch[code]] * 2, rtol=0, atol=1e-9
            )


# --- refusals, refits, state files ----------------------------------------------------------------
def test_refusals(sim: ShopSimulation, models: dict[str, P.PropensityModel]) -> None:
    scorer = Scorer(views=VIEWS, backend="reference", max_future=None)
    scorer.ingest(sim.batch)
    user = sim.batch.interners.users.names[0]
    bgnbd = P.PropensityModel.fit(
        P.build_training_set(
            sim.batch, "purchase", [sim.end_ms - 2 * WEEK], "2w", spec=P.FeatureSpec(bgnbd=True)
        )
    )
    other = P.PropensityModel.fit(
        P.build_training_set(
            sim.batch, "purchase", [sim.end_ms - 2 * WEEK], "2w", spec=P.FeatureSpec(half_lives=("7d", "28d"))
        )
    )
    for model, error, match in (
        (bgnbd, ConfigError, "BG/NBD"),
        (other, ConfigError, r"half-lives \['14d', '56d'\]; the model needs \['7d', '28d'\]"),
    ):
        with pytest.raises(error, match=match):
            model.predict_user(scorer, user)
        with pytest.raises(error, match=match):
            model.predict_users(scorer, [user])
    model = models["plain-platt"]
    with pytest.raises(NowBeforeDataError):
        model.predict_user(scorer, user, sim.end_ms - WEEK)
    with pytest.raises(NowBeforeDataError):
        model.predict_users(scorer, [user, "never-seen"], sim.end_ms - WEEK)
    with pytest.raises(NowBeforeDataError):
        model.predict_users(scorer, ["never-seen"], sim.end_ms - WEEK)
    with pytest.raises(KeyError, match="no 'propensity' view"):
        model.predict_user(Scorer(), user)


def test_a_refit_is_picked_up_and_reads_do_not_merge_the_tables(sim: ShopSimulation) -> None:
    spec = P.FeatureSpec(order_days=True)
    old = P.build_training_set(sim.batch, "purchase", [sim.end_ms - 4 * WEEK], "2w", spec=spec)
    new = P.build_training_set(sim.batch, "purchase", [sim.end_ms - 2 * WEEK], "2w", spec=spec)
    model = P.PropensityModel.fit(old)
    scorer = Scorer(views=VIEWS, backend="reference", max_future=None)
    scorer.ingest(sim.batch)
    names = sim.batch.interners.users.names
    buyer = names[int(sim.batch.user[sim.batch.event_type == EVENT_TYPE_CODES["order_completed"]][0])]
    scorer.ingest(
        msgspec.json.encode(
            {
                "type": "order_completed",
                "user_id": buyer,
                "timestamp": sim.end_ms,
                "order_id": "live-1",
                "revenue": 25.0,
                "products": [{"product_id": "x", "category": "new-cat", "brand": "b", "price": 25.0}],
            }
        )
    )
    view: PropensityView = scorer.store.view("propensity")
    before = model.predict_user(scorer, buyer)
    assert view.category_table.recent and view.day_table.recent  # the read merged nothing
    model.refit(new)
    after = model.predict_user(scorer, buyer)
    users, p = model.score_profiles(scorer)
    assert after != before
    assert abs(after - p[users.index(buyer)]) < 1e-9


def test_saved_loaded_and_merged_stores_predict_the_same(
    sim: ShopSimulation, models: dict[str, P.PropensityModel], tmp_path: Path
) -> None:
    halves = sim.batch.user % 2 == 0
    a = Scorer(views=VIEWS, backend="reference", max_future=None)
    b = Scorer(views=VIEWS, backend="reference", max_future=None)
    a.ingest(take_rows(sim.batch, halves))
    b.ingest(take_rows(sim.batch, ~halves))
    a.merge(b)
    a.save(tmp_path / "state.bin")
    again = Scorer.load(tmp_path / "state.bin", backend="reference")
    model = models["order-days-isotonic"]
    names = list(sim.batch.interners.users.names)
    p_batch, seen = model.score_batch(sim.batch, sim.end_ms, backend="reference")
    for scorer in (a, again):
        live = model.predict_users(scorer, names, sim.end_ms)
        np.testing.assert_allclose(live[seen], p_batch[seen], rtol=0, atol=1e-9)
        one = [model.predict_user(scorer, n, sim.end_ms) for n in names[:50]]
        np.testing.assert_allclose(one, live[:50], rtol=0, atol=1e-9)


# --- the view's key tables, read per profile --------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    adds=st.lists(
        st.lists(st.tuples(st.integers(0, 6), st.integers(0, 4), st.integers(1, 3)), max_size=80),
        max_size=8,
    ),
    merge_at=st.integers(0, 8),
)
def test_key_table_reads_per_profile_equal_a_dict(
    adds: list[list[tuple[int, int, int]]], merge_at: int
) -> None:
    """Small adds (a dict per profile), large ones (pending runs) and merges: every per-profile
    read sees the same sums as a plain dict of everything added."""
    table = KeyTable(2)
    want: dict[tuple[int, int], list[float]] = {}
    for k, rows in enumerate(adds):
        if k == merge_at:
            table.compact()
        keys = np.array([(p << 32) | v for p, v, _ in rows], dtype=np.int64)
        values = np.array([[float(c), 1.0] for _, _, c in rows]).reshape(-1, 2)
        table.add(keys, values)
        for p, v, c in rows:
            old = want.get((p, v), [0.0, 0.0])
            want[p, v] = [old[0] + c, old[1] + 1.0]
    profiles = np.array([3, 0, 9, 3, 6], dtype=np.int64)
    keys, values = table.take(profiles)
    taken: dict[tuple[int, int], list[float]] = {}
    for key, row in zip(keys.tolist(), values.tolist(), strict=True):
        old = taken.get((key >> 32, key & 0xFFFFFFFF), [0.0, 0.0])
        taken[key >> 32, key & 0xFFFFFFFF] = [old[0] + row[0], old[1] + row[1]]
    for i, p in enumerate(profiles.tolist()):
        mine = {v: s for (q, v), s in want.items() if q == p}
        assert table.entries_of(p) == mine
        assert sorted(table.column_of(p, 0)) == sorted(s[0] for s in mine.values())
        assert {v: s for (r, v), s in taken.items() if r == i} == mine
