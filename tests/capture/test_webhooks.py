"""Store webhooks: Shopify (Admin REST API 2024-10 webhook topics) and WooCommerce (REST API v3
webhook bodies). The payloads below are written from the platforms' public webhook references
(Shopify's ``orders/create``, ``checkouts/create``, ``refunds/create`` and ``customers/update``
example bodies; WooCommerce's order and customer properties), trimmed to the fields that matter
plus some that must be ignored."""

from __future__ import annotations

import base64
import copy
import doctest
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.webhooks import (
    SHOPIFY_TOPICS,
    WOOCOMMERCE_STATUSES,
    from_shopify,
    from_woocommerce,
    verify_webhook,
)
from affinity_sdk.errors import SchemaError
from affinity_sdk.score.scorer import Scorer

CUSTOMER = {
    "id": 115310627314723954,
    "email": "john@example.com",
    "created_at": "2024-09-20T10:00:00-04:00",
    "updated_at": "2024-10-01T12:00:00-04:00",
    "email_marketing_consent": {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2024-09-20T10:05:00-04:00",
    },
    "sms_marketing_consent": None,
}
LINE_ITEMS = [
    {"id": 866550311766439020, "product_id": 632910392, "variant_id": 808950810, "title": "IPod Nano - 8GB",
     "price": "199.00", "quantity": 1, "sku": "IPOD2008PINK", "vendor": "Apple", "product_type": "Cult Products",
     "total_discount": "0.00", "requires_shipping": True, "taxable": True},
    {"id": 141249953214522974, "product_id": 921728736, "variant_id": 457924702, "title": "IPod Touch 8GB",
     "price": "24.95", "quantity": 2, "sku": "IPOD2009BLACK", "vendor": "Apple", "product_type": "",
     "total_discount": "5.00"},
]  # fmt: skip
ORDER = {
    "id": 820982911946154508,
    "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
    "email": "john@example.com",
    "created_at": "2024-10-01T12:00:00-04:00",
    "updated_at": "2024-10-01T12:00:05-04:00",
    "processed_at": "2024-10-01T11:59:58-04:00",
    "cancelled_at": None,
    "currency": "USD",
    "financial_status": "paid",
    "total_price": "243.90",
    "subtotal_price": "243.90",
    "total_discounts": "5.00",
    "discount_codes": [{"code": "TENOFF", "amount": "5.00", "type": "fixed_amount"}],
    "checkout_token": "bd5a8aa1ecd019dd3520ff791ee3a24c",
    "source_name": "web",
    "customer": CUSTOMER,
    "line_items": LINE_ITEMS,
}
CHECKOUT = {
    "id": 981820079255243537,
    "token": "123123123",
    "cart_token": "eeafa272cebfd4b22385bc4b645e762c",
    "email": "john@example.com",
    "created_at": "2024-10-01T11:40:00-04:00",
    "updated_at": "2024-10-01T11:40:00-04:00",
    "completed_at": None,
    "currency": "USD",
    "total_price": "199.00",
    "abandoned_checkout_url": "https://shop.example/checkouts/123123123/recover",
    "customer": CUSTOMER,
    "line_items": LINE_ITEMS[:1],
}
REFUND = {
    "id": 929361462,
    "order_id": 820982911946154508,
    "created_at": "2024-10-03T09:00:00-04:00",
    "processed_at": "2024-10-03T09:00:00-04:00",
    "note": "wrong size",
    "restock": True,
    "user_id": 548380009,  # the staff member, not the customer
    "refund_line_items": [{"id": 1, "quantity": 1, "line_item_id": 866550311766439020,
                           "subtotal": 199.0, "line_item": LINE_ITEMS[0]}],
    "transactions": [
        {"id": 179259969, "kind": "refund", "status": "success", "amount": "199.00", "currency": "USD"},
        {"id": 179259970, "kind": "refund", "status": "failure", "amount": "5.00", "currency": "USD"},
    ],
}  # fmt: skip
WOO_ORDER = {
    "id": 727,
    "parent_id": 0,
    "number": "727",
    "order_key": "wc_order_58d2d042d1d",
    "created_via": "checkout",
    "status": "processing",
    "currency": "USD",
    "date_created": "2024-10-01T16:28:02",
    "date_created_gmt": "2024-10-01T19:28:02",
    "date_modified_gmt": "2024-10-01T19:30:00",
    "date_paid_gmt": "2024-10-01T19:29:00",
    "discount_total": "2.00",
    "total": "29.35",
    "customer_id": 26,
    "billing": {"email": "john.doe@example.com"},
    "payment_method": "bacs",
    "line_items": [
        {"id": 315, "name": "Woo Single #1", "product_id": 93, "variation_id": 0, "quantity": 2,
         "subtotal": "6.00", "total": "6.00", "sku": "", "price": 3},
        {"id": 316, "name": "Ship Your Idea", "product_id": 22, "variation_id": 23, "quantity": 1,
         "subtotal": "12.00", "total": "12.00", "sku": "SYI-1", "price": 12},
    ],
    "coupon_lines": [{"id": 1, "code": "welcome2", "discount": "2.00"}],
    "refunds": [],
}  # fmt: skip


