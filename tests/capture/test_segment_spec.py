"""Every Segment v2 e-commerce event (and the adapter's aliases) maps to the type written here.

The tables below are written from the spec (docs/segment.md lists the source), not read from the
adapter, so changing any mapping fails a test.
"""

from __future__ import annotations

from typing import Any

import pytest

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.segment_adapter import from_segment, segment_event_type
from affinity_sdk.score.scorer import Scorer

#: Segment v2 e-commerce event -> our type, and a minimal spec-valid ``properties`` for it.
SPEC: dict[str, tuple[str, dict[str, Any]]] = {
    "Products Searched": ("products_searched", {"query": "blue hotpants"}),
    "Product List Viewed": ("product_list_viewed", {"list_id": "hot_deals_1"}),
    "Product List Filtered": ("product_list_filtered", {"list_id": "todays_deals_may_11_2019"}),
    "Promotion Viewed": ("promotion_viewed", {"promotion_id": "promo_1"}),
    "Promotion Clicked": ("promotion_clicked", {"promotion_id": "promo_1"}),
    "Product Clicked": ("product_clicked", {"product_id": "507f1f77bcf86cd799439011"}),
    "Product Viewed": ("product_viewed", {"product_id": "507f1f77bcf86cd799439011"}),
    "Product Added": ("product_added", {"product_id": "507f1f77bcf86cd799439011"}),
    "Product Removed": ("product_removed", {"product_id": "507f1f77bcf86cd799439011"}),
    "Cart Viewed": ("cart_viewed", {"cart_id": "skdjsidjsdkdj29j"}),
    "Checkout Started": ("checkout_started", {"order_id": "50314b8e9bcf000000000000"}),
    "Checkout Step Viewed": ("checkout_step_viewed", {"checkout_id": "c1", "step": 2}),
    "Checkout Step Completed": ("checkout_step_completed", {"checkout_id": "c1", "step": 2}),
    "Payment Info Entered": ("payment_info_entered", {"checkout_id": "c1", "order_id": "o1"}),
    "Order Updated": ("order_updated", {"order_id": "o1"}),
    "Order Completed": ("order_completed", {"order_id": "o1", "total": 27.5, "products": []}),
    "Order Refunded": ("order_refunded", {"order_id": "o1"}),
    "Order Cancelled": ("order_cancelled", {"order_id": "o1"}),
    "Coupon Entered": ("coupon_entered", {"order_id": "o1", "coupon_id": "may_deals_2016"}),
    "Coupon Applied": ("coupon_applied", {"order_id": "o1", "coupon_id": "may_deals_2016"}),
    "Coupon Denied": ("coupon_denied", {"coupon": "may_deals_2016", "reason": "Coupon expired"}),
    "Coupon Removed": ("coupon_removed", {"coupon_id": "may_deals_2016"}),
    "Product Added to Wishlist": ("product_added_to_wishlist", {"product_id": "p1"}),
    "Product Removed from Wishlist": ("product_removed_from_wishlist", {"product_id": "p1"}),
    "Wishlist Product Added to Cart": ("wishlist_product_added_to_cart", {"product_id": "p1"}),
    "Product Shared": ("product_shared", {"product_id": "p1", "share_via": "email"}),
    "Cart Shared": ("cart_shared", {"cart_id": "c1", "share_via": "email"}),
    "Product Reviewed": ("product_reviewed", {"product_id": "p1", "review_id": "r1", "rating": 5}),
}
#: The adapter's other names: each alias and the (type, medium) it must give.
ALIASES: dict[str, tuple[str, str | None]] = {
    "Email Link Clicked": ("email_clicked", None),
    "Push Notification Tapped": ("push_opened", None),
    "Push Notification Opened": ("push_opened", None),
    "Push Notification Clicked": ("push_opened", None),
    "SMS Link Clicked": ("sms_clicked", None),
    "Application Installed": ("app_installed", None),
    "Application Opened": ("app_opened", None),
    "Application Uninstalled": ("app_uninstalled", None),
    "Email Unsubscribed": ("unsubscribed", "email"),
    "Email Sent": ("message_sent", "email"),
    "Email Delivered": ("message_delivered", "email"),
    "Email Bounced": ("message_bounced", "email"),
    "Email Marked as Spam": ("message_marked_as_spam", "email"),
    "Push Notification Sent": ("message_sent", "push"),
    "Push Notification Received": ("message_delivered", "push"),
    "Push Notification Bounced": ("message_bounced", "push"),
    "SMS Sent": ("message_sent", "sms"),
    "SMS Delivered": ("message_delivered", "sms"),
    "SMS Bounced": ("message_bounced", "sms"),
}
FULL = {"product_id": "p1", "category": "shoes", "brand": "acme", "price": 20.0}


