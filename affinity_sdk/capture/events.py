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
    "ACTIVITY_TYPES",
    "CHANNELS",
    "EVENT_TYPES",
    "EVENT_TYPE_CODES",
    "MAX_AMOUNT",
    "MEDIA",
    "MESSAGE_ACTIONS",
    "RECEIVED_TYPES",
    "AppInstalled",
    "AppOpened",
    "AppUninstalled",
    "CartShared",
    "CartViewed",
    "Channel",
    "CheckoutStarted",
    "CheckoutStepCompleted",
    "CheckoutStepViewed",
    "ConsentChanged",
    "CouponApplied",
    "CouponDenied",
    "CouponEntered",
    "CouponRemoved",
    "EmailClicked",
    "EmailOpened",
    "Event",
    "Medium",
    "MessageBounced",
    "MessageClicked",
    "MessageDelivered",
    "MessageMarkedAsSpam",
    "MessageOpened",
    "MessageSent",
    "OrderCancelled",
    "OrderCompleted",
    "OrderRefunded",
    "OrderUpdated",
    "PageViewed",
    "PaymentInfoEntered",
    "Product",
    "ProductAdded",
    "ProductAddedToWishlist",
    "ProductClicked",
    "ProductListFiltered",
    "ProductListViewed",
    "ProductRemoved",
    "ProductRemovedFromWishlist",
    "ProductReviewed",
    "ProductShared",
    "ProductViewed",
    "ProductsSearched",
    "PromotionClicked",
    "PromotionViewed",
    "PushOpened",
    "SmsClicked",
    "Unsubscribed",
    "WishlistProductAddedToCart",
    "default_channel",
    "event_channel",
    "message_action",
    "timestamp_ms",
]

#: Largest accepted money amount (price, revenue, discount). Anything above is a data error.
MAX_AMOUNT: Final = 1e12
#: Epoch-ms bounds: 1900-01-01 .. 2200-01-01. Outside that a timestamp is a bug, not an event.
MIN_TS_MS: Final = -2_208_988_800_000
MAX_TS_MS: Final = 7_258_118_400_000

Channel: TypeAlias = Literal["web", "app", "email", "sms", "push", "store", "whatsapp"]
#: Channel codes used in columnar batches (index in this tuple; codes are stored, so only append).
CHANNELS: Final[tuple[str, ...]] = ("web", "app", "email", "sms", "push", "store", "whatsapp")
#: Where a message is delivered; ``medium`` on message and consent events (see docs/messages.md).
Medium: TypeAlias = Literal["email", "sms", "push", "in_app", "whatsapp"]
#: Message media in code order (only ever append).
MEDIA: Final[tuple[str, ...]] = ("email", "sms", "push", "in_app", "whatsapp")

Amount = Annotated[float, Meta(ge=0.0, le=MAX_AMOUNT)]
Id = Annotated[str, Meta(min_length=1, max_length=512)]
Timestamp = Union[
    Annotated[datetime, Meta(tz=True)],
    Annotated[int, Meta(ge=MIN_TS_MS, le=MAX_TS_MS)],
]


class Product(Struct, frozen=True, kw_only=True):
    """A product as it appears in product-level events and in order line items.

    Only ``product_id`` is required, as in the Segment spec; a line without ``category`` /
    ``brand`` / ``price`` feeds no affinity on that dimension.
    """

    product_id: Id
    category: Id | None = None
    brand: Id | None = None
    price: Amount | None = None
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
    medium: Medium | None = None


# --- app lifecycle and consent --------------------------------------------------------------
class AppInstalled(_Event, frozen=True, tag="app_installed"):
    app_version: str | None = None


class AppOpened(_Event, frozen=True, tag="app_opened"):
    app_version: str | None = None


class AppUninstalled(_Event, frozen=True, tag="app_uninstalled"):
    app_version: str | None = None


