"""Adapter from Shopify and WooCommerce webhooks onto the typed events of
:mod:`affinity_sdk.capture.events`, and the check of their signatures.

A shop plugin receives one delivery at a time: a topic header and a JSON body. Pass the body
with its topic (``from_shopify(body, topic="orders/create")``), or a list / NDJSON log of
deliveries ``{"topic": ..., "payload": {...}}``. Payload shapes follow Shopify's Admin REST API
2024-10 webhook topics and WooCommerce's REST API v3 (``wc/v3``) webhook bodies.

Shopify (``X-Shopify-Topic``):

- ``orders/create``, ``orders/paid`` -> ``order_completed``, event id ``shopify:order:{id}``,
  so the same order delivered again (or created, then paid) is one order; ``orders/updated`` ->
  ``order_updated`` (``shopify:order:{id}:updated:{updated_at}``); ``orders/cancelled`` ->
  ``order_cancelled`` (``shopify:order:{id}:cancelled``);
- ``checkouts/create``, ``checkouts/update`` -> ``checkout_started``, event id
  ``shopify:checkout:{token}`` (one per checkout, whatever its updates); a checkout that never
  becomes an order is the abandoned one;
- ``refunds/create`` -> ``order_refunded``, event id ``shopify:refund:{id}``; the refund body
  carries no customer, so the order's customer comes from an order earlier in the same input
  or from ``order_customers``;
- ``customers/create``, ``customers/update`` -> ``consent_changed`` with purpose
  ``marketing`` on medium ``email`` (from ``email_marketing_consent.state``: ``subscribed``
  grants, ``unsubscribed`` withdraws, other states change nothing; the legacy
  ``accepts_marketing`` flag grants or withdraws) and on medium ``sms``
  (``sms_marketing_consent.state``), event id ``shopify:consent:{id}:{medium}:{consent_updated_at}``.

WooCommerce (``X-WC-Webhook-Topic``):

- ``order.created``, ``order.updated``: status ``processing`` / ``completed`` ->
  ``order_completed`` (``woocommerce:order:{id}``), ``pending`` / ``failed`` /
  ``checkout-draft`` / ``on-hold`` -> ``checkout_started`` (``woocommerce:checkout:{id}``),
  ``cancelled`` -> ``order_cancelled`` (``woocommerce:cancelled:{id}``); every entry of ``refunds`` ->
  ``order_refunded`` (``woocommerce:refund:{refund id}``);
- ``customer.created``, ``customer.updated``: WooCommerce core has no marketing-consent field,
  so they carry no event and are counted in ``rejects.n_unknown``.

Customer id (Shopify ``customer.id``, WooCommerce ``customer_id``; a guest has none and is a bad
event) -> ``user_id``, as a string. Line items -> products: ``product_id`` (else ``sku``),
``title`` / ``name``, ``price``, ``quantity``, ``vendor`` -> ``brand``, ``product_type`` ->
``category`` when present. Neither platform puts a category on a line item and WooCommerce no
brand, so ``catalog`` (product id -> extra product fields) fills them in. Money strings become
numbers. Errors name the webhook path (``$.line_items[0].price``) and the delivery's index.

Examples
--------
>>> order = {"id": 820982911946154508, "created_at": "2024-10-01T12:00:00-04:00",
...          "currency": "USD", "total_price": "59.00", "customer": {"id": 115310627314723954},
...          "line_items": [{"product_id": 632910392, "title": "IPod Nano", "price": "59.00",
...                          "quantity": 1, "vendor": "Apple", "product_type": "Cult Products"}]}
>>> event = from_shopify(order, topic="orders/create")[0]
>>> type(event).__name__, event.user_id, event.event_id, event.revenue, event.products[0].brand
('OrderCompleted', '115310627314723954', 'shopify:order:820982911946154508', 59.0, 'Apple')
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal

from affinity_sdk.capture._mapped import to_event
from affinity_sdk.capture.decode import DecodeResult, Errors, UnknownTypes, _Collector, iter_lines
from affinity_sdk.errors import SchemaError

__all__ = [
    "SHOPIFY_TOPICS",
    "WOOCOMMERCE_TOPICS",
    "from_shopify",
    "from_woocommerce",
    "verify_webhook",
]

Platform = Literal["shopify", "woocommerce"]
Mapped = list[tuple[dict[str, Any], dict[str, str]]]
_Mapper = Callable[[Mapping[str, Any], str, "_Context"], tuple[Mapped, str | None]]

_SHOPIFY_ORDERS: Final[dict[str, str]] = {
    "orders/create": "order_completed",
    "orders/paid": "order_completed",
    "orders/updated": "order_updated",
    "orders/cancelled": "order_cancelled",
}
_SHOPIFY_CHECKOUTS: Final = ("checkouts/create", "checkouts/update")
_SHOPIFY_CUSTOMERS: Final = ("customers/create", "customers/update")
#: Shopify topic -> the event type it maps to (``consent_changed``: one per channel named).
SHOPIFY_TOPICS: Final[dict[str, str]] = {
    **_SHOPIFY_ORDERS,
    **dict.fromkeys(_SHOPIFY_CHECKOUTS, "checkout_started"),
    "refunds/create": "order_refunded",
    **dict.fromkeys(_SHOPIFY_CUSTOMERS, "consent_changed"),
}
#: WooCommerce order status -> the event type an ``order.*`` webhook maps to.
WOOCOMMERCE_STATUSES: Final[dict[str, str]] = {
    "processing": "order_completed",
    "completed": "order_completed",
    "pending": "checkout_started",
    "failed": "checkout_started",
    "on-hold": "checkout_started",
    "checkout-draft": "checkout_started",
    "cancelled": "order_cancelled",
}
WOOCOMMERCE_TOPICS: Final = frozenset(
    {"order.created", "order.updated", "customer.created", "customer.updated"}
)
_CONSENT: Final[dict[str, bool]] = {"subscribed": True, "unsubscribed": False}
_ITEM_RENAMES: Final = {"brand": "vendor", "category": "product_type"}


def verify_webhook(body: bytes, signature: str | None, secret: str | bytes) -> bool:
    """Whether ``signature`` is the base64 HMAC-SHA256 of the raw ``body`` under ``secret``:
    Shopify's ``X-Shopify-Hmac-Sha256`` and WooCommerce's ``X-WC-Webhook-Signature`` header.

    Check the raw bytes as received, before any JSON parsing; the comparison takes the same
    time whatever the signature.

    Examples
    --------
    >>> body = b'{"id": 1}'
    >>> good = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
    >>> verify_webhook(body, good, "s3cret"), verify_webhook(body + b" ", good, "s3cret")
    (True, False)
    """
    if not signature:
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    expected = base64.b64encode(hmac.new(key, bytes(body), hashlib.sha256).digest())
    return hmac.compare_digest(expected, signature.strip().encode())


class _Context:
    """What one call knows beyond a single delivery: product catalogue, order -> customer."""

    def __init__(
        self, catalog: Mapping[str, Mapping[str, Any]] | None, order_customers: Mapping[str, str] | None
    ) -> None:
        self.catalog = catalog or {}
        self.order_customers: dict[str, str] = dict(order_customers or {})


def _money(value: Any) -> Any:
    """A money string (``"59.00"``) as a float; anything else unchanged, for the schema to judge."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _id(value: Any) -> Any:
    """Platform ids are integers: ours are strings (``0`` and ``None``: no id)."""
    if value in (None, 0, ""):
        return None
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _stamp(value: Any, gmt: bool = False) -> Any:
    # WooCommerce's *_gmt dates are UTC without a zone.
    if gmt and isinstance(value, str) and value and value[-1] != "Z" and "+" not in value[10:]:
        return value + "Z"
    return value