#: Category / brand for line items that lack them (``ingest`` of products without a category is
#: being built beside this adapter; these flows do not depend on it).
CATALOG = {"921728736": {"category": "Players"}, "93": {"category": "music", "brand": "woo"},
           "22": {"category": "ideas", "brand": "woo"}}  # fmt: skip


def order(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(ORDER), **changes}


# --- Shopify mapping ------------------------------------------------------------------------
def test_shopify_order_fields() -> None:
    [event] = from_shopify(json.dumps(ORDER).encode(), topic="orders/create")
    assert isinstance(event, ev.OrderCompleted)
    assert event.user_id == "115310627314723954" and event.event_id == "shopify:order:820982911946154508"
    assert (event.order_id, event.revenue, event.discount, event.coupon, event.currency) == (
        "820982911946154508", 243.9, 5.0, "TENOFF", "USD")  # fmt: skip
    assert ev.timestamp_ms(event) == 1727798398000  # processed_at, 2024-10-01T15:59:58Z
    assert event.products == [
        ev.Product(product_id="632910392", category="Cult Products", brand="Apple", price=199.0, quantity=1),
        ev.Product(
            product_id="921728736", category=None, brand="Apple", price=24.95, quantity=2, discount=5.0
        ),
    ]


#: Written from Shopify's topic list, not from the module: a changed mapping fails here.
EXPECTED_SHOPIFY = {
    "orders/create": ("order_completed", ORDER, "shopify:order:820982911946154508"),
    "orders/paid": ("order_completed", ORDER, "shopify:order:820982911946154508"),
    "orders/updated": ("order_updated", ORDER,
                       "shopify:order:820982911946154508:updated:2024-10-01T12:00:05-04:00"),
    "orders/cancelled": ("order_cancelled", {**ORDER, "cancelled_at": "2024-10-02T08:00:00-04:00"},
                         "shopify:order:820982911946154508:cancelled"),
    "checkouts/create": ("checkout_started", CHECKOUT, "shopify:checkout:123123123"),
    "checkouts/update": ("checkout_started", CHECKOUT, "shopify:checkout:123123123"),
    "refunds/create": ("order_refunded", REFUND, "shopify:refund:929361462"),
    "customers/create": ("consent_changed", CUSTOMER,
                         "shopify:consent:115310627314723954:email:2024-09-20T10:05:00-04:00"),
    "customers/update": ("consent_changed", CUSTOMER,
                         "shopify:consent:115310627314723954:email:2024-09-20T10:05:00-04:00"),
}  # fmt: skip


