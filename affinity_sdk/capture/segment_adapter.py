"""Adapter from Segment / RudderStack calls onto the typed events of :mod:`affinity_sdk.capture.events`.

Accepted input: one call (``{"type":"track","event":"Product Viewed","userId":..,"properties":{..}}``),
a list of calls, or the ``/v1/batch`` envelope ``{"batch":[...],"sentAt":..}``, as JSON bytes or
already-parsed dicts. Mapping rules:

- ``track``: the event name in the e-commerce spec's words ("Product Viewed", "Order Completed",
  "Product Added to Wishlist", ...) becomes the snake_case type; a few spec aliases are mapped too
  ("Email Link Clicked" -> ``email_clicked``, "Push Notification Tapped"/"Opened" -> ``push_opened``,
  "Application Installed"/"Opened"/"Uninstalled" -> ``app_*``, "Email Delivered" etc. -> the
  ``message_*`` family with its ``medium``). Other names are unknown types. Every Segment v2
  e-commerce event has a type; docs/segment.md has the table.
- ``page`` -> ``page_viewed`` (``properties.url``); ``screen`` -> ``page_viewed`` on channel ``app``;
  ``identify``, ``group`` and ``alias`` carry no behaviour and are skipped as events, counted in
  ``rejects.n_unknown``; the identity links in ``identify`` / ``alias`` calls are read by
  :func:`segment_links`, the ``traits`` of ``identify`` calls by :func:`segment_traits`.
- ``userId`` (or ``anonymousId`` when absent) -> ``user_id``; ``messageId`` -> ``event_id``;
  ``timestamp`` (else ``originalTimestamp``) -> ``timestamp``; ``properties.session_id`` or
  ``context.sessionId`` -> ``session_id``.
- channel: ``properties.channel`` if it is one of ours, else (``Order Completed`` only) the
  message medium ``context.campaign.medium`` names (UTM medium "email", "e-mail", "sms",
  "push", "whatsapp", ...: the order converts on that medium), else ``context.channel`` /
  top-level ``channel`` ("browser" -> web, "mobile" -> app, "server" -> none), else the type's
  default.
- time zone: ``context.timezone`` (an IANA name) becomes the user's ``timezone`` trait
  (:func:`segment_traits`), so send hours can be given in local time.
- product events take the product from flat properties (``product_id`` or ``sku``, and the
  optional ``category``, ``brand``, ``price``, ``quantity``, ``discount``); orders and lists take
  ``properties.products``; ``revenue`` falls back to ``total``, ``coupon`` to ``coupon_id`` /
  ``coupon_name``; message and consent events read ``medium`` (else a medium-valued ``channel``)
  from ``properties``. Properties a type does not know are ignored.

Errors name the call's position and the Segment path (``$.properties.price``), with the same
``errors="raise" | "skip" | "collect"`` modes as :mod:`affinity_sdk.capture.decode`.

Examples
--------
>>> call = {"type": "track", "event": "Product Viewed", "userId": "u1", "messageId": "m1",
...         "timestamp": "2024-05-01T10:00:00.000Z",
...         "properties": {"sku": "p1", "category": "shoes", "brand": "acme", "price": 59}}
>>> event = from_segment(call)[0]
>>> type(event).__name__, event.product.product_id, event.event_id
('ProductViewed', 'p1', 'm1')
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.decode import DecodeResult, Errors, UnknownTypes, _Collector, _where
from affinity_sdk.errors import SchemaError

__all__ = ["from_segment", "parse_segment", "segment_event_type", "segment_links", "segment_traits"]

_ALIASES: Final[dict[str, str]] = {
    "email link clicked": "email_clicked",
    "push notification tapped": "push_opened",
    "push notification opened": "push_opened",
    "push notification clicked": "push_opened",
    "sms link clicked": "sms_clicked",
    "application installed": "app_installed",
    "application opened": "app_opened",
    "application uninstalled": "app_uninstalled",
    "email unsubscribed": "unsubscribed",
    # Segment's Email and Push specs, onto the message family (medium below).
    "email sent": "message_sent",
    "email delivered": "message_delivered",
    "email bounced": "message_bounced",
    "email marked as spam": "message_marked_as_spam",
    "push notification sent": "message_sent",
    "push notification received": "message_delivered",
    "push notification bounced": "message_bounced",
    "sms sent": "message_sent",
    "sms delivered": "message_delivered",
    "sms bounced": "message_bounced",
}
#: The medium an alias implies (a message event otherwise reads ``properties.medium`` / ``channel``).
_ALIAS_MEDIUM: Final[dict[str, str]] = {
    "email sent": "email",
    "email delivered": "email",
    "email bounced": "email",
    "email marked as spam": "email",
    "email unsubscribed": "email",
    "push notification sent": "push",
    "push notification received": "push",
    "push notification bounced": "push",
    "sms sent": "sms",
    "sms delivered": "sms",
    "sms bounced": "sms",
}
_SKIPPED_CALLS: Final = frozenset({"identify", "group", "alias"})
#: Names sources give a channel (``context.channel``) or a medium (UTM ``context.campaign.medium``)
#: that are not one of ours, onto ours (``None``: no channel).
_CHANNEL_HINTS: Final[dict[str, str | None]] = {
    "browser": "web",
    "mobile": "app",
    "server": None,
    "client": "web",
    "e-mail": "email",
    "mail": "email",
    "newsletter": "email",
    "text": "sms",
    "push_notification": "push",
    "push-notification": "push",
    "push notification": "push",
    "wa": "whatsapp",
}
#: Channels that are message media: an order tagged with one converts on it.
_MESSAGE_CHANNELS: Final = frozenset(("email", "sms", "push", "whatsapp"))
#: Types whose one product sits in flat ``properties`` (``product_id`` / ``sku``, ``category``, ...).
_SINGLE: Final = frozenset(
    name for name, cls in ev.EVENT_CLASSES.items() if "product" in cls.__struct_fields__
)
#: Types with a ``medium`` field, and where a coupon's name may sit in the spec.
_WITH_MEDIUM: Final = frozenset(
    name for name, cls in ev.EVENT_CLASSES.items() if "medium" in cls.__struct_fields__
)
_COUPON_KEYS: Final = ("coupon", "coupon_id", "coupon_name")
_PRODUCT_KEYS: Final = ("product_id", "category", "brand", "price", "discount", "quantity")
_CONVERT_PATH: Final = re.compile(r"`\$((?:\.\w+|\[\d+\])*)`")


def segment_event_type(name: str) -> str | None:
    """Our event type for a Segment ``track`` event name, or ``None`` if it is not one of ours.

    Examples
    --------
    >>> segment_event_type("Product Added to Wishlist"), segment_event_type("Signed Up")
    ('product_added_to_wishlist', None)
    """
    key = _key(name)
    kind = _ALIASES.get(key, key.replace(" ", "_"))
    return kind if kind in ev.EVENT_TYPE_CODES else None


def _key(name: str) -> str:
    return " ".join(name.strip().lower().split())


def _medium(props: Mapping[str, Any], name: str | None) -> str | None:
    """A message's medium: ``properties.medium``, else ``properties.channel`` when it names one,
    else the one the event name implies ("Email Delivered": email)."""
    for key in ("medium", "channel"):
        given = props.get(key)
        if isinstance(given, str) and given in ev.MEDIA:
            return given
    return None if name is None else _ALIAS_MEDIUM.get(_key(name))


def _product(props: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: props[k] for k in _PRODUCT_KEYS if k in props}
    if "product_id" not in out and "sku" in props:
        out["product_id"] = props["sku"]
    return out


def _campaign_medium(call: Mapping[str, Any]) -> str | None:
    """The message channel ``context.campaign.medium`` (UTM medium) names, if it names one."""
    context = call.get("context")
    campaign = context.get("campaign") if isinstance(context, Mapping) else None
    medium = campaign.get("medium") if isinstance(campaign, Mapping) else None
    if not isinstance(medium, str):
        return None
    key = _key(medium)
    channel = key if key in ev.CHANNELS else _CHANNEL_HINTS.get(key)
    return channel if channel in _MESSAGE_CHANNELS else None


def _channel(call: Mapping[str, Any], props: Mapping[str, Any], kind: str) -> str | None:
    given = props.get("channel")
    if isinstance(given, str) and given in ev.CHANNELS:
        return given
    if kind == "order_completed":  # the message the order came through, before the library's channel
        medium = _campaign_medium(call)
        if medium is not None:
            return medium
    context = call.get("context")
    hint = context.get("channel") if isinstance(context, Mapping) else None
    hint = hint if isinstance(hint, str) else call.get("channel")
    if isinstance(hint, str):
        return hint if hint in ev.CHANNELS else _CHANNEL_HINTS.get(hint)
    return None


def _map_call(call: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Our event as a dict, or ``(None, reason)`` when the call is skipped / unknown."""
    kind_of_call = call.get("type")
    if not isinstance(kind_of_call, str):
        return None, "Expected `str` - at `$.type`"
    props = call.get("properties")
    props = props if isinstance(props, Mapping) else {}
    if kind_of_call == "track":
        name = call.get("event")
        if not isinstance(name, str):
            return None, "Expected `str` - at `$.event`"
        kind = segment_event_type(name)
        if kind is None:
            return None, f"Unknown event type {name!r} - at `$.event`"
    elif kind_of_call in ("page", "screen"):
        kind = "page_viewed"
    elif kind_of_call in _SKIPPED_CALLS:
        return None, None
    else:
        return None, f"Unknown call type {kind_of_call!r} - at `$.type`"

    out: dict[str, Any] = {"type": kind}
    user = call.get("userId")
    out["user_id"] = user if user not in (None, "") else call.get("anonymousId")
    stamp = call.get("timestamp", call.get("originalTimestamp"))
    if stamp is not None:
        out["timestamp"] = stamp
    if call.get("messageId") is not None:
        out["event_id"] = call["messageId"]
    channel = "app" if kind_of_call == "screen" else _channel(call, props, kind)
    if channel is not None:
        out["channel"] = channel
    context = call.get("context")
    session = props.get("session_id")
    if session is None and isinstance(context, Mapping):
        session = context.get("sessionId")
    if session is not None:
        out["session_id"] = session
    fields = _EVENT_FIELDS[kind]
    if kind == "page_viewed":
        if "url" in props:
            out["url"] = props["url"]
        return out, None
    if kind in _SINGLE:
        out["product"] = _product(props)
        skip = frozenset(("product", *_PRODUCT_KEYS))
    else:
        skip = frozenset(("products",))
        if "products" in props:
            products = props["products"]
            out["products"] = (
                [_product(p) if isinstance(p, Mapping) else p for p in products]
                if isinstance(products, list)
                else products
            )
    for key, value in props.items():
        if key in fields and key not in skip and key not in _RESERVED:
            out[key] = value
    if "revenue" in fields and "revenue" not in out and "total" in props:
        out["revenue"] = props["total"]
    if "coupon" in fields and out.get("coupon") is None:
        coupon = next((props[k] for k in _COUPON_KEYS if props.get(k) is not None), None)
        if coupon is not None:
            out["coupon"] = coupon
    if kind in _WITH_MEDIUM:
        medium = _medium(props, call.get("event") if kind_of_call == "track" else None)
        if medium is not None:
            out["medium"] = medium
    return out, None