def _products(
    items: Any, where: str, ctx: _Context, sources: dict[str, str], quantities: Sequence[Any] = ()
) -> list[Any]:
    """Line items as our products; records each one's path in ``sources``."""
    if not isinstance(items, list):
        return []
    out: list[Any] = []
    for i, item in enumerate(items):
        sources[f"products[{len(out)}]"] = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            out.append(item)
            continue
        product: dict[str, Any] = {}
        pid = _id(item.get("product_id")) or item.get("sku") or None
        if pid is not None:
            product["product_id"] = pid
        extra = ctx.catalog.get(pid, {}) if isinstance(pid, str) else {}
        product.update({k: v for k, v in extra.items() if v is not None})
        for theirs, ours in (("title", "title"), ("name", "title"), ("vendor", "brand"),
                             ("product_type", "category")):  # fmt: skip
            if item.get(theirs) not in (None, ""):
                product[ours] = item[theirs]
        if item.get("price") is not None:
            product["price"] = _money(item["price"])
        quantity = quantities[i] if i < len(quantities) else item.get("quantity")
        if quantity is not None:
            product["quantity"] = quantity
        if _money(item.get("total_discount")) not in (None, 0.0):
            product["discount"] = _money(item["total_discount"])
        out.append(product)
    return out


def _base(
    kind: str, user: Any, user_at: str, when: Any, when_at: str, event_id: str
) -> tuple[dict[str, Any], dict[str, str]]:
    out: dict[str, Any] = {"type": kind, "event_id": event_id}
    if user is not None:
        out["user_id"] = user
    if when is not None:
        out["timestamp"] = when
    return out, {"user_id": user_at, "timestamp": when_at, "event_id": "$.id"}


