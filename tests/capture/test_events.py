"""Every event type survives JSON and MessagePack round trips."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from _event_strategies import event_of, events
from hypothesis import given, settings

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.decode import decode_json, decode_msgpack

P = ev.Product(product_id="p1", category="shoes", brand="acme", price=59.0, discount=5.0, quantity=2)
T = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
EXTRA = {
    "product_viewed": {"product": P},
    "product_added": {"product": P, "cart_id": "c"},
    "product_removed": {"product": P},
    "product_added_to_wishlist": {"product": P, "wishlist_id": "w"},
    "product_list_viewed": {"products": [P, P], "list_id": "l"},
    "cart_viewed": {"products": [P]},
    "checkout_started": {"products": [P], "revenue": 118.0},
    "coupon_applied": {"coupon": "X", "discount": 3.0},
    "order_completed": {"order_id": "o1", "products": [P], "revenue": 118.0, "currency": "EUR"},
    "order_refunded": {"order_id": "o1", "revenue": 59.0},
    "email_opened": {"campaign_id": "spring"},
    "consent_changed": {"granted": False},
    "page_viewed": {"url": "https://shop.example/"},
    "product_clicked": {"product": P},
    "product_removed_from_wishlist": {"product": P},
    "wishlist_product_added_to_cart": {"product": P},
    "product_shared": {"product": P, "share_via": "email"},
    "product_reviewed": {"product": ev.Product(product_id="p1"), "rating": 4.5},
    **{name: {"medium": "whatsapp"} for name in ev.EVENT_TYPES if name.startswith("message_")},
}


@pytest.mark.parametrize("kind", ev.EVENT_TYPES)
@pytest.mark.parametrize("timestamp", [1_714_550_400_000, T])
def test_every_type_round_trips(kind: str, timestamp: object) -> None:
    cls = ev.EVENT_CLASSES[kind]
    event = cls(user_id="u1", timestamp=timestamp, event_id="e1", channel="app", **EXTRA.get(kind, {}))
    raw = msgspec.json.encode(event)
    assert msgspec.json.decode(raw)["type"] == kind
    assert decode_json(raw)[:] == [event]
    assert decode_msgpack(msgspec.msgpack.encode(event))[:] == [event]
    assert decode_json(msgspec.json.encode([event, event]))[:] == [event, event]


def test_event_types_and_classes_agree() -> None:
    assert list(ev.EVENT_CLASSES) == list(ev.EVENT_TYPES)
    assert ev.EVENT_TYPE_CODES["consent_changed"] == 20


@settings(max_examples=150, deadline=None)
@given(events)
def test_any_valid_event_round_trips(event: ev.Event) -> None:
    assert decode_json(msgspec.json.encode(event))[0] == event
    assert decode_msgpack(msgspec.msgpack.encode(event))[0] == event


def test_unknown_fields_are_ignored() -> None:
    raw = b'{"type":"app_opened","user_id":"u","timestamp":1,"new_field":{"x":[1,2]}}'
    assert decode_json(raw)[0] == ev.AppOpened(user_id="u", timestamp=1)


@given(event_of(ev.OrderCompleted))
@settings(max_examples=30, deadline=None)
def test_orders_keep_their_lines(event: ev.OrderCompleted) -> None:
    assert decode_json(msgspec.json.encode(event))[0].products == event.products  # type: ignore[union-attr]