#: Fields set from the call itself, never from ``properties``.
_RESERVED: Final = frozenset(("type", "user_id", "timestamp", "event_id", "channel", "session_id", "medium"))
_EVENT_FIELDS: Final[dict[str, frozenset[str]]] = {
    name: frozenset(cls.__struct_fields__) for name, cls in ev.EVENT_CLASSES.items()
}


def _segment_path(path: str, kind: str) -> str:
    """Translate a path in our schema back to where the value sat in the Segment call."""
    if path == "":
        return ""
    head, _, rest = path[1:].partition(".") if path.startswith(".") else (path, "", "")
    head_name = head.split("[")[0]
    top = {"user_id": ".userId", "event_id": ".messageId", "timestamp": ".timestamp", "type": ".event"}
    if head_name in top:
        return top[head_name]
    if head_name == "product" and kind in _SINGLE:
        return ".properties" + ("." + rest if rest else "")
    return ".properties" + path if path.startswith(".") else path


def _segment_message(message: str, kind: str) -> str:
    return _CONVERT_PATH.sub(lambda m: f"`${_segment_path(m.group(1), kind)}`", message, count=1)


def parse_segment(data: Any) -> Any:
    """``data`` decoded once if it is JSON bytes or text (a call, a list, or a ``/v1/batch``
    body), else as it is; the one place Segment JSON is decoded, so :func:`from_segment` and
    :func:`segment_links` can share one parse.

    Examples
    --------
    >>> parse_segment(b'{"batch": []}')
    {'batch': []}
    """
    if isinstance(data, bytes | bytearray | memoryview | str):
        try:
            return msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise SchemaError(f"Segment payload is not valid JSON: {exc}", None) from None
    return data