def _shopify_customer(payload: Mapping[str, Any]) -> Any:
    customer = payload.get("customer")
    return _id(customer.get("id")) if isinstance(customer, Mapping) else None


def _order_totals(
    out: dict[str, Any], sources: dict[str, str], payload: Mapping[str, Any], discount: str, coupons: str
) -> None:
    """An ``order_completed``'s discount (when not zero), first coupon code and currency."""
    amount = _money(payload.get(discount))
    if amount not in (None, 0.0):
        out["discount"], sources["discount"] = amount, f"$.{discount}"
    codes = payload.get(coupons)
    if isinstance(codes, list) and codes and isinstance(codes[0], Mapping):
        out["coupon"], sources["coupon"] = codes[0].get("code"), f"$.{coupons}[0].code"
    if payload.get("currency") is not None:
        out["currency"], sources["currency"] = payload["currency"], "$.currency"


def _shopify_order(payload: Mapping[str, Any], topic: str, ctx: _Context) -> Mapped:
    """An ``orders/*`` or ``checkouts/*`` body: one order-level event."""
    kind = _SHOPIFY_ORDERS.get(topic, "checkout_started")
    order = payload.get("id")
    user = _shopify_customer(payload)
    key = {
        "order_completed": f"shopify:order:{order}",
        "order_updated": f"shopify:order:{order}:updated:{payload.get('updated_at')}",
        "order_cancelled": f"shopify:order:{order}:cancelled",
        "checkout_started": f"shopify:checkout:{payload.get('token') or order}",
    }[kind]
    when_key = {"order_updated": "updated_at", "order_cancelled": "cancelled_at"}.get(kind, "created_at")
    if kind == "order_completed" and payload.get("processed_at"):
        when_key = "processed_at"
    out, sources = _base(kind, user, "$.customer.id", payload.get(when_key), f"$.{when_key}", key)
    out["products"] = _products(payload.get("line_items"), "$.line_items", ctx, sources)
    if payload.get("total_price") is not None:
        out["revenue"], sources["revenue"] = _money(payload["total_price"]), "$.total_price"
    if topic in _SHOPIFY_ORDERS:
        out["order_id"], sources["order_id"] = _id(order), "$.id"
        if user is not None and out["order_id"] is not None:
            ctx.order_customers[out["order_id"]] = user
    if kind == "order_completed":
        _order_totals(out, sources, payload, "total_discounts", "discount_codes")
    return [(out, sources)]


def _shopify_refund(payload: Mapping[str, Any], ctx: _Context) -> tuple[Mapped, str | None]:
    """A ``refunds/create`` body: the refunded items and the successful refund transactions."""
    order_id = _id(payload.get("order_id"))
    user = ctx.order_customers.get(order_id) if isinstance(order_id, str) else None
    if user is None:
        return [], f"No customer known for order {order_id!r}: pass `order_customers` - at `$.order_id`"
    when_key = "processed_at" if payload.get("processed_at") else "created_at"
    out, sources = _base("order_refunded", user, "$.order_id", payload.get(when_key),
                         f"$.{when_key}", f"shopify:refund:{payload.get('id')}")  # fmt: skip
    out["order_id"], sources["order_id"] = order_id, "$.order_id"
    lines = payload.get("refund_line_items")
    lines = lines if isinstance(lines, list) else []
    items = [line.get("line_item") if isinstance(line, Mapping) else line for line in lines]
    quantities = [line.get("quantity") if isinstance(line, Mapping) else None for line in lines]
    out["products"] = _products(items, "$.refund_line_items", ctx, sources, quantities)
    sources.update({k: v + ".line_item" for k, v in sources.items() if k.startswith("products[")})
    total = 0.0
    for i, tx in enumerate(payload.get("transactions") or []):
        if isinstance(tx, Mapping) and tx.get("kind") == "refund" and tx.get("status") == "success":
            amount = _money(tx.get("amount"))
            if not isinstance(amount, float):
                return [], f"Expected a money amount - at `$.transactions[{i}].amount`"
            total += amount
    out["revenue"], sources["revenue"] = total, "$.transactions"
    return [(out, sources)], None