@pytest.mark.parametrize("topic", sorted(EXPECTED_SHOPIFY))
def test_each_shopify_topic(topic: str) -> None:
    kind, payload, event_id = EXPECTED_SHOPIFY[topic]
    assert SHOPIFY_TOPICS[topic] == kind
    [event] = from_shopify(payload, topic=topic, order_customers={"820982911946154508": "115310627314723954"})
    assert type(event) is ev.EVENT_CLASSES[kind]
    assert event.event_id == event_id and event.user_id == "115310627314723954"
    assert set(SHOPIFY_TOPICS) == set(EXPECTED_SHOPIFY)


def test_unknown_topic() -> None:
    with pytest.raises(SchemaError, match=r"Unknown Shopify topic 'products/create' - at `topic`"):
        from_shopify({"id": 1}, topic="products/create")
    assert from_shopify({"id": 1}, topic="products/create", unknown_types="skip").rejects.n_unknown == 1


def test_refund_needs_the_order_customer() -> None:
    with pytest.raises(SchemaError) as info:
        from_shopify(REFUND, topic="refunds/create")
    assert str(info.value) == (
        "No customer known for order '820982911946154508': pass `order_customers` - at `$.order_id`"
    )
    deliveries = [
        {"topic": "orders/create", "payload": ORDER},
        {"topic": "refunds/create", "payload": REFUND},
    ]
    completed, refunded = from_shopify(deliveries)
    assert isinstance(refunded, ev.OrderRefunded)
    assert refunded.user_id == completed.user_id == "115310627314723954"
    # only the successful refund transaction counts
    assert (refunded.order_id, refunded.revenue) == ("820982911946154508", 199.0)
    assert [(p.product_id, p.quantity) for p in refunded.products] == [("632910392", 1)]


def test_customer_consent_states() -> None:
    both = {**CUSTOMER, "sms_marketing_consent": {"state": "unsubscribed", "consent_updated_at": None}}
    email, sms = from_shopify(both, topic="customers/update")
    assert isinstance(email, ev.ConsentChanged) and isinstance(sms, ev.ConsentChanged)
    assert (email.granted, email.medium, email.purpose) == (True, "email", "marketing")
    assert (sms.granted, sms.medium) == (False, "sms")
    assert ev.timestamp_ms(sms) == 1727798400000  # no consent time: the customer's updated_at
    never = {**CUSTOMER, "email_marketing_consent": {"state": "not_subscribed", "consent_updated_at": None}}
    result = from_shopify(never, topic="customers/update")
    assert len(result) == 0 and result.rejects.n_unknown == 1
    legacy = {k: v for k, v in CUSTOMER.items() if k != "email_marketing_consent"}
    [old] = from_shopify({**legacy, "accepts_marketing": False}, topic="customers/update")
    assert isinstance(old, ev.ConsentChanged) and (old.granted, old.medium) == (False, "email")


def test_errors_name_the_webhook_path() -> None:
    bad_price = order(line_items=[{**LINE_ITEMS[0], "price": "n/a"}])
    bad_qty = order(line_items=[LINE_ITEMS[0], {**LINE_ITEMS[1], "quantity": 0}])
    guest = order(customer=None)
    deliveries = [{"topic": "orders/create", "payload": p} for p in (bad_price, bad_qty, guest)]
    lines = "\n".join(json.dumps(d) for d in deliveries) + "\n{oops\n" + json.dumps({"payload": {}})
    result = from_shopify(lines, errors="collect")
    assert len(result) == 0
    assert result.rejects.errors == [
        (0, "Expected `float | null`, got `str` - at `$.line_items[0].price` (line 1)"),
        (1, "Expected `int` >= 1 - at `$.line_items[1].quantity` (line 2)"),
        (2, "Object missing required field `user_id` - at `$.customer.id` (line 3)"),
        (
            3,
            "Invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1) (line 4)",
        ),
        (4, "Expected `str` - at `$.topic` (line 5)"),
    ]
    with pytest.raises(SchemaError, match="needs its `topic`"):
        from_shopify(ORDER)


