"""RudderStack calls, sent by the real rudder-sdk-python client, map like Segment's."""

from __future__ import annotations

import pytest
from test_segment_spec import ALIASES, FULL, SPEC

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.segment_adapter import from_segment
from affinity_sdk.score.scorer import Scorer


@pytest.mark.parametrize("use_gzip", [False, True])
def test_real_client_sends_every_spec_event(rudder_server: tuple[str, list[bytes]], use_gzip: bool) -> None:
    rudder = pytest.importorskip("rudderstack.analytics")
    host, bodies = rudder_server
    client = rudder.Client("write-key", host=host, sync_mode=True, gzip=use_gzip, max_retries=0)
    for name, (_, props) in SPEC.items():
        client.track("u1", name, {**props, **FULL} if "product_id" in props else props)
    for name in ALIASES:
        client.track("u2", name, {"campaign_id": "spring"})
    client.screen("u2", name="Home", properties={"url": "app://home"})
    client.identify("u2", {"email": "x@example.com"})
    client.track("u2", "Signed Up", {})
    assert len(bodies) == len(SPEC) + len(ALIASES) + 3
    results = [from_segment(body, unknown_types="skip") for body in bodies]
    events = [e for r in results for e in r]
    kinds = [e.__struct_config__.tag for e in events]
    assert kinds == [k for k, _ in SPEC.values()] + [k for k, _ in ALIASES.values()] + ["page_viewed"]
    assert sum(r.rejects.n_unknown for r in results) == 2  # identify, Signed Up
    screen = events[-1]
    assert isinstance(screen, ev.PageViewed) and screen.channel == "app" and screen.url == "app://home"
    viewed = events[list(SPEC).index("Product Viewed")]
    assert isinstance(viewed, ev.ProductViewed) and viewed.product == ev.Product(**FULL)
    assert all(e.event_id for e in events)  # messageId -> event_id
    scorer = Scorer()
    scorer.ingest(events)
    assert scorer.score_of("u1", now="2100-01-01T00:00:00Z") is not None