def _shopify_consent(payload: Mapping[str, Any]) -> Mapped:
    """A ``customers/*`` body: a ``consent_changed`` per medium whose state is a decision."""
    user = _id(payload.get("id"))
    mapped: Mapped = []
    for medium, key in (("email", "email_marketing_consent"), ("sms", "sms_marketing_consent")):
        consent = payload.get(key)
        granted: bool | None = None
        when: Any = payload.get("updated_at")
        when_at = "$.updated_at"
        if isinstance(consent, Mapping):
            granted = _CONSENT.get(consent.get("state") or "")
            if consent.get("consent_updated_at"):
                when, when_at = consent["consent_updated_at"], f"$.{key}.consent_updated_at"
        elif medium == "email" and isinstance(payload.get("accepts_marketing"), bool):
            granted = payload["accepts_marketing"]
            if payload.get("accepts_marketing_updated_at"):
                when, when_at = payload["accepts_marketing_updated_at"], "$.accepts_marketing_updated_at"
        if granted is None:
            continue
        out, sources = _base("consent_changed", user, "$.id", when, when_at,
                             f"shopify:consent:{user}:{medium}:{when}")  # fmt: skip
        out.update(granted=granted, medium=medium, purpose="marketing")
        mapped.append((out, sources))
    return mapped


def _shopify(payload: Mapping[str, Any], topic: str, ctx: _Context) -> tuple[Mapped, str | None]:
    if topic in _SHOPIFY_ORDERS or topic in _SHOPIFY_CHECKOUTS:
        return _shopify_order(payload, topic, ctx), None
    if topic == "refunds/create":
        return _shopify_refund(payload, ctx)
    if topic in _SHOPIFY_CUSTOMERS:
        return _shopify_consent(payload), None
    return [], f"Unknown Shopify topic {topic!r} - at `topic`"


def _woocommerce(payload: Mapping[str, Any], topic: str, ctx: _Context) -> tuple[Mapped, str | None]:
    if topic in ("customer.created", "customer.updated"):
        return [], None
    if topic not in ("order.created", "order.updated"):
        return [], f"Unknown WooCommerce topic {topic!r} - at `topic`"
    status = payload.get("status")
    kind = WOOCOMMERCE_STATUSES.get(status) if isinstance(status, str) else None
    user = _id(payload.get("customer_id"))
    order_id = _id(payload.get("id"))
    mapped: Mapped = []
    if kind is not None:
        paid = kind == "order_completed"
        when_key = "date_paid_gmt" if paid and payload.get("date_paid_gmt") else "date_created_gmt"
        prefix = "order" if paid else "checkout" if kind == "checkout_started" else "cancelled"
        out, sources = _base(kind, user, "$.customer_id", _stamp(payload.get(when_key), gmt=True),
                             f"$.{when_key}", f"woocommerce:{prefix}:{order_id}")  # fmt: skip
        out["products"] = _products(payload.get("line_items"), "$.line_items", ctx, sources)
        if payload.get("total") is not None:
            out["revenue"], sources["revenue"] = _money(payload["total"]), "$.total"
        if paid:
            out["order_id"], sources["order_id"] = order_id, "$.id"
            _order_totals(out, sources, payload, "discount_total", "coupon_lines")
        mapped.append((out, sources))
    for i, refund in enumerate(payload.get("refunds") or []):
        if not isinstance(refund, Mapping):
            continue
        out, sources = _base("order_refunded", user, "$.customer_id",
                             _stamp(payload.get("date_modified_gmt"), gmt=True),
                             "$.date_modified_gmt", f"woocommerce:refund:{refund.get('id')}")  # fmt: skip
        amount = _money(refund.get("total"))
        # WooCommerce lists a refund's total as a negative amount.
        out["revenue"] = -amount if isinstance(amount, float) else amount
        sources["revenue"] = f"$.refunds[{i}].total"
        out["order_id"], sources["order_id"] = order_id, "$.id"
        mapped.append((out, sources))
    return mapped, None


def _deliveries(data: Any, topic: str | None, platform: str) -> Iterator[tuple[int, str, Any, str]]:
    """``(position, topic, payload, suffix)`` per delivery in ``data``."""
    if topic is not None:
        if isinstance(data, bytes | bytearray | memoryview | str):
            try:
                data = json.loads(bytes(data) if not isinstance(data, str) else data)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise SchemaError(f"{platform} webhook body is not valid JSON: {exc}", None) from None
        yield 0, topic, data, ""
        return
    if isinstance(data, bytes | bytearray | memoryview | str):
        for index, line in iter_lines(data):
            try:
                delivery = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                delivery = f"Invalid JSON: {exc}"
            yield from _delivery(index, delivery, f" (line {index + 1})")
        return
    if isinstance(data, Mapping):
        raise SchemaError(f"A single {platform} webhook body needs its `topic`", None)
    for index, delivery in enumerate(data):
        yield from _delivery(index, delivery, f" (delivery {index})")