def _calls(data: Any) -> tuple[list[Any], str | None]:
    """The calls in ``data`` and the path prefix of call ``i`` (``None``: a single call)."""
    data = parse_segment(data)
    if isinstance(data, Mapping) and "batch" in data:
        batch = data["batch"]
        if not isinstance(batch, list):
            raise SchemaError("Expected `array` - at `$.batch`", None)
        return batch, "$.batch"
    if isinstance(data, Sequence) and not isinstance(data, str):
        return list(data), "$"
    return [data], None


def from_segment(
    data: bytes | bytearray | memoryview | str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    errors: Errors = "raise",
    unknown_types: UnknownTypes = "raise",
) -> DecodeResult:
    """Map Segment / RudderStack calls (one, a list, or a ``/v1/batch`` envelope) onto events.

    Bad calls are reported with their index in the batch and the Segment path, e.g.
    ``Expected `float` >= 0.0 - at `$.batch[1].properties.price```; skipped calls
    (identify, group, alias, and unknown names with ``unknown_types="skip"``) are counted in
    ``rejects.n_unknown``.

    Examples
    --------
    >>> body = {"batch": [
    ...     {"type": "identify", "userId": "u1", "traits": {}},
    ...     {"type": "track", "event": "Email Opened", "userId": "u1", "timestamp": 1700000000000,
    ...      "properties": {"campaign_id": "spring"}}]}
    >>> result = from_segment(body)
    >>> [type(e).__name__ for e in result], result.rejects.n_unknown
    (['EmailOpened'], 1)
    >>> bad = {"type": "track", "event": "Product Added", "userId": "u", "timestamp": 0,
    ...        "properties": {"sku": "p", "category": "c", "brand": "b", "price": -1}}
    >>> from_segment(bad)
    Traceback (most recent call last):
    ...
    affinity_sdk.errors.SchemaError: Expected `float` >= 0.0 - at `$.properties.price`
    """
    calls, prefix = _calls(data)
    out = _Collector(errors, unknown_types)

    def where(message: str, index: int) -> str:
        if prefix is None:
            return message
        return _where(message, index, "").replace(" - at `$[", f" - at `{prefix}[", 1)

    for index, call in enumerate(calls):
        if not isinstance(call, Mapping):
            out.reject(where("Expected `object` - at `$`", index), index)
            continue
        mapped, reason = _map_call(call)
        if mapped is None:
            if reason is None or (reason.startswith("Unknown") and unknown_types == "skip"):
                out.n_unknown += 1
            else:
                out.reject(where(reason, index), index)
            continue
        try:
            event: ev.Event = msgspec.convert(mapped, ev.Event)
        except msgspec.ValidationError as exc:
            message = _segment_message(str(exc), mapped["type"])
            out.reject(where(message, index), index)
            continue
        ts = ev.timestamp_ms(event)
        if not ev.MIN_TS_MS <= ts <= ev.MAX_TS_MS:
            message = f"Timestamp {ts} ms is outside 1900-01-01 .. 2200-01-01 - at `$.timestamp`"
            out.reject(where(message, index), index)
            continue
        out.add(event, index, None, "")
    return out.result()


