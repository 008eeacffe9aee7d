"""The engagement view: stream = batch = merge of shards (exact), replays, forget, save / load,
conversions, WhatsApp on every reader, identity folds."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affinity_sdk.capture import events as ev
from affinity_sdk.errors import StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.profile.engagement_view import ACTIONS, EngagementView, hour_of_week
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.profile.views import RowFolding

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC, a Thursday
TYPES = ("message_sent", "message_delivered", "message_opened", "message_clicked")
MEDIA = ("email", "sms", "push", "in_app", "whatsapp")
#: Order channels: the message media convert, app / web / store do not.
ORDER_CHANNELS = ("email", "sms", "push", "whatsapp", "app", "web", "store")
W = len(ACTIONS)


def order(user: str, ts: int, channel: str | None, event_id: str | None = None) -> dict[str, object]:
    event: dict[str, object] = {
        "type": "order_completed",
        "user_id": user,
        "timestamp": ts,
        "order_id": f"o-{user}-{ts}",
        "products": [],
        "revenue": 10.0,
    }
    if channel is not None:
        event["channel"] = channel
    if event_id is not None:
        event["event_id"] = event_id
    return event


def make_events(seed: int, n: int = 400) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    events: list[dict[str, object]] = []
    for i in range(n):
        user = f"u{int(rng.integers(12))}"
        ts = T0 + int(rng.integers(0, 40 * 86_400_000))
        if rng.random() < 0.15:
            events.append(
                order(user, ts, ORDER_CHANNELS[int(rng.integers(len(ORDER_CHANNELS)))], f"e{seed}-{i}")
            )
            continue
        event: dict[str, object] = {
            "type": TYPES[int(rng.integers(4))],
            "user_id": user,
            "timestamp": ts,
            "medium": MEDIA[int(rng.integers(len(MEDIA)))],
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
        (names[u], m): a * ([f] * W + [f * f] * W) for u, m, a in zip(users, media, acc, strict=True)
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
    np.testing.assert_allclose(counts[1], [half, 0, 0, 1, 0], rtol=1e-12)
    np.testing.assert_allclose(counts[2], [0, 0, 1, 0, 0], rtol=1e-12)
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


def test_conversions_count_orders_on_message_media_only() -> None:
    store = new_store()
    events = [order("a", T0 + i, channel) for i, channel in enumerate(ORDER_CHANNELS)]
    events += [order("a", T0 + 100, None), order("a", T0 + 101, "email")]
    events.append({"type": "message_opened", "user_id": "a", "timestamp": T0, "medium": "whatsapp"})
    store.ingest(ndjson(events))
    view: EngagementView = store.view("engagement")
    counts = view.media_counts(0)  # at the landmark: weights exp(λ (t - L)), t within 101 ms of T0
    converted = counts[:, ACTIONS.index("converted")]
    weight = np.exp(view.lam * (np.array([0, 1, 2, 3, 101]) + T0 - view.landmark_ms))
    expected = {"email": weight[0] + weight[4], "sms": weight[1], "push": weight[2], "whatsapp": weight[3]}
    for m, name in enumerate(MEDIA):
        assert converted[m] == pytest.approx(expected.get(name, 0.0), rel=1e-12), name
    # WhatsApp engagement is its own medium, never SMS
    assert counts[MEDIA.index("whatsapp"), ACTIONS.index("opened")] > 0
    assert counts[MEDIA.index("sms"), ACTIONS.index("opened")] == 0
    _, hours, _ = view.hour_table()
    assert hours.tolist() == [3 * 24]  # the open only: orders are not engagements by the hour
    _, _, _, sends = view.send_table()
    assert sends.shape[0] == 0  # nor messages received


message_st = st.tuples(
    st.sampled_from((*TYPES, "order_completed")),
    st.sampled_from(("a", "b", "c")),
    st.integers(0, 30 * 24),  # hour after T0
    st.sampled_from(MEDIA),
    st.sampled_from(ORDER_CHANNELS),
)


def _message_events(draws: list[tuple[str, str, int, str, str]]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i, (kind, user, hour, medium, channel) in enumerate(draws):
        ts = T0 + hour * 3_600_000 + i
        if kind == "order_completed":
            out.append(order(user, ts, channel, f"h{i}"))
        else:
            out.append(
                {"type": kind, "user_id": user, "timestamp": ts, "medium": medium, "event_id": f"h{i}"}
            )
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draws=st.lists(message_st, min_size=1, max_size=30), cut=st.integers(0, 30))
def test_stream_equals_batch_equals_two_shard_merge_with_conversions(
    draws: list[tuple[str, str, int, str, str]], cut: int
) -> None:
    events = _message_events(draws)
    batch = new_store()
    batch.ingest(ndjson(events))
    stream = new_store()
    for event in events[::-1]:
        stream.ingest(ndjson([event]))
    assert_same(batch, stream)
    left, right = new_store(), new_store()
    if events[:cut]:
        left.ingest(ndjson(events[:cut]))
    if events[cut:]:
        right.ingest(ndjson(events[cut:]))
    assert_same(batch, left.merge(right))


WHATSAPP_EVENTS = [
    ev.MessageDelivered(user_id="w", timestamp=T0, medium="whatsapp"),
    ev.MessageOpened(user_id="w", timestamp=T0 + 1, medium="whatsapp"),
    ev.MessageClicked(user_id="w", timestamp=T0 + 2, medium="sms", channel="sms"),
    ev.OrderCompleted(
        user_id="w", timestamp=T0 + 3, order_id="o1", products=[], revenue=5.0, channel="whatsapp"
    ),
    ev.ConsentChanged(user_id="w", timestamp=T0 + 4, granted=False, medium="whatsapp"),
]


def _arrow_table() -> object:
    pa = pytest.importorskip("pyarrow")
    return pa.table(
        {
            "type": [
                "message_delivered",
                "message_opened",
                "message_clicked",
                "order_completed",
                "consent_changed",
            ],
            "user_id": ["w"] * 5,
            "timestamp": [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4],
            # messages without a channel: their medium sets it, as event_channel does
            "channel": [None, None, "sms", "whatsapp", None],
            "medium": ["whatsapp", "whatsapp", "sms", None, "whatsapp"],
            "revenue": [None, None, None, 5.0, None],
            "granted": [None, None, None, None, False],
        }
    )


def _batches() -> dict[str, EventBatch]:
    import msgspec

    data = b"\n".join(msgspec.json.encode(e) for e in WHATSAPP_EVENTS)
    out = {
        "struct": EventBatch.from_events(WHATSAPP_EVENTS),
        "ndjson-python": EventBatch.from_ndjson(data, reader="python"),
        "arrow": EventBatch.from_arrow(_arrow_table()),
    }
    from affinity_sdk.ingest.batch import native

    if native() is not None:
        out["ndjson-native"] = EventBatch.from_ndjson(data, reader="native")
    return out


def test_whatsapp_stays_apart_from_sms_on_every_reader() -> None:
    batches = _batches()
    whatsapp = ev.CHANNELS.index("whatsapp")
    assert whatsapp == len(ev.CHANNELS) - 1 and ev.CHANNELS[:6] == (
        "web",
        "app",
        "email",
        "sms",
        "push",
        "store",
    )
    want = batches["struct"]
    assert want.channel.tolist() == [whatsapp, whatsapp, ev.CHANNELS.index("sms"), whatsapp, 0]
    for name, batch in batches.items():
        np.testing.assert_array_equal(batch.channel, want.channel, err_msg=name)
        np.testing.assert_array_equal(batch.consent, want.consent, err_msg=name)
        view = EngagementView(backend="reference")
        view.fold(batch)
        counts = view.media_counts(0)
        w, s = MEDIA.index("whatsapp"), MEDIA.index("sms")
        assert counts[w].tolist() == pytest.approx([0, 1, 1, 0, 1], rel=1e-9), name
        assert counts[s].tolist() == pytest.approx([0, 0, 0, 1, 0], rel=1e-9), name


def test_native_reader_parses_a_whatsapp_channel_itself() -> None:
    from affinity_sdk.ingest.batch import native

    mod = native()
    if mod is None:
        pytest.skip("the compiled extension is not built")
    line = json.dumps(order("w", T0, "whatsapp")).encode()
    out = mod.read_ndjson(line)
    assert list(out["status"]) == [0]  # parsed in C++, not handed to msgspec
    assert list(out["channel"]) == [ev.CHANNELS.index("whatsapp")]


def test_pandas_frame_keeps_whatsapp() -> None:
    pd = pytest.importorskip("pandas")
    from affinity_sdk.ingest.frames import frame_batch

    table = _arrow_table()
    frame = pd.DataFrame(table.to_pydict())  # type: ignore[attr-defined]
    batch = frame_batch(frame)
    np.testing.assert_array_equal(batch.channel, _batches()["struct"].channel)


def _linked_stores(whole: bool) -> ProfileStore:
    store = new_store()
    if whole:  # the earlier path: each view's merge_rows into itself, then erase
        store._fold_profile = partial(store._fold_profile, whole=True)  # type: ignore[method-assign]
    return store


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.lists(message_st, min_size=1, max_size=25),
    then=st.lists(message_st, max_size=10),
    links=st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("abc")), min_size=1, max_size=3),
)
def test_link_via_fold_row_equals_the_whole_state_merge(
    first: list[tuple[str, str, int, str, str]],
    then: list[tuple[str, str, int, str, str]],
    links: list[tuple[str, str]],
) -> None:
    assert isinstance(EngagementView(backend="reference"), RowFolding)  # link takes the one-row path
    got, want = _linked_stores(whole=False), _linked_stores(whole=True)
    later = [dict(e, event_id=f"t{e['event_id']}") for e in _message_events(then)]
    for store in (got, want):
        store.ingest(ndjson(_message_events(first)))
        for source, target in links:
            store.link(source, into=target)
        if later:
            store.ingest(ndjson(later))
    assert_same(got, want)
    got_header, got_arrays = got.view("engagement").to_arrays()
    want_header, want_arrays = want.view("engagement").to_arrays()
    assert got_header == want_header
    for key, value in want_arrays.items():
        np.testing.assert_allclose(got_arrays[key], value, rtol=1e-12, err_msg=key)


def test_format_1_state_loads_without_conversions() -> None:
    store = new_store()
    store.ingest(ndjson(make_events(7)))
    view: EngagementView = store.view("engagement")
    header, arrays = view.to_arrays()
    converted = ACTIONS.index("converted")
    old_acc = np.delete(arrays["media_acc"], [converted, W + converted], axis=1)
    old = EngagementView(backend="reference")
    old.load_arrays(dict(header, format=1), dict(arrays, media_acc=old_acc), store.n_users)
    _, _, acc = old.media_table()
    np.testing.assert_array_equal(np.delete(acc, [converted, W + converted], axis=1), old_acc)
    assert not acc[:, [converted, W + converted]].any()
    with pytest.raises(StateError):
        EngagementView().load_arrays(dict(header, format=3), arrays, store.n_users)
