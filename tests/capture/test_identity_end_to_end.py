"""Issue 15's first Done-when: a Segment stream of anonymous then identified activity, sent by the
real ``segment-analytics-python`` client to a local HTTP server, scores exactly as the union under
the known id: stream = batch = Dask, every backend, any arrival order of the identify.

Visitors browse and cart anonymously, sign in (``identify`` with traits, or an ``alias``), then
shop under their known id; others stay anonymous or are known from the start. The recorded
``/v1/batch`` bodies are ingested call by call (stream), all at once (batch) and through
``score_dataset`` on Dask (the track calls as a Parquet lake, the identify / alias calls as
``links``), and each is compared with one ``Scorer`` fed the same events renamed to the known ids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from affinity_sdk import Scorer
from affinity_sdk.capture.events import Event
from affinity_sdk.capture.segment_adapter import from_segment, parse_segment
from affinity_sdk.ingest.batch import EventBatch

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
#: anonymous id -> the known id its identify (or alias) links it into
KNOWN = {"anon-ann": "ann", "anon-bob": "bob", "device-bob": "bob"}
SHOES = {"product_id": "p1", "category": "shoes", "brand": "acme", "price": 59.0}
HAT = {"product_id": "p2", "category": "hats", "brand": "zed", "price": 19.5}

Call = tuple[str, dict[str, Any]]  # (client method, keyword arguments)


def _activity(seed: int) -> tuple[list[Call], list[Call], list[Call]]:
    """(anonymous calls, identity calls, known calls) for a few visitors, seeded."""
    rng = np.random.default_rng(seed)
    clock = iter(T0 + timedelta(minutes=int(m)) for m in np.sort(rng.choice(5_000, 60, replace=False)))
    anonymous: list[Call] = []
    for anon in ("anon-ann", "anon-bob", "device-bob", "anon-zoe"):  # anon-zoe never signs in
        for _ in range(int(rng.integers(2, 5))):
            event = ("Product Viewed", "Product Added")[int(rng.integers(2))]
            product = (SHOES, HAT)[int(rng.integers(2))]
            anonymous.append(
                (
                    "track",
                    {"anonymous_id": anon, "event": event, "properties": product, "timestamp": next(clock)},
                )
            )
        anonymous.append(("page", {"anonymous_id": anon, "name": "home", "timestamp": next(clock)}))
    identity: list[Call] = [
        (
            "identify",
            {
                "user_id": "ann",
                "anonymous_id": "anon-ann",
                "traits": {"plan": "gold", "email": "Ann@Shop.example"},
                "timestamp": next(clock),
            },
        ),
        (
            "identify",
            {
                "user_id": "bob",
                "anonymous_id": "anon-bob",
                "traits": {"plan": "free"},
                "timestamp": next(clock),
            },
        ),
        ("alias", {"previous_id": "device-bob", "user_id": "bob", "timestamp": next(clock)}),
    ]
    known: list[Call] = []
    for user in ("ann", "bob", "cleo"):  # cleo is known from the start
        for _ in range(int(rng.integers(1, 4))):
            known.append(
                (
                    "track",
                    {"user_id": user, "event": "Product Viewed", "properties": HAT, "timestamp": next(clock)},
                )
            )
        order = {
            "order_id": f"o-{user}",
            "revenue": float(rng.integers(20, 200)),
            "products": [{**SHOES, "quantity": 1}],
        }
        known.append(
            (
                "track",
                {"user_id": user, "event": "Order Completed", "properties": order, "timestamp": next(clock)},
            )
        )
    return anonymous, identity, known


def _arrange(position: str, seed: int) -> list[Call]:
    anonymous, identity, known = _activity(seed)
    if position == "first":
        return [*identity, *anonymous, *known]
    if position == "middle":
        return [*anonymous, *identity, *known]
    if position == "last":
        return [*anonymous, *known, *identity]
    calls = [*anonymous, *identity, *known]  # "shuffled": any arrival order of everything
    return [calls[i] for i in np.random.default_rng(seed + 1).permutation(len(calls))]


def _send(client: Any, calls: list[Call], bodies: list[bytes]) -> list[dict[str, Any]]:
    """Send ``calls`` with the real client; the calls as the server received them, in order."""
    for method, kwargs in calls:
        getattr(client, method)(**kwargs)
    client.flush()
    received = [call for body in bodies for call in parse_segment(body)["batch"]]
    assert len(received) == len(calls)
    return received


def _union(received: list[dict[str, Any]], backend: str) -> Scorer:
    """Every event under the known id, in one Scorer (the expected result)."""
    events: list[Event] = list(from_segment(received, unknown_types="skip"))
    renamed = [msgspec.structs.replace(e, user_id=KNOWN.get(e.user_id, e.user_id)) for e in events]
    union = Scorer(backend=backend)
    union.ingest(renamed)
    return union


def _table(result: Any) -> dict[str, tuple[float, str]]:
    return {
        user: (raw, tier)
        for user, raw, tier in zip(result.user_ids, result.raw_score.tolist(), result.tier, strict=True)
    }


def _assert_same(got: dict[str, tuple[float, str]], want: dict[str, tuple[float, str]]) -> None:
    assert sorted(got) == sorted(want) == ["ann", "anon-zoe", "bob", "cleo"]
    for user, (raw, tier) in want.items():
        assert got[user][0] == pytest.approx(raw, rel=1e-12, abs=1e-300), user
        assert got[user][1] == tier, user


def _client(kind: str, host: str) -> Any:
    if kind == "segment":
        analytics = pytest.importorskip("segment.analytics")
        return analytics.Client("test-key", host=host, sync_mode=True, max_retries=0)
    rudder = pytest.importorskip("rudderstack.analytics.client", reason="rudder-sdk-python is not installed")
    return rudder.Client("test-key", host=host, sync_mode=True, max_retries=0)


@pytest.mark.parametrize("client_kind", ["segment", "rudderstack"])
@pytest.mark.parametrize("position", ["first", "middle", "last", "shuffled"])
def test_stream_batch_and_dask_score_as_the_union_under_the_known_id(
    segment_server: tuple[str, list[bytes]], backend: str, position: str, client_kind: str, tmp_path: Path
) -> None:
    host, bodies = segment_server
    received = _send(_client(client_kind, host), _arrange(position, seed=15), bodies)
    union = _union(received, backend)
    want = _table(union.score())

    stream = Scorer(backend=backend)
    for call in received:  # one call at a time, as an app backend forwards them
        stream.ingest_segment(call)
    batch = Scorer(backend=backend)
    batch.ingest_segment({"batch": received})
    for scorer in (stream, batch):
        _assert_same(_table(scorer.score()), want)
        assert scorer.tier_of("anon-ann") == scorer.tier_of("ann") == want["ann"][1]
        assert scorer.traits_of("anon-ann")["plan"] == "gold"
        assert scorer.traits_of("ann")["email"].startswith("blake2b:")
        assert scorer.traits_of("device-bob") == {"plan": "free"}

    pytest.importorskip("dask.dataframe", reason="the [dask] extra is not installed")
    from affinity_sdk.scale.dask import score_dataset

    lake = tmp_path / "events.parquet"
    EventBatch.from_events(from_segment(received, unknown_types="skip")).to_parquet(lake)
    scores = score_dataset(lake, links=received, backend=backend, npartitions=3, scheduler="sync")
    frame = scores.compute(scheduler="sync")
    assert scores.now_ms == union.latest_ms
    got = {
        user: (raw, tier)
        for user, raw, tier in zip(frame["user_id"], frame["raw_score"], frame["tier"], strict=True)
    }
    _assert_same(got, want)