def _track(name: str, props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    call = {"type": "track", "event": name, "userId": "u1", "timestamp": "2024-05-01T10:00:00Z"}
    return {**call, "properties": props, **extra}


def test_the_spec_list_is_whole() -> None:
    assert len(SPEC) == 28 and len(set(t for t, _ in SPEC.values())) == 28


@pytest.mark.parametrize("name", SPEC)
def test_each_spec_event_maps_and_decodes(name: str) -> None:
    kind, props = SPEC[name]
    assert segment_event_type(name) == kind
    assert segment_event_type(name.upper()) == kind
    (event,) = from_segment(_track(name, props))
    assert event.__struct_config__.tag == kind
    assert event.user_id == "u1" and ev.timestamp_ms(event) == 1_714_557_600_000


@pytest.mark.parametrize("name", ALIASES)
def test_each_alias_maps(name: str) -> None:
    kind, medium = ALIASES[name]
    assert segment_event_type(name) == kind
    (event,) = from_segment(_track(name, {}))
    assert event.__struct_config__.tag == kind
    assert getattr(event, "medium", None) == medium


def test_every_spec_event_scores_in_one_batch() -> None:
    calls = [
        _track(name, {**props, **FULL} if "product_id" in props else props)
        for name, (_, props) in SPEC.items()
    ]
    scorer = Scorer()
    scorer.ingest(from_segment(calls).events)
    assert scorer.events_ingested == len(SPEC)
    # the default config scores orders, views, adds, wishlist adds and checkouts
    assert scorer.score_of("u1", now="2024-05-02T00:00:00Z") is not None


def test_a_product_with_only_its_id_scores() -> None:
    scorer = Scorer()
    scorer.ingest(from_segment(_track("Product Viewed", {"product_id": "p1"})).events)
    assert scorer.score_of("u1", now="2024-05-02T00:00:00Z") is not None


def test_minimal_products_keep_what_they_have() -> None:
    (event,) = from_segment(
        _track("Product Reviewed", {"product_id": "p1", "rating": 4, "review_body": "ok"})
    )
    assert isinstance(event, ev.ProductReviewed)
    assert event.product == ev.Product(product_id="p1") and event.rating == 4.0
    (order,) = from_segment(
        _track("Order Updated", {"order_id": "o1", "total": 9.5, "products": [{"sku": "s"}]})
    )
    assert isinstance(order, ev.OrderUpdated)
    assert (order.revenue, order.products) == (9.5, [ev.Product(product_id="s")])


def test_unknown_properties_are_ignored_and_coupons_read_their_id() -> None:
    (event,) = from_segment(_track("Coupon Applied", {"coupon_id": "c9", "discount": 2, "whatever": [1]}))
    assert event == ev.CouponApplied(user_id="u1", timestamp=event.timestamp, coupon="c9", discount=2.0)


def test_screen_calls_are_app_page_views() -> None:
    call = {"type": "screen", "userId": "u1", "timestamp": 0, "name": "Home", "properties": {"url": "x"}}
    (event,) = from_segment(call)
    assert isinstance(event, ev.PageViewed) and event.channel == "app" and event.url == "x"


@pytest.mark.parametrize(
    ("where", "hint", "channel"),
    [
        ("properties", "store", "store"),
        ("properties", "browser", None),  # properties.channel must be one of ours
        ("context", "browser", "web"),
        ("context", "mobile", "app"),
        ("context", "client", "web"),
        ("context", "server", None),
        ("context", "email", "email"),
        ("top", "mobile", "app"),
        ("top", "server", None),
    ],
)
def test_channel_hints(where: str, hint: str, channel: str | None) -> None:
    call = _track("Products Searched", {"query": "q"})
    if where == "properties":
        call["properties"]["channel"] = hint
    elif where == "context":
        call["context"] = {"channel": hint}
    else:
        call["channel"] = hint
    (event,) = from_segment(call)
    assert event.channel == channel


def test_session_id_from_properties_then_context() -> None:
    call = _track("Products Searched", {"query": "q"}, context={"sessionId": "ctx"})
    assert from_segment(call)[0].session_id == "ctx"
    call["properties"]["session_id"] = "prop"
    assert from_segment(call)[0].session_id == "prop"
    assert from_segment(_track("Products Searched", {}))[0].session_id is None


def test_new_type_codes_are_pinned() -> None:
    """Codes are persisted in state files: the new ones come after consent_changed, in this order."""
    assert ev.EVENT_TYPES[20:] == (
        "consent_changed",
        "product_clicked",
        "product_list_filtered",
        "promotion_viewed",
        "promotion_clicked",
        "checkout_step_viewed",
        "checkout_step_completed",
        "payment_info_entered",
        "order_updated",
        "order_cancelled",
        "coupon_entered",
        "coupon_denied",
        "coupon_removed",
        "product_removed_from_wishlist",
        "wishlist_product_added_to_cart",
        "product_shared",
        "cart_shared",
        "product_reviewed",
        "message_sent",
        "message_delivered",
        "message_opened",
        "message_clicked",
        "message_bounced",
        "message_marked_as_spam",
    )


def test_new_types_score_nothing_by_default() -> None:
    from affinity_sdk.config import default_config

    new = set(ev.EVENT_TYPES[21:])
    assert not new & set(default_config().signals)


def test_every_type_with_products_may_feed_affinity() -> None:
    from affinity_sdk.config import PRODUCT_EVENT_TYPES

    carrying = {
        name
        for name, cls in ev.EVENT_CLASSES.items()
        if {"product", "products"} & set(cls.__struct_fields__) and name != "order_refunded"
    }
    assert carrying == PRODUCT_EVENT_TYPES