class ConsentChanged(_Event, frozen=True, tag="consent_changed"):
    """``granted=False`` opts the user out of exports and triggers until consent is granted.

    Without ``medium`` the decision covers every channel (the global opt-out); with one it covers
    only messages on that medium (per-channel consent). ``purpose`` ("marketing", ...) is kept for
    the record; it does not change what the decision covers.
    """

    granted: bool
    medium: Medium | None = None
    purpose: Annotated[str, Meta(min_length=1, max_length=512)] | None = None


# --- the rest of the Segment v2 e-commerce spec (codes appended after consent_changed) ------------
class ProductClicked(_Event, frozen=True, tag="product_clicked"):
    product: Product
    list_id: str | None = None


class ProductListFiltered(_Event, frozen=True, tag="product_list_filtered"):
    list_id: str | None = None
    category: str | None = None
    products: list[Product] = []


class _Promotion(_Event, frozen=True):
    promotion_id: str | None = None
    creative: str | None = None
    name: str | None = None
    position: str | None = None


class PromotionViewed(_Promotion, frozen=True, tag="promotion_viewed"):
    pass


class PromotionClicked(_Promotion, frozen=True, tag="promotion_clicked"):
    pass


class _CheckoutStep(_Event, frozen=True):
    checkout_id: str | None = None
    order_id: str | None = None
    step: Annotated[int, Meta(ge=0, le=1_000)] | None = None
    shipping_method: str | None = None
    payment_method: str | None = None


class CheckoutStepViewed(_CheckoutStep, frozen=True, tag="checkout_step_viewed"):
    pass


class CheckoutStepCompleted(_CheckoutStep, frozen=True, tag="checkout_step_completed"):
    pass


class PaymentInfoEntered(_CheckoutStep, frozen=True, tag="payment_info_entered"):
    pass


class OrderUpdated(_Event, frozen=True, tag="order_updated"):
    order_id: str | None = None
    products: list[Product] = []
    revenue: Amount | None = None


class OrderCancelled(_Event, frozen=True, tag="order_cancelled"):
    order_id: str | None = None
    products: list[Product] = []
    revenue: Amount | None = None


class _Coupon(_Event, frozen=True):
    coupon: str | None = None
    order_id: str | None = None
    cart_id: str | None = None


class CouponEntered(_Coupon, frozen=True, tag="coupon_entered"):
    pass


class CouponDenied(_Coupon, frozen=True, tag="coupon_denied"):
    reason: str | None = None


class CouponRemoved(_Coupon, frozen=True, tag="coupon_removed"):
    discount: Amount | None = None


class ProductRemovedFromWishlist(_Event, frozen=True, tag="product_removed_from_wishlist"):
    product: Product
    wishlist_id: str | None = None


class WishlistProductAddedToCart(_Event, frozen=True, tag="wishlist_product_added_to_cart"):
    product: Product
    wishlist_id: str | None = None
    cart_id: str | None = None


class ProductShared(_Event, frozen=True, tag="product_shared"):
    product: Product
    share_via: str | None = None


class CartShared(_Event, frozen=True, tag="cart_shared"):
    cart_id: str | None = None
    share_via: str | None = None
    products: list[Product] = []


class ProductReviewed(_Event, frozen=True, tag="product_reviewed"):
    product: Product
    review_id: str | None = None
    rating: Annotated[float, Meta(ge=0.0, le=1e6)] | None = None


# --- messages on any medium (email_* / sms_* / push_* above stay as they were) -------------------
class _Message(_Event, frozen=True):
    medium: Medium
    campaign_id: Id | None = None


class MessageSent(_Message, frozen=True, tag="message_sent"):
    pass


class MessageDelivered(_Message, frozen=True, tag="message_delivered"):
    pass


class MessageOpened(_Message, frozen=True, tag="message_opened"):
    pass


class MessageClicked(_Message, frozen=True, tag="message_clicked"):
    pass


class MessageBounced(_Message, frozen=True, tag="message_bounced"):
    pass


