"""The engagement view: stream = batch = merge of shards (exact), replays, forget, save / load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from affinity_sdk.errors import StateError
from affinity_sdk.profile.engagement_view import EngagementView, hour_of_week
from affinity_sdk.profile.store import ProfileStore

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC, a Thursday
TYPES = ("message_sent", "message_delivered", "message_opened", "message_clicked")
MEDIA = ("email", "sms", "push", "in_app")


def make_events(seed: int, n: int = 400) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    events: list[dict[str, object]] = []
    for i in range(n):
        event: dict[str, object] = {
            "type": TYPES[int(rng.integers(4))],
            "user_id": f"u{int(rng.integers(12))}",
            "timestamp": T0 + int(rng.integers(0, 40 * 86_400_000)),
            "medium": MEDIA[int(rng.integers(4))],
            "event_id": f"e{seed}-{i}",
        }
        events.append(event)
    events.append({"type": "email_opened", "user_id": "u1", "timestamp": T0 + 5, "event_id": f"x{seed}"})
    return events


def ndjson(events: list[dict[str, object]]) -> bytes:
    return "\n".join(json.dumps(e) for e in events).encode()


def new_store() -> ProfileStore:
    return ProfileStore(views=("signals", "engagement"), backend="reference")


def tables(store: ProfileStore) -> dict[str, dict[tuple[str, int], np.ndarray]]:
    """Each table by (user id, value), with decayed columns taken to one common time."""
    view: EngagementView = store.view("engagement")
    names = store.interners.users.names
    now = T0 + 100 * 86_400_000
    out: dict[str, dict[tuple[str, int], np.ndarray]] = {}
    users, media, acc = view.media_table()
    f = view.factor(now)
    out["media"] = {
        (names[u], m): a * ([f] * 4 + [f * f] * 4) for u, m, a in zip(users, media, acc, strict=True)
    }
    users, hours, w = view.hour_table()
    out["hours"] = {
        (names[u], h): x * [view.factor(now), view.factor(now) ** 2]
        for u, h, x in zip(users, hours, w, strict=True)
    }
    users, media, days, counts = view.send_table()
    out["sends"] = {
        (names[u], int(d) * 8 + int(m)): c for u, m, d, c in zip(users, media, days, counts, strict=True)
    }
    return out


def assert_same(a: ProfileStore, b: ProfileStore) -> None:
    ta, tb = tables(a), tables(b)
    for name in ta:
        assert ta[name].keys() == tb[name].keys(), name
        for key, value in ta[name].items():
            np.testing.assert_allclose(value, tb[name][key], rtol=1e-12, err_msg=f"{name} {key}")


def test_stream_equals_batch_equals_merge() -> None:
    events = make_events(1)
    batch = new_store()
    batch.ingest(ndjson(events))
    stream = new_store()
    for event in reversed(events):
        stream.ingest(ndjson([event]))
    assert_same(batch, stream)
    left, right = new_store(), new_store()
    left.ingest(ndjson(events[::2]))
    right.ingest(ndjson(events[1::2]))
    assert_same(batch, left.merge(right))


def test_replay_and_overlapping_shards_count_once() -> None:
    events = make_events(2)
    once = new_store()
    once.ingest(ndjson(events))
    twice = new_store()
    twice.ingest(ndjson(events))
    twice.ingest(ndjson(events[:50]))
    assert_same(once, twice)
    left, right = new_store(), new_store()
    left.ingest(ndjson(events[:300]))
    right.ingest(ndjson(events[200:]))  # 100 events in both shards
    assert_same(once, left.merge(right))


def test_counts_per_medium_hour_and_day() -> None:
    store = new_store()
    store.ingest(
        ndjson(
            [
                {"type": "message_sent", "user_id": "a", "timestamp": T0, "medium": "sms"},
                {"type": "message_clicked", "user_id": "a", "timestamp": T0 + 3_600_000, "medium": "sms"},
                {"type": "push_opened", "user_id": "a", "timestamp": T0 + 3_600_000},
                {"type": "page_viewed", "user_id": "a", "timestamp": T0},
            ]
        )
    )
    view: EngagementView = store.view("engagement")
    now = T0 + 3_600_000
    counts = view.media_counts(0, now)
    half = 0.5 ** (1 / (60 * 24))  # an hour at a 60-day half-life
    np.testing.assert_allclose(counts[1], [half, 0, 0, 1], rtol=1e-12)
    np.testing.assert_allclose(counts[2], [0, 0, 1, 0], rtol=1e-12)
    _, hours, _ = view.hour_table()
    assert hours.tolist() == [3 * 24 + 1]  # Thursday 01:00 UTC, both engagements
    _, media, days, sends = view.send_table()
    assert media.tolist() == [1] and days.tolist() == [T0 // 86_400_000] and sends.tolist() == [[1.0, 0.0]]


def test_hour_of_week_starts_monday() -> None:
    monday = T0 + 4 * 86_400_000  # 2026-01-05
    assert hour_of_week(np.array([monday, monday - 1, T0 + 13 * 3_600_000])).tolist() == [0, 167, 85]


def test_forget_erases_every_table() -> None:
    store = new_store()
    store.ingest(ndjson(make_events(3)))
    store.forget("u1")
    assert all(user != "u1" for table in tables(store).values() for user, _ in table)


def test_old_send_days_are_dropped_in_any_order() -> None:
    early = {"type": "message_sent", "user_id": "a", "timestamp": T0, "medium": "email"}
    late = {"type": "message_sent", "user_id": "a", "timestamp": T0 + 200 * 86_400_000, "medium": "email"}
    one, two = new_store(), new_store()
    one.ingest(ndjson([early]))
    one.ingest(ndjson([late]))
    two.ingest(ndjson([late]))
    two.ingest(ndjson([early]))
    assert_same(one, two)
    assert len(tables(one)["sends"]) == 1


def test_save_load_round_trip_and_foreign_state(tmp_path: Path) -> None:
    store = new_store()
    store.ingest(ndjson(make_events(4)))
    view: EngagementView = store.view("engagement")
    header, arrays = view.to_arrays()
    copy = EngagementView(backend="reference")
    copy.load_arrays(header, arrays, store.n_users)
    for a, b in zip(view._tables(), copy._tables(), strict=True):
        np.testing.assert_array_equal(a.keys, b.keys)
        np.testing.assert_array_equal(a.acc, b.acc)
    with pytest.raises(StateError):
        EngagementView(half_life="30d").load_arrays(header, arrays, store.n_users)
    bad = dict(arrays, media_acc=-arrays["media_acc"] - 1)
    with pytest.raises(StateError):
        EngagementView().load_arrays(header, bad, store.n_users)


def test_scorer_save_load_keeps_the_view(tmp_path: Path) -> None:
    from affinity_sdk.score.scorer import Scorer

    scorer = Scorer(views=("signals", "engagement"), backend="reference")
    scorer.ingest(ndjson(make_events(5)))
    path = scorer.save(tmp_path / "state.bin")
    loaded = Scorer.load(path, backend="reference")
    assert_same(scorer.store, loaded.store)


def test_identity_link_adds_the_rows() -> None:
    events = make_events(6)
    renamed = [dict(e, user_id="u0") if e["user_id"] == "u1" else e for e in events]
    linked, single = new_store(), new_store()
    linked.ingest(ndjson(events))
    linked.link("u1", into="u0")
    single.ingest(ndjson(renamed))
    assert_same(linked, single)