def test_catalog_fills_missing_product_fields() -> None:
    catalog = {"921728736": {"category": "Players", "brand": "ignored: the line item's vendor wins"}}
    [event] = from_shopify(ORDER, topic="orders/create", catalog=catalog)
    assert isinstance(event, ev.OrderCompleted)
    assert [(p.category, p.brand) for p in event.products] == [
        ("Cult Products", "Apple"),
        ("Players", "Apple"),
    ]


# --- flows through the scorer ----------------------------------------------------------------
def test_redelivered_webhook_dedupes() -> None:
    once, twice = Scorer(backend="reference"), Scorer(backend="reference")
    once.ingest(from_shopify(ORDER, topic="orders/create", catalog=CATALOG))
    first = twice.ingest(from_shopify(ORDER, topic="orders/create", catalog=CATALOG))
    again = twice.ingest(from_shopify(json.dumps(ORDER), topic="orders/create", catalog=CATALOG))
    paid = twice.ingest(from_shopify(ORDER, topic="orders/paid", catalog=CATALOG))
    assert (first.accepted, again.accepted, again.n_duplicates, paid.n_duplicates) == (1, 0, 1, 1)
    now = "2024-10-10T00:00:00Z"
    a, b = once.score(now=now), twice.score(now=now)
    assert a.user_ids == b.user_ids == ["115310627314723954"]
    assert a.raw_score.tolist() == b.raw_score.tolist()