class MessageMarkedAsSpam(_Message, frozen=True, tag="message_marked_as_spam"):
    pass


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
    ProductClicked,
    ProductListFiltered,
    PromotionViewed,
    PromotionClicked,
    CheckoutStepViewed,
    CheckoutStepCompleted,
    PaymentInfoEntered,
    OrderUpdated,
    OrderCancelled,
    CouponEntered,
    CouponDenied,
    CouponRemoved,
    ProductRemovedFromWishlist,
    WishlistProductAddedToCart,
    ProductShared,
    CartShared,
    ProductReviewed,
    MessageSent,
    MessageDelivered,
    MessageOpened,
    MessageClicked,
    MessageBounced,
    MessageMarkedAsSpam,
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
EVENT_TYPE_CODES: Final[dict[str, int]] = {name: code for code, name in enumerate(EVENT_TYPES)}
#: Event types that record a message sent to a person, not something the person did: they are no
#: part of their activity (someone who only receives messages is not active, and has churned when
#: nothing else came from them).
RECEIVED_TYPES: Final[tuple[str, ...]] = ("message_sent", "message_delivered", "message_bounced")
#: What a person did: every other type.
ACTIVITY_TYPES: Final[tuple[str, ...]] = tuple(t for t in EVENT_TYPES if t not in RECEIVED_TYPES)
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


#: Message event type -> (action, medium fixed by the type or ``None``: read from ``medium``).
#: The legacy per-medium types share their action with the ``message_*`` family, so open and click
#: rates count both spellings.
MESSAGE_ACTIONS: Final[dict[str, tuple[str, Medium | None]]] = {
    "message_sent": ("sent", None),
    "message_delivered": ("delivered", None),
    "message_opened": ("opened", None),
    "message_clicked": ("clicked", None),
    "message_bounced": ("bounced", None),
    "message_marked_as_spam": ("marked_as_spam", None),
    "unsubscribed": ("unsubscribed", None),
    "email_opened": ("opened", "email"),
    "email_clicked": ("clicked", "email"),
    "sms_clicked": ("clicked", "sms"),
    "push_opened": ("opened", "push"),
}
#: The batch channel of a message on each medium (in-app messages happen in the app).
_MEDIUM_CHANNEL: Final[dict[str, Channel]] = {
    "email": "email",
    "sms": "sms",
    "push": "push",
    "in_app": "app",
    "whatsapp": "whatsapp",
}


def message_action(event: _Event) -> tuple[str, Medium] | None:
    """``(action, medium)`` of a message event (``None`` for other events): legacy types and the
    ``message_*`` family alike, so rates can be computed over both. An ``unsubscribed`` event
    without ``medium`` is an email unsubscribe unless its ``channel`` names sms, push or whatsapp.

    Examples
    --------
    >>> message_action(EmailOpened(user_id="u", timestamp=0))
    ('opened', 'email')
    >>> message_action(MessageClicked(user_id="u", timestamp=0, medium="whatsapp"))
    ('clicked', 'whatsapp')
    >>> message_action(AppOpened(user_id="u", timestamp=0)) is None
    True
    """
    kind: str = event.__struct_config__.tag  # type: ignore[assignment]
    entry = MESSAGE_ACTIONS.get(kind)
    if entry is None:
        return None
    action, medium = entry
    if medium is not None:
        return action, medium
    given: Medium | None = getattr(event, "medium", None)
    if given is None:
        channel = event.channel
        given = channel if channel == "sms" or channel == "push" or channel == "whatsapp" else "email"
    return action, given


def event_channel(event: _Event) -> Channel:
    """The batch channel of ``event``: its ``channel``, else (for the ``message_*`` family) its
    medium's channel, else the type's :func:`default_channel`.

    Examples
    --------
    >>> event_channel(MessageOpened(user_id="u", timestamp=0, medium="in_app"))
    'app'
    >>> event_channel(PageViewed(user_id="u", timestamp=0, channel="store"))
    'store'
    """
    if event.channel is not None:
        return event.channel
    if isinstance(event, _Message):  # only this family: other types' medium leaves the channel be
        return _MEDIUM_CHANNEL[event.medium]
    kind: str = event.__struct_config__.tag  # type: ignore[assignment]
    return default_channel(kind)


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
