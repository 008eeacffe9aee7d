"""The typed event schema: frozen msgspec Structs, one per event type, tagged on ``type``.

Names follow the Segment e-commerce spec in snake_case. Every event carries ``user_id``,
``timestamp`` (an ISO-8601 string *with* a zone, or integer epoch milliseconds), optional
``event_id`` (used to drop replays), ``channel`` and ``session_id``. Unknown extra fields are
accepted and ignored, so producers can add fields before the SDK knows them.

Examples
--------
>>> import msgspec
>>> raw = b'{"type":"product_viewed","user_id":"u1","timestamp":1700000000000,'
>>> raw += b'"product":{"product_id":"p1","category":"shoes","brand":"acme","price":59.0}}'
>>> event = msgspec.json.decode(raw, type=Event)
>>> event.product.brand, timestamp_ms(event)
('acme', 1700000000000)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final, Literal, TypeAlias, Union

from msgspec import Meta, Struct

__all__ = [
    "CHANNELS",
    "EVENT_TYPES",
    "EVENT_TYPE_CODES",
    "MAX_AMOUNT",
    "AppInstalled",
    "AppOpened",
    "AppUninstalled",
    "CartViewed",
    "Channel",
    "CheckoutStarted",
    "ConsentChanged",
    "CouponApplied",
    "EmailClicked",
    "EmailOpened",
    "Event",
    "OrderCompleted",
    "OrderRefunded",
    "PageViewed",
    "Product",
    "ProductAdded",
    "ProductAddedToWishlist",
    "ProductListViewed",
    "ProductRemoved",
    "ProductViewed",
    "ProductsSearched",
    "PushOpened",
    "SmsClicked",
    "Unsubscribed",
    "default_channel",
    "timestamp_ms",
]

#: Largest accepted money amount (price, revenue, discount). Anything above is a data error.
MAX_AMOUNT: Final = 1e12
#: Epoch-ms bounds: 1900-01-01 .. 2200-01-01. Outside that a timestamp is a bug, not an event.
MIN_TS_MS: Final = -2_208_988_800_000
MAX_TS_MS: Final = 7_258_118_400_000

Channel: TypeAlias = Literal["web", "app", "email", "sms", "push", "store"]
#: Channel codes used in columnar batches (index in this tuple).
CHANNELS: Final[tuple[str, ...]] = ("web", "app", "email", "sms", "push", "store")

Amount = Annotated[float, Meta(ge=0.0, le=MAX_AMOUNT)]
Id = Annotated[str, Meta(min_length=1, max_length=512)]
Timestamp = Union[
    Annotated[datetime, Meta(tz=True)],
    Annotated[int, Meta(ge=MIN_TS_MS, le=MAX_TS_MS)],
]


class Product(Struct, frozen=True, kw_only=True):
    """A product as it appears in product-level events and in order line items."""

    product_id: Id
    category: Id
    brand: Id
    price: Amount
    discount: Amount | None = None
    quantity: Annotated[int, Meta(ge=1, le=1_000_000)] = 1


class _Event(Struct, frozen=True, kw_only=True, tag_field="type"):
    user_id: Id
    timestamp: Timestamp
    event_id: Id | None = None
    channel: Channel | None = None
    session_id: Id | None = None


# --- browsing -------------------------------------------------------------------------------
class PageViewed(_Event, frozen=True, tag="page_viewed"):
    url: str | None = None


class ProductViewed(_Event, frozen=True, tag="product_viewed"):
    product: Product


class ProductListViewed(_Event, frozen=True, tag="product_list_viewed"):
    list_id: str | None = None
    category: str | None = None
    products: list[Product] = []


class ProductsSearched(_Event, frozen=True, tag="products_searched"):
    query: str | None = None


# --- cart and wishlist ----------------------------------------------------------------------
class ProductAdded(_Event, frozen=True, tag="product_added"):
    product: Product
    cart_id: str | None = None


class ProductRemoved(_Event, frozen=True, tag="product_removed"):
    product: Product
    cart_id: str | None = None


class ProductAddedToWishlist(_Event, frozen=True, tag="product_added_to_wishlist"):
    product: Product
    wishlist_id: str | None = None


class CartViewed(_Event, frozen=True, tag="cart_viewed"):
    cart_id: str | None = None
    products: list[Product] = []


# --- checkout and orders --------------------------------------------------------------------
class CheckoutStarted(_Event, frozen=True, tag="checkout_started"):
    order_id: str | None = None
    products: list[Product] = []
    revenue: Amount | None = None


class CouponApplied(_Event, frozen=True, tag="coupon_applied"):
    coupon: str | None = None
    order_id: str | None = None
    discount: Amount | None = None


class OrderCompleted(_Event, frozen=True, tag="order_completed"):
    order_id: Id
    products: list[Product]
    revenue: Amount
    discount: Amount | None = None
    coupon: str | None = None
    currency: Annotated[str, Meta(min_length=3, max_length=3)] | None = None


class OrderRefunded(_Event, frozen=True, tag="order_refunded"):
    order_id: Id
    revenue: Amount | None = None
    products: list[Product] = []


# --- messaging ------------------------------------------------------------------------------
class EmailOpened(_Event, frozen=True, tag="email_opened"):
    campaign_id: Id | None = None


class EmailClicked(_Event, frozen=True, tag="email_clicked"):
    campaign_id: Id | None = None


class SmsClicked(_Event, frozen=True, tag="sms_clicked"):
    campaign_id: Id | None = None


class PushOpened(_Event, frozen=True, tag="push_opened"):
    campaign_id: Id | None = None


class Unsubscribed(_Event, frozen=True, tag="unsubscribed"):
    campaign_id: Id | None = None


# --- app lifecycle and consent --------------------------------------------------------------
class AppInstalled(_Event, frozen=True, tag="app_installed"):
    app_version: str | None = None


class AppOpened(_Event, frozen=True, tag="app_opened"):
    app_version: str | None = None


class AppUninstalled(_Event, frozen=True, tag="app_uninstalled"):
    app_version: str | None = None


class ConsentChanged(_Event, frozen=True, tag="consent_changed"):
    """``granted=False`` opts the user out of exports and triggers until consent is granted."""

    granted: bool


Event: TypeAlias = Union[
    PageViewed,
    ProductViewed,
    ProductListViewed,
    ProductsSearched,
    ProductAdded,
    ProductRemoved,
    ProductAddedToWishlist,
    CartViewed,
    CheckoutStarted,
    CouponApplied,
    OrderCompleted,
    OrderRefunded,
    EmailOpened,
    EmailClicked,
    SmsClicked,
    PushOpened,
    Unsubscribed,
    AppInstalled,
    AppOpened,
    AppUninstalled,
    ConsentChanged,
]

#: Every event type, in code order. Codes are persisted in state files: only ever append.
EVENT_TYPES: Final[tuple[str, ...]] = (
    "page_viewed",
    "product_viewed",
    "product_list_viewed",
    "products_searched",
    "product_added",
    "product_removed",
    "product_added_to_wishlist",
    "cart_viewed",
    "checkout_started",
    "coupon_applied",
    "order_completed",
    "order_refunded",
    "email_opened",
    "email_clicked",
    "sms_clicked",
    "push_opened",
    "unsubscribed",
    "app_installed",
    "app_opened",
    "app_uninstalled",
    "consent_changed",
)
EVENT_TYPE_CODES: Final[dict[str, int]] = {name: code for code, name in enumerate(EVENT_TYPES)}
EVENT_CLASSES: Final[dict[str, type[_Event]]] = {
    cls.__struct_config__.tag: cls
    for cls in Event.__args__  # type: ignore[attr-defined]
}

_DEFAULT_CHANNEL: Final[dict[str, Channel]] = {
    "email_opened": "email",
    "email_clicked": "email",
    "sms_clicked": "sms",
    "push_opened": "push",
    "app_installed": "app",
    "app_opened": "app",
    "app_uninstalled": "app",
}


def default_channel(event_type: str) -> Channel:
    """The channel assumed when an event does not say: ``email`` for email events, etc.

    Examples
    --------
    >>> default_channel("push_opened"), default_channel("product_viewed")
    ('push', 'web')
    """
    return _DEFAULT_CHANNEL.get(event_type, "web")


def timestamp_ms(event: _Event) -> int:
    """The event's timestamp as integer epoch milliseconds (UTC).

    Examples
    --------
    >>> import datetime as dt
    >>> e = AppOpened(user_id="u", timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    >>> timestamp_ms(e)
    1704067200000
    """
    ts = event.timestamp
    if isinstance(ts, int):
        return ts
    # timedelta arithmetic is exact to the microsecond; floor to whole milliseconds.
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
