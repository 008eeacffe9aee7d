"""Identity stitching: an anonymous visitor who signs in is one profile in every view, exactly as
if every event had been sent under the known id, whenever the identify arrives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affinity_sdk import Scorer
from affinity_sdk.capture.events import (
    AppOpened,
    ConsentChanged,
    Event,
    PageViewed,
    Product,
    ProductAdded,
    ProductViewed,
)
from affinity_sdk.models.affinity import affinities_table

DAY_MS = 86_400_000
T0 = 1_767_225_600_000
VIEWS = ("signals", "affinity")
SHOE = Product(product_id="p1", category="shoes", brand="acme", price=80.0)
HAT = Product(product_id="p2", category="hats", brand="zed", price=20.0)


def _events(user: str, start: int) -> list[Event]:
    return [
        ProductViewed(user_id=user, timestamp=start, product=SHOE),
        ProductAdded(user_id=user, timestamp=start + DAY_MS, product=SHOE),
        ProductViewed(user_id=user, timestamp=start + 2 * DAY_MS, product=HAT),
    ]


def _renamed(events: list[Event], names: dict[str, str]) -> list[Event]:
    import msgspec

    return [msgspec.structs.replace(e, user_id=names.get(e.user_id, e.user_id)) for e in events]


def _snapshot(scorer: Scorer) -> tuple[dict[str, float], dict[str, list[str]]]:
    result = scorer.score()
    table = affinities_table(scorer.affinity, "category", 2)
    values: dict[str, list[str]] = {}
    for user, value in zip(table["user_id"], table["value"], strict=True):
        values.setdefault(user, []).append(value)
    return dict(zip(result.user_ids, result.raw_score.tolist(), strict=True)), values


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, 9), split=st.integers(0, 9), seed=st.integers(0, 2**16))
def test_identify_anywhere_equals_every_event_under_the_known_id(
    position: int, split: int, seed: int, backend: str
) -> None:
    """The issue's case: anonymous browsing and carting, then sign-in; the link arrives before,
    between or after the events (any batching); the person scores as the union."""
    rng = np.random.default_rng(seed)
    events = [*_events("anon-1", T0), *_events("ann", T0 + DAY_MS // 2), *_events("bob", T0)]
    events = [events[i] for i in rng.permutation(len(events))]
    union = Scorer(backend=backend, views=VIEWS)
    union.ingest(_renamed(events, {"anon-1": "ann"}))
    stitched = Scorer(backend=backend, views=VIEWS)
    cut = min(split, len(events))
    for i, part in enumerate((events[:cut], events[cut:])):
        if position % 3 == i:
            stitched.identify("anon-1", "ann")
        if part:
            stitched.ingest(part)
    stitched.identify("anon-1", "ann")  # a repeated link changes nothing
    want_scores, want_values = _snapshot(union)
    got_scores, got_values = _snapshot(stitched)
    assert sorted(got_scores) == sorted(want_scores) == ["ann", "bob"]
    for user, raw in want_scores.items():
        assert got_scores[user] == pytest.approx(raw, rel=1e-12)
    assert got_values == want_values
    assert stitched.tier_of("anon-1") == stitched.tier_of("ann")


def test_links_compose_and_later_events_land_on_the_person(backend: str, tmp_path: Path) -> None:
    scorer = Scorer(backend=backend)
    scorer.ingest([AppOpened(user_id="device-1", timestamp=T0), AppOpened(user_id="anon-1", timestamp=T0)])
    assert scorer.identify("device-1", "anon-1") and scorer.identify("anon-1", "ann")
    scorer = Scorer.load(scorer.save(tmp_path / "s.afs"), backend=backend)  # links survive a restart
    scorer.ingest(AppOpened(user_id="device-1", timestamp=T0 + 1))
    result = scorer.score()
    assert result.user_ids == ["ann"]
    assert scorer.explain("ann").signals[0].count == 3


def test_consent_of_linked_profiles_takes_the_latest_decision(backend: str) -> None:
    scorer = Scorer(backend=backend)
    scorer.ingest(
        [
            AppOpened(user_id="anon-1", timestamp=T0),
            ConsentChanged(user_id="anon-1", timestamp=T0 + 5, granted=False),
        ]
    )
    scorer.ingest(
        [
            AppOpened(user_id="ann", timestamp=T0),
            ConsentChanged(user_id="ann", timestamp=T0 + 1, granted=True),
        ]
    )
    scorer.identify("anon-1", "ann")
    assert scorer.score().user_ids == []  # the later decision (a revocation) wins
    scorer.ingest(ConsentChanged(user_id="anon-1", timestamp=T0 + 9, granted=True))
    assert scorer.score().user_ids == ["ann"]


def test_a_forgotten_id_is_never_linked_and_forget_reaches_every_linked_id(backend: str) -> None:
    scorer = Scorer(backend=backend)
    scorer.ingest([AppOpened(user_id="anon-1", timestamp=T0), AppOpened(user_id="ann", timestamp=T0)])
    scorer.forget("anon-1", at=T0 + 10)
    assert not scorer.identify("anon-1", "ann")
    scorer.ingest(AppOpened(user_id="anon-1", timestamp=T0 + 5))  # stamped before the forget: dropped
    assert scorer.explain("ann").signals[0].count == 1
    scorer.ingest(AppOpened(user_id="anon-2", timestamp=T0))
    assert scorer.identify("anon-2", "ann")
    scorer.forget("ann", at=T0 + 20)
    assert scorer.score().user_ids == []
    report = scorer.ingest([AppOpened(user_id=u, timestamp=T0 + 15) for u in ("ann", "anon-2")])
    assert report.n_suppressed == 2 and scorer.n_users == len(scorer.interners.users)
    assert scorer.interners.users.lookup("anon-2") is None


def test_links_merge_across_shards(backend: str) -> None:
    a, b, one = (Scorer(backend=backend, views=VIEWS) for _ in range(3))
    anon, known = _events("anon-1", T0), _events("ann", T0 + DAY_MS)
    a.ingest(anon)
    b.ingest(known)
    b.identify("anon-1", "ann")
    one.ingest(_renamed([*anon, *known], {"anon-1": "ann"}))
    merged_scores, merged_values = _snapshot(a.merge(b))
    want_scores, want_values = _snapshot(one)
    assert merged_scores == pytest.approx(want_scores, rel=1e-12)
    assert merged_values == want_values


def test_real_segment_client_stream_scores_as_the_union(segment_server: tuple[str, list[bytes]]) -> None:
    """Anonymous track calls, then an identify, sent by segment-analytics-python to a local HTTP
    server; the recorded bodies through `Scorer.ingest_segment` score as the union."""
    analytics = pytest.importorskip("segment.analytics")
    host, bodies = segment_server
    client = analytics.Client("test-key", host=host, sync_mode=True, max_retries=0)
    product = {"product_id": "p1", "category": "shoes", "brand": "acme", "price": 59.0}
    client.track(anonymous_id="anon-9", event="Product Viewed", properties=product, timestamp=None)
    client.track(anonymous_id="anon-9", event="Product Added", properties=product)
    client.identify(user_id="ann", anonymous_id="anon-9", traits={"plan": "gold"})
    client.track(user_id="ann", event="Product Viewed", properties=product)
    client.flush()
    stitched, union = Scorer(), Scorer()
    for body in bodies:
        stitched.ingest_segment(body)
    from affinity_sdk.capture.segment_adapter import from_segment

    for body in bodies:
        union.ingest(_renamed(list(from_segment(body, unknown_types="skip")), {"anon-9": "ann"}))
    got, want = stitched.score(), union.score()
    assert got.user_ids == want.user_ids == ["ann"]
    np.testing.assert_allclose(got.raw_score, want.raw_score, rtol=1e-12)


def test_cli_scores_a_file_of_segment_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`affinity score calls.ndjson --format segment`: calls and /v1/batch bodies, one per line;
    the identify stitches the anonymous visitor into the customer."""
    import csv
    import json

    from affinity_sdk.cli import main

    product = {"sku": "p1", "category": "shoes", "brand": "acme", "price": 59}
    calls = [
        {
            "type": "track",
            "event": "Product Viewed",
            "anonymousId": "anon-1",
            "timestamp": "2026-01-01T10:00:00Z",
            "properties": product,
        },
        {
            "batch": [
                {
                    "type": "track",
                    "event": "Product Added",
                    "anonymousId": "anon-1",
                    "timestamp": "2026-01-01T10:05:00Z",
                    "properties": product,
                },
                {"type": "identify", "anonymousId": "anon-1", "userId": "ann", "traits": {}},
            ]
        },
        {"type": "page", "userId": "bob", "timestamp": "2026-01-02T11:00:00Z", "properties": {"url": "/"}},
    ]
    path = tmp_path / "calls.ndjson"
    path.write_text("\n".join(json.dumps(c) for c in calls) + "\n")
    out = tmp_path / "scores.csv"
    assert main(["score", str(path), "--format", "segment", "--out", str(out)]) == 0
    assert "stitched 1 identify / alias links" in capsys.readouterr().err
    with open(out, newline="") as fh:
        rows = {row["user_id"]: row for row in csv.DictReader(fh)}
    assert sorted(rows) == ["ann", "bob"]
    shoe = Product(product_id="p1", category="shoes", brand="acme", price=59.0)
    union = Scorer()
    union.ingest(
        [
            ProductViewed(user_id="ann", timestamp=T0 + 36_000_000, product=shoe),
            ProductAdded(user_id="ann", timestamp=T0 + 36_300_000, product=shoe),
            PageViewed(user_id="bob", timestamp=T0 + DAY_MS + 39_600_000),
        ]
    )
    want = dict(zip(union.score().user_ids, union.score().raw_score.tolist(), strict=True))
    assert float(rows["ann"]["raw_score"]) == pytest.approx(want["ann"], rel=1e-12)