def _delivery(index: int, delivery: Any, suffix: str) -> Iterator[tuple[int, str, Any, str]]:
    if isinstance(delivery, str):
        yield index, "", delivery, suffix
    elif not isinstance(delivery, Mapping) or not isinstance(delivery.get("topic"), str):
        yield index, "", "Expected `str` - at `$.topic`", suffix
    else:
        yield index, delivery["topic"], delivery.get("payload"), suffix


def _run(
    data: Any,
    topic: str | None,
    mapper: _Mapper,
    platform: str,
    errors: Errors,
    unknown_types: UnknownTypes,
    ctx: _Context,
) -> DecodeResult:
    out = _Collector(errors, unknown_types)
    for position, kind, payload, suffix in _deliveries(data, topic, platform):
        if not kind:
            out.reject(str(payload) + suffix, position)
            continue
        if not isinstance(payload, Mapping):
            out.reject("Expected `object` - at `$`" + suffix, position)
            continue
        mapped, reason = mapper(payload, kind, ctx)
        if not mapped:
            if reason is None or (reason.startswith("Unknown") and unknown_types == "skip"):
                out.n_unknown += 1
            else:
                out.reject(reason + suffix, position)
            continue
        # A delivery that gives several events is taken whole or not at all.
        converted = [to_event(one, sources, _ITEM_RENAMES) for one, sources in mapped]
        good = [c for c in converted if not isinstance(c, str)]
        if len(good) < len(converted):
            out.reject(next(c for c in converted if isinstance(c, str)) + suffix, position)
            continue
        for event in good:
            out.add(event, position, None, "")
    return out.result()


def from_shopify(
    data: bytes | bytearray | memoryview | str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    topic: str | None = None,
    catalog: Mapping[str, Mapping[str, Any]] | None = None,
    order_customers: Mapping[str, str] | None = None,
    errors: Errors = "raise",
    unknown_types: UnknownTypes = "raise",
) -> DecodeResult:
    """Map Shopify webhooks onto events: one body with its ``topic`` (the ``X-Shopify-Topic``
    header), or deliveries ``{"topic": ..., "payload": ...}`` as a list or NDJSON.

    ``catalog`` maps a product id to product fields the line item lacks (``category``,
    ``brand``); ``order_customers`` maps an order id to its customer id for ``refunds/create``
    (orders earlier in the same input are known already). A bad delivery is reported at its
    path, with ``(line N)`` or ``(delivery i)`` for several.

    Examples
    --------
    >>> customer = {"id": 207119551, "updated_at": "2024-10-02T09:00:00-04:00",
    ...             "email_marketing_consent": {"state": "unsubscribed",
    ...                 "consent_updated_at": "2024-10-02T09:00:00-04:00"}}
    >>> event = from_shopify(customer, topic="customers/update")[0]
    >>> type(event).__name__, event.user_id, event.granted, event.medium, event.purpose
    ('ConsentChanged', '207119551', False, 'email', 'marketing')
    >>> from_shopify({"id": 1, "created_at": "2024-10-01T12:00:00Z", "total_price": "5.00",
    ...               "line_items": []}, topic="orders/create")
    Traceback (most recent call last):
    ...
    affinity_sdk.errors.SchemaError: Object missing required field `user_id` - at `$.customer.id`
    """
    ctx = _Context(catalog, order_customers)
    return _run(data, topic, _shopify, "Shopify", errors, unknown_types, ctx)


def from_woocommerce(
    data: bytes | bytearray | memoryview | str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    topic: str | None = None,
    catalog: Mapping[str, Mapping[str, Any]] | None = None,
    errors: Errors = "raise",
    unknown_types: UnknownTypes = "raise",
) -> DecodeResult:
    """Map WooCommerce webhooks onto events: one body with its ``topic`` (the
    ``X-WC-Webhook-Topic`` header), or deliveries ``{"topic": ..., "payload": ...}`` as a list
    or NDJSON. ``catalog`` maps a product id to the ``category`` and ``brand`` line items lack.

    Examples
    --------
    >>> order = {"id": 727, "status": "pending", "customer_id": 26, "total": "21.00",
    ...          "date_created_gmt": "2024-10-01T16:00:00", "line_items": []}
    >>> event = from_woocommerce(order, topic="order.created")[0]
    >>> type(event).__name__, event.user_id, event.event_id, event.revenue
    ('CheckoutStarted', '26', 'woocommerce:checkout:727', 21.0)
    """
    ctx = _Context(catalog, None)
    return _run(data, topic, _woocommerce, "WooCommerce", errors, unknown_types, ctx)