def test_abandoned_checkout_flow() -> None:
    updated = {**CHECKOUT, "updated_at": "2024-10-01T11:45:00-04:00", "line_items": LINE_ITEMS}
    other = {**copy.deepcopy(CUSTOMER), "id": 42}
    converted = {**CHECKOUT, "token": "999", "customer": other}
    deliveries = [
        {"topic": "checkouts/create", "payload": CHECKOUT},
        {"topic": "checkouts/update", "payload": updated},
        {"topic": "checkouts/create", "payload": converted},
        {"topic": "orders/create", "payload": order(id=5, customer=other, checkout_token="999")},
    ]
    events = from_shopify(deliveries, catalog=CATALOG)
    by_user: dict[str, list[str]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(type(event).__name__)
    assert by_user == {
        "115310627314723954": ["CheckoutStarted", "CheckoutStarted"],
        "42": ["CheckoutStarted", "OrderCompleted"],
    }
    scorer = Scorer(backend="reference")
    report = scorer.ingest(events)
    # the update is the same checkout: one checkout_started for the abandoner, no order
    assert (report.accepted, report.n_duplicates) == (3, 1)


# --- WooCommerce ------------------------------------------------------------------------------
EXPECTED_WOO = {
    "processing": ("order_completed", "woocommerce:order:727"),
    "completed": ("order_completed", "woocommerce:order:727"),
    "pending": ("checkout_started", "woocommerce:checkout:727"),
    "failed": ("checkout_started", "woocommerce:checkout:727"),
    "on-hold": ("checkout_started", "woocommerce:checkout:727"),
    "checkout-draft": ("checkout_started", "woocommerce:checkout:727"),
    "cancelled": ("order_cancelled", "woocommerce:cancelled:727"),
}


@pytest.mark.parametrize("status", sorted(EXPECTED_WOO))
@pytest.mark.parametrize("topic", ["order.created", "order.updated"])
def test_each_woocommerce_status(status: str, topic: str) -> None:
    kind, event_id = EXPECTED_WOO[status]
    assert WOOCOMMERCE_STATUSES[status] == kind
    [event] = from_woocommerce({**WOO_ORDER, "status": status}, topic=topic)
    assert type(event) is ev.EVENT_CLASSES[kind]
    assert (event.event_id, event.user_id) == (event_id, "26")
    assert set(WOOCOMMERCE_STATUSES) == set(EXPECTED_WOO)


def test_woocommerce_order_fields_and_refunds() -> None:
    catalog = {"93": {"category": "music", "brand": "woo"}}
    refunded = {**WOO_ORDER, "refunds": [{"id": 726, "reason": "", "total": "-10.00"}]}
    order_event, refund = from_woocommerce(refunded, topic="order.updated", catalog=catalog)
    assert isinstance(order_event, ev.OrderCompleted)
    assert (order_event.order_id, order_event.revenue, order_event.discount, order_event.coupon) == (
        "727", 29.35, 2.0, "welcome2")  # fmt: skip
    assert ev.timestamp_ms(order_event) == 1727810940000  # date_paid_gmt, read as UTC
    assert order_event.products == [
        ev.Product(product_id="93", category="music", brand="woo", price=3.0, quantity=2),
        ev.Product(product_id="22", price=12.0, quantity=1),
    ]
    assert isinstance(refund, ev.OrderRefunded)
    assert (refund.event_id, refund.order_id, refund.revenue) == ("woocommerce:refund:726", "727", 10.0)


def test_woocommerce_pending_then_paid_and_customers() -> None:
    deliveries = [
        {"topic": "order.created", "payload": {**WOO_ORDER, "status": "pending"}},
        {"topic": "order.updated", "payload": WOO_ORDER},
        {"topic": "order.updated", "payload": WOO_ORDER},  # a re-delivery
        {"topic": "customer.updated", "payload": {"id": 26, "email": "john.doe@example.com"}},
    ]
    result = from_woocommerce(deliveries, catalog=CATALOG)
    assert [type(e).__name__ for e in result] == ["CheckoutStarted", "OrderCompleted", "OrderCompleted"]
    assert result.rejects.n_unknown == 1
    report = Scorer(backend="reference").ingest(result)
    assert (report.accepted, report.n_duplicates) == (2, 1)
    guest = from_woocommerce({**WOO_ORDER, "customer_id": 0}, topic="order.created", errors="collect")
    assert guest.rejects.errors == [(0, "Object missing required field `user_id` - at `$.customer_id`")]


# --- signatures -----------------------------------------------------------------------------
def test_hmac_known_vector() -> None:
    # RFC-style published HMAC-SHA256 vector (key "key", the quick brown fox)
    digest = bytes.fromhex("f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    header = base64.b64encode(digest).decode()
    body = b"The quick brown fox jumps over the lazy dog"
    assert verify_webhook(body, header, "key") and verify_webhook(body, header, b"key")
    assert not verify_webhook(body, header, "other key")
    assert not verify_webhook(body + b".", header, "key")
    assert not verify_webhook(body, None, "key") and not verify_webhook(body, "", "key")
    assert not verify_webhook(body, header[:-4] + "AAA=", "key")


@pytest.mark.parametrize("header", ["X-Shopify-Hmac-Sha256", "X-WC-Webhook-Signature"])
def test_hmac_of_a_raw_body(header: str) -> None:
    secret = "whsec_test"
    raw = json.dumps(ORDER, indent=2).encode()  # the bytes as sent, not a re-serialisation
    signature = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
    headers = {header: signature}
    assert verify_webhook(raw, headers[header], secret)
    assert not verify_webhook(json.dumps(ORDER).encode(), headers[header], secret)


def test_docs_examples_run() -> None:
    doc = Path(__file__).parents[2] / "docs" / "webhooks.md"
    failures, tried = doctest.testfile(str(doc), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert failures == 0 and tried > 5


def test_a_delivery_with_several_events_is_taken_whole_or_not_at_all() -> None:
    bad_refund = {**WOO_ORDER, "refunds": [{"id": 726, "total": "ten"}]}
    result = from_woocommerce(bad_refund, topic="order.updated", catalog=CATALOG, errors="collect")
    assert len(result) == 0
    assert result.rejects.errors == [(0, "Expected `float | null`, got `str` - at `$.refunds[0].total`")]