def segment_links(
    data: bytes | bytearray | memoryview | str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> list[tuple[str, str]]:
    """The identity links in Segment / RudderStack calls, in call order: ``identify`` links its
    ``anonymousId`` into its ``userId`` (when it carries both), ``alias`` its ``previousId`` into
    its ``userId``. Feed them to :meth:`Scorer.identify <affinity_sdk.score.scorer.Scorer.identify>`
    (:meth:`~affinity_sdk.score.scorer.Scorer.ingest_segment` does both).

    Examples
    --------
    >>> segment_links([{"type": "identify", "anonymousId": "a1", "userId": "ann", "traits": {}},
    ...                {"type": "alias", "previousId": "old-ann", "userId": "ann"},
    ...                {"type": "identify", "userId": "bob"}])
    [('a1', 'ann'), ('old-ann', 'ann')]
    """
    calls, _ = _calls(data)
    links: list[tuple[str, str]] = []
    for call in calls:
        if not isinstance(call, Mapping):
            continue
        kind = call.get("type")
        source = call.get("anonymousId") if kind == "identify" else call.get("previousId")
        target = call.get("userId")
        if kind in ("identify", "alias") and isinstance(source, str) and isinstance(target, str):
            if source and target and source != target:
                links.append((source, target))
    return links


def segment_traits(
    data: bytes | bytearray | memoryview | str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> list[tuple[str, dict[str, Any], int | None]]:
    """The traits of ``identify`` calls, in call order: ``(user id, traits, time in epoch ms)``
    with the call's ``traits`` (Segment) over its ``context.traits`` (where RudderStack's SDKs
    put them) over its ``context.timezone`` (as trait ``timezone``), the ``userId`` (else the
    ``anonymousId``) and the call's ``timestamp`` (else ``originalTimestamp``; ``None`` when it
    has neither or it does not parse). Any other call with a ``context.timezone`` gives
    ``{"timezone": ...}`` for its user: the latest call's zone is the user's. Calls without an
    id or with empty traits give nothing; trait names that are not non-empty strings are left
    out. Feed them to :meth:`ProfileStore.set_traits
    <affinity_sdk.profile.store.ProfileStore.set_traits>` (:meth:`Scorer.ingest_segment
    <affinity_sdk.score.scorer.Scorer.ingest_segment>` does).

    Examples
    --------
    >>> segment_traits([{"type": "identify", "anonymousId": "a1", "userId": "ann",
    ...                  "timestamp": "2026-01-01T00:00:00Z", "traits": {"plan": "gold"}},
    ...                 {"type": "track", "userId": "ann", "event": "Order Completed"}])
    [('ann', {'plan': 'gold'}, 1767225600000)]
    >>> segment_traits({"type": "identify", "userId": "bob", "timestamp": 5,
    ...                 "context": {"traits": {"plan": "free", "city": "Oslo"}}, "traits": {"plan": "pro"}})
    [('bob', {'plan': 'pro', 'city': 'Oslo'}, 5)]
    >>> segment_traits({"type": "track", "event": "Email Opened", "userId": "cy", "timestamp": 9,
    ...                 "context": {"timezone": "Asia/Tokyo"}})
    [('cy', {'timezone': 'Asia/Tokyo'}, 9)]
    """
    from affinity_sdk._units import to_epoch_ms

    calls, _ = _calls(data)
    out: list[tuple[str, dict[str, Any], int | None]] = []
    for call in calls:
        if not isinstance(call, Mapping):
            continue
        context = call.get("context")
        context = context if isinstance(context, Mapping) else {}
        zone = context.get("timezone")
        merged: dict[Any, Any] = {"timezone": zone} if isinstance(zone, str) and zone else {}
        if call.get("type") == "identify":
            for traits in (context.get("traits"), call.get("traits")):
                if isinstance(traits, Mapping):
                    merged.update(traits)
        user = call.get("userId") or call.get("anonymousId")
        if not isinstance(user, str) or not user:
            continue
        kept = {k: v for k, v in merged.items() if isinstance(k, str) and k}
        if not kept:
            continue
        stamp = call.get("timestamp", call.get("originalTimestamp"))
        try:
            at_ms = None if stamp is None or isinstance(stamp, float) else to_epoch_ms(stamp)
        except (ValueError, TypeError, AttributeError):
            at_ms = None
        out.append((user, kept, at_ms))
    return out
