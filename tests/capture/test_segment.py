"""The Segment adapter, proven on payloads the real segment-analytics-python client sends."""

from __future__ import annotations

import pytest

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.segment_adapter import from_segment, segment_event_type
from affinity_sdk.errors import SchemaError


@pytest.mark.parametrize("use_gzip", [False, True])
def test_real_client_payloads(segment_server: tuple[str, list[bytes]], use_gzip: bool) -> None:
    analytics = pytest.importorskip("segment.analytics")
    host, bodies = segment_server
    client = analytics.Client("test-key", host=host, sync_mode=True, gzip=use_gzip, max_retries=0)
    product = {"product_id": "p1", "category": "shoes", "brand": "acme", "price": 59.0, "quantity": 2}
    client.track("u1", "Product Viewed", product, message_id="m1")
    client.track("u1", "Product Added", {**product, "cart_id": "c1"})
    client.track(
        "u1",
        "Order Completed",
        {"order_id": "o1", "total": 118.0, "currency": "EUR", "coupon": "X", "products": [product]},
    )
    client.track("u2", "Email Opened", {"campaign_id": "spring"})
    client.track("u2", "Signed Up", {})
    client.page("u2", name="Home", properties={"url": "https://shop.example/"})
    client.identify("u2", {"email": "x@example.com"})
    assert len(bodies) == 7
    calls = [call for body in bodies for call in from_segment(body, unknown_types="skip")]
    assert [type(c).__name__ for c in calls] == [
        "ProductViewed",
        "ProductAdded",
        "OrderCompleted",
        "EmailOpened",
        "PageViewed",
    ]
    viewed, added, order, email, page = calls
    assert isinstance(viewed, ev.ProductViewed) and viewed.event_id == "m1"
    assert viewed.product == ev.Product(
        product_id="p1", category="shoes", brand="acme", price=59.0, quantity=2
    )
    assert isinstance(added, ev.ProductAdded) and added.cart_id == "c1"
    assert isinstance(order, ev.OrderCompleted)
    assert (order.revenue, order.currency, order.coupon, len(order.products)) == (118.0, "EUR", "X", 1)
    assert isinstance(email, ev.EmailOpened) and email.campaign_id == "spring" and email.user_id == "u2"
    assert isinstance(page, ev.PageViewed) and page.url == "https://shop.example/"
    assert all(1_600_000_000_000 < ev.timestamp_ms(c) < ev.MAX_TS_MS for c in calls)
    skipped = from_segment(bodies[4], unknown_types="skip")
    assert len(skipped) == 0 and skipped.rejects.n_unknown == 1


def test_errors_name_the_segment_path() -> None:
    body = {
        "batch": [
            {"type": "track", "event": "Product Viewed", "userId": "u", "timestamp": 0, "properties": {}},
            {"type": "track", "event": "Signed Up", "userId": "u", "timestamp": 0},
            {"type": "track", "event": "App Opened", "anonymousId": "a1", "timestamp": 0},
        ]
    }
    result = from_segment(body, errors="collect")
    assert [type(e).__name__ for e in result] == ["AppOpened"] and result[0].user_id == "a1"
    assert result.rejects.errors == [
        (0, "Object missing required field `product_id` - at `$.batch[0].properties`"),
        (1, "Unknown event type 'Signed Up' - at `$.batch[1].event`"),
    ]
    with pytest.raises(SchemaError, match="not valid JSON"):
        from_segment(b"{")


def test_event_names() -> None:
    assert segment_event_type("Product Viewed") == "product_viewed"
    assert segment_event_type("Push Notification Tapped") == "push_opened"
    assert segment_event_type("Application Installed") == "app_installed"
    assert segment_event_type("Identify") is None


def _order_call(
    i: int, context: dict[str, object], props: dict[str, object] | None = None
) -> dict[str, object]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "ann",
        "messageId": f"m{i}",
        "timestamp": 1_767_225_600_000 + i,
        "context": context,
        "properties": {"order_id": f"o{i}", "total": 10.0, "products": [], **(props or {})},
    }


@pytest.mark.parametrize(
    ("context", "props", "channel"),
    [
        ({"campaign": {"medium": "email"}}, {}, "email"),
        ({"campaign": {"medium": " E-Mail "}, "channel": "browser"}, {}, "email"),
        ({"campaign": {"medium": "whatsapp"}}, {}, "whatsapp"),
        ({"campaign": {"medium": "push-notification"}}, {}, "push"),
        ({"campaign": {"medium": "SMS"}}, {}, "sms"),
        ({"campaign": {"medium": "cpc"}, "channel": "browser"}, {}, "web"),  # not a message medium
        ({"campaign": {"medium": "app"}}, {}, None),  # in-app is no message medium for orders
        ({"campaign": {"medium": "email"}}, {"channel": "store"}, "store"),  # explicit wins
    ],
)
def test_order_channel_from_utm_medium(
    context: dict[str, object], props: dict[str, object], channel: str | None
) -> None:
    (order,) = from_segment(_order_call(0, context, props))
    assert isinstance(order, ev.OrderCompleted) and order.channel == channel


def test_utm_medium_only_sets_the_channel_of_orders() -> None:
    call = {
        "type": "track",
        "event": "Product Viewed",
        "userId": "ann",
        "timestamp": 0,
        "context": {"campaign": {"medium": "email"}},
        "properties": {"sku": "p1"},
    }
    (viewed,) = from_segment(call)
    assert viewed.channel is None


def test_segment_conversions_and_time_zone_reach_the_engagement_view() -> None:
    from affinity_sdk.models.channels import best_send_hour, channel_table
    from affinity_sdk.profile.engagement_view import ACTIONS
    from affinity_sdk.score.scorer import Scorer

    t0 = 1_767_225_600_000  # 00:00 UTC
    opened = {
        "type": "track",
        "event": "Email Opened",
        "userId": "ann",
        "messageId": "open",
        "timestamp": t0 + 3_600_000,  # 01:00 UTC
        "context": {"timezone": "Asia/Tokyo"},
    }
    calls = [
        opened,
        _order_call(1, {"campaign": {"medium": "e-mail"}}),
        _order_call(2, {"campaign": {"medium": "whatsapp"}}),
        _order_call(3, {"campaign": {"medium": "cpc"}}),
    ]
    scorer = Scorer(views=("signals", "engagement"), backend="reference")
    scorer.ingest_segment({"batch": calls})
    store = scorer.store
    assert scorer.traits_of("ann") == {"timezone": "Asia/Tokyo"}
    view = store.view("engagement")
    counts = view.media_counts(store.code_of("ann"), t0 + 10)
    converted = counts[:, ACTIONS.index("converted")]
    assert converted[ev.MEDIA.index("email")] > 0 and converted[ev.MEDIA.index("whatsapp")] > 0
    assert converted[ev.MEDIA.index("sms")] == 0 and converted.sum() == pytest.approx(2.0, rel=1e-6)
    assert best_send_hour(store, "ann", strength=1.0)[0] == 10
    assert channel_table(store)["tz"].tolist() == ["Asia/Tokyo"]


def test_identify_traits_override_context_timezone() -> None:
    from affinity_sdk.capture.segment_adapter import segment_traits

    call = {
        "type": "identify",
        "userId": "bo",
        "timestamp": 5,
        "context": {"timezone": "Europe/Oslo"},
        "traits": {"timezone": "America/New_York"},
    }
    assert segment_traits([call, {"type": "page", "userId": "bo", "timestamp": 6}]) == [
        ("bo", {"timezone": "America/New_York"}, 5)
    ]
