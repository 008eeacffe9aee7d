"""Adapter from Snowplow onto the typed events of :mod:`affinity_sdk.capture.events`.

Two inputs, one mapping:

- the **tracker protocol**: the body a tracker POSTs to ``/com.snowplowanalytics.snowplow/tp2``
  (``{"schema": "iglu:.../payload_data/jsonschema/1-0-4", "data": [{"e": "ue", ...}, ...]}``,
  every value a string; ``ue_pr`` / ``ue_px`` and ``co`` / ``cx`` as JSON or base64url JSON),
  read by :func:`from_snowplow`;
- the **enriched event TSV** (the 131-column canonical format an enricher writes, one event a
  line), read by :func:`from_snowplow_tsv`.

Events (``e`` in the protocol, the ``event`` column in the TSV):

- ``pv`` / ``page_view`` -> ``page_viewed`` (``url``);
- ``ue`` / ``unstruct`` with the e-commerce plugin's
  ``iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-x``:
  its ``type`` picks ours from :data:`ACTION_TYPES`, the ``product``, ``cart``, ``transaction``,
  ``refund`` and ``checkout_step`` context entities fill the fields. ``product_view``,
  ``add_to_cart``, ``remove_from_cart`` and ``list_click`` give one event per product entity
  (the first keeps the event id, the k-th gets ``"{eid}:{k}"``); a ``checkout_step`` is
  ``checkout_step_completed`` and, at step 1, also ``checkout_started`` (``"{eid}:started"``);
  promotions take the ``promotion`` entity;
- ``tr`` / ``transaction`` (the legacy e-commerce events) -> ``order_completed``, with the
  ``ti`` / ``transaction_item`` events of the same order in the same input as its products (the
  items themselves are counted in ``rejects.n_unknown``);
- anything else (page pings, structured events, other schemas, ``trns_error``) is an unknown
  type, handled by ``unknown_types``.

Ids: ``uid`` (``user_id``), else ``duid`` (``domain_userid``), else ``nuid``
(``network_userid``) -> ``user_id``; ``eid`` -> ``event_id``; ``sid`` (``domain_sessionid``) ->
``session_id``; ``ttm``, else ``dtm`` (TSV: ``true_tstamp``, ``derived_tstamp``,
``dvce_created_tstamp``, ``collector_tstamp``) -> ``timestamp``; platform ``web`` -> web,
``mob`` / ``app`` -> app. Errors name the payload path (``$.data[1].cx.data[0].data.price``, the
column for the TSV plus ``(line N)``) with the ``errors`` modes of :mod:`affinity_sdk.capture.decode`.

Examples
--------
>>> import json
>>> action = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
...           "data": {"schema": ECOMMERCE_ACTION, "data": {"type": "product_view"}}}
>>> product = {"schema": PRODUCT_ENTITY,
...            "data": {"id": "p1", "category": "shoes", "brand": "acme", "price": 59,
...                     "currency": "EUR"}}
>>> hit = {"e": "ue", "eid": "e1", "dtm": "1714557600000", "uid": "u1", "p": "web",
...        "ue_pr": json.dumps(action),
...        "co": json.dumps({"schema": CONTEXTS, "data": [product]})}
>>> event = from_snowplow({"schema": PAYLOAD_DATA, "data": [hit]})[0]
>>> type(event).__name__, event.product.product_id, event.event_id, event.channel
('ProductViewed', 'p1', 'e1', 'web')
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from affinity_sdk._units import to_epoch_ms
from affinity_sdk.capture import events as ev
from affinity_sdk.capture._mapped import to_event
from affinity_sdk.capture.decode import DecodeResult, Errors, UnknownTypes, _Collector, iter_lines
from affinity_sdk.errors import SchemaError

__all__ = [
    "ACTION_TYPES",
    "CONTEXTS",
    "ECOMMERCE_ACTION",
    "ENRICHED_COLUMNS",
    "PAYLOAD_DATA",
    "PRODUCT_ENTITY",
    "from_snowplow",
    "from_snowplow_tsv",
]

_ECOM: Final = "iglu:com.snowplowanalytics.snowplow.ecommerce/"
#: The e-commerce plugin's action event (the version suffix is not checked: 1-0-0 .. 1-0-2).
ECOMMERCE_ACTION: Final = _ECOM + "snowplow_ecommerce_action/jsonschema/1-0-2"
PRODUCT_ENTITY: Final = _ECOM + "product/jsonschema/1-0-0"
PAYLOAD_DATA: Final = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
CONTEXTS: Final = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"

#: The plugin's action ``type`` -> our event type (a ``checkout_step`` at step 1 also gives a
#: ``checkout_started``). A type the schema lacks would count as unknown.
ACTION_TYPES: Final[dict[str, str]] = {
    "product_view": "product_viewed",
    "add_to_cart": "product_added",
    "remove_from_cart": "product_removed",
    "checkout_step": "checkout_step_completed",
    "transaction": "order_completed",
    "refund": "order_refunded",
    "list_view": "product_list_viewed",
    "list_click": "product_clicked",
    "promo_view": "promotion_viewed",
    "promo_click": "promotion_clicked",
}
_PER_PRODUCT: Final = frozenset({"product_viewed", "product_added", "product_removed", "product_clicked"})
_PROMOTION: Final = {"id": "promotion_id", "name": "name", "creative_id": "creative", "position": "position"}
_CHECKOUT_STEP: Final = {
    "step": "step",
    "delivery_method": "shipping_method",
    "payment_method": "payment_method",
}
_PLATFORMS: Final[dict[str, str]] = {"web": "web", "mob": "app", "app": "app"}
#: Product entity field -> ours (the entity's ``name`` is the product's title).
_PRODUCT_FIELDS: Final = {"id": "product_id", "category": "category", "brand": "brand",
                          "price": "price", "quantity": "quantity", "name": "title"}  # fmt: skip
_PRODUCT_RENAMES: Final = {ours: theirs for theirs, ours in _PRODUCT_FIELDS.items()}
_LEGACY_ITEM: Final = {"ti_sk": "product_id", "ti_ca": "category", "ti_pr": "price",
                       "ti_qu": "quantity", "ti_nm": "title"}  # fmt: skip

#: The canonical enriched event's columns, in order (131 of them).
ENRICHED_COLUMNS: Final[tuple[str, ...]] = tuple(
    """app_id platform etl_tstamp collector_tstamp dvce_created_tstamp event event_id txn_id
    name_tracker v_tracker v_collector v_etl user_id user_ipaddress user_fingerprint domain_userid
    domain_sessionidx network_userid geo_country geo_region geo_city geo_zipcode geo_latitude
    geo_longitude geo_region_name ip_isp ip_organization ip_domain ip_netspeed page_url page_title
    page_referrer page_urlscheme page_urlhost page_urlport page_urlpath page_urlquery
    page_urlfragment refr_urlscheme refr_urlhost refr_urlport refr_urlpath refr_urlquery
    refr_urlfragment refr_medium refr_source refr_term mkt_medium mkt_source mkt_term mkt_content
    mkt_campaign contexts se_category se_action se_label se_property se_value unstruct_event
    tr_orderid tr_affiliation tr_total tr_tax tr_shipping tr_city tr_state tr_country ti_orderid
    ti_sku ti_name ti_category ti_price ti_quantity pp_xoffset_min pp_xoffset_max pp_yoffset_min
    pp_yoffset_max useragent br_name br_family br_version br_type br_renderengine br_lang
    br_features_pdf br_features_flash br_features_java br_features_director br_features_quicktime
    br_features_realplayer br_features_windowsmedia br_features_gears br_features_silverlight
    br_cookies br_colordepth br_viewwidth br_viewheight os_name os_family os_manufacturer
    os_timezone dvce_type dvce_ismobile dvce_screenwidth dvce_screenheight doc_charset doc_width
    doc_height tr_currency tr_total_base tr_tax_base tr_shipping_base ti_currency ti_price_base
    base_currency geo_timezone mkt_clickid mkt_network etl_tags dvce_sent_tstamp
    refr_domain_userid refr_device_tstamp derived_contexts domain_sessionid derived_tstamp
    event_vendor event_name event_format event_version event_fingerprint true_tstamp""".split()
)
_COLUMN: Final = {name: i for i, name in enumerate(ENRICHED_COLUMNS)}
#: Enriched ``event`` column -> the protocol's ``e``; the protocol field -> the TSV column.
_TSV_EVENTS: Final = {"page_view": "pv", "unstruct": "ue", "transaction": "tr",
                      "transaction_item": "ti", "struct": "se", "page_ping": "pp"}  # fmt: skip
_TSV_FIELDS: Final = {
    "uid": "user_id", "duid": "domain_userid", "nuid": "network_userid", "eid": "event_id",
    "sid": "domain_sessionid", "p": "platform", "url": "page_url", "tr_id": "tr_orderid",
    "tr_tt": "tr_total", "tr_cu": "tr_currency", "ti_id": "ti_orderid", "ti_sk": "ti_sku",
    "ti_nm": "ti_name", "ti_ca": "ti_category", "ti_pr": "ti_price", "ti_qu": "ti_quantity",
}  # fmt: skip
_TSV_TIMES: Final = ("true_tstamp", "derived_tstamp", "dvce_created_tstamp", "collector_tstamp")


@dataclass
class _Hit:
    """One Snowplow event with its self-describing parts decoded, and where each part sat."""

    fields: Mapping[str, Any]  # protocol keys (e, uid, ...), values as sent
    where: str  # path of the event itself, e.g. "$.data[1]"
    path: dict[str, str]  # protocol key -> its source path, where not "{where}.{key}"
    timestamp: int | str | None
    ue: dict[str, Any] | None = None  # {"schema": ..., "data": {...}}
    contexts: list[Any] = field(default_factory=list)
    ue_path: str = ""
    co_path: str = ""

    def at(self, key: str) -> str:
        return self.path.get(key, f"{self.where}.{key}")


def _self_describing(raw: Any, encoded: bool) -> Any:
    """A ``ue_pr`` / ``co`` (JSON text) or ``ue_px`` / ``cx`` (base64url JSON) value decoded."""
    if not isinstance(raw, str):
        return raw
    if encoded:
        try:
            raw = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError("Invalid base64url JSON") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"Invalid JSON ({exc.msg} at char {exc.pos})") from None


def _decode_parts(hit: _Hit, ue_key: str | None, co_key: str | None) -> None:
    """Fill ``hit.ue`` and ``hit.contexts`` from the named fields; raises ``ValueError`` located."""
    for key, is_ue in ((ue_key, True), (co_key, False)):
        if key is None or hit.fields.get(key) in (None, ""):
            continue
        path = hit.at(key)
        try:
            value = _self_describing(hit.fields[key], key in ("ue_px", "cx"))
        except ValueError as exc:
            raise ValueError(f"{exc} - at `{path}`") from None
        data = value.get("data") if isinstance(value, Mapping) else None
        if is_ue:
            if not isinstance(data, Mapping):
                raise ValueError(f"Expected `object` - at `{path}.data`")
            hit.ue, hit.ue_path = dict(data), f"{path}.data"
        else:
            if not isinstance(data, list):
                raise ValueError(f"Expected `array` - at `{path}.data`")
            hit.contexts, hit.co_path = data, f"{path}.data"


def _schema_name(schema: Any) -> str:
    """``iglu:vendor/name/jsonschema/1-0-2`` -> ``vendor/name``."""
    return schema.removeprefix("iglu:").rsplit("/", 2)[0] if isinstance(schema, str) else ""


_ACTION_NAME: Final = _schema_name(ECOMMERCE_ACTION)


def _entities(hit: _Hit, name: str) -> list[tuple[dict[str, Any], str]]:
    """The context entities of schema ``name`` (e.g. ``product``) with their paths."""
    wanted = _schema_name(_ECOM + name + "/jsonschema/1-0-0")
    out = []
    for i, entity in enumerate(hit.contexts):
        if isinstance(entity, Mapping) and _schema_name(entity.get("schema")) == wanted:
            data = entity.get("data")
            if isinstance(data, Mapping):
                out.append((dict(data), f"{hit.co_path}[{i}].data"))
    return out


def _product(data: Mapping[str, Any]) -> dict[str, Any]:
    return {ours: data[theirs] for theirs, ours in _PRODUCT_FIELDS.items() if data.get(theirs) is not None}


def _number(value: Any) -> Any:
    """A protocol string that holds a number, as the number (else the value unchanged)."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


_Mapped = list[tuple[dict[str, Any], dict[str, str]]]
#: Our order-level fields from the action's one order entity: (entity, {theirs: ours}).
_ORDER_ENTITY: Final[dict[str, tuple[str, dict[str, str]]]] = {
    "order_completed": ("transaction", {"transaction_id": "order_id", "revenue": "revenue",
                        "currency": "currency", "discount_amount": "discount",
                        "discount_code": "coupon"}),
    "order_refunded": ("refund", {"transaction_id": "order_id", "refund_amount": "revenue"}),
}  # fmt: skip


def _base(hit: _Hit, kind: str, sources: dict[str, str]) -> dict[str, Any]:
    """The fields every event has, from the hit; records where each came from in ``sources``."""
    f = hit.fields
    out: dict[str, Any] = {"type": kind}
    for key in ("uid", "duid", "nuid"):
        if f.get(key) not in (None, ""):
            out["user_id"], sources["user_id"] = f[key], hit.at(key)
            break
    else:
        sources["user_id"] = hit.at("uid")
    if hit.timestamp is not None:
        out["timestamp"] = hit.timestamp
    sources["timestamp"] = hit.at("dtm")
    for key, ours in (("eid", "event_id"), ("sid", "session_id")):
        if f.get(key) not in (None, ""):
            out[ours], sources[ours] = f[key], hit.at(key)
    channel = _PLATFORMS.get(f.get("p") or "")
    if channel is not None:
        out["channel"] = channel
    return out


def _copy(out: dict[str, Any], sources: dict[str, str], entity: Mapping[str, Any], where: str,
          fields: Mapping[str, str]) -> None:  # fmt: skip
    for theirs, ours in fields.items():
        if entity.get(theirs) is not None:
            out[ours], sources[ours] = entity[theirs], f"{where}.{theirs}"


def _map_legacy(hit: _Hit, items: Mapping[str, list[dict[str, Any]]]) -> _Mapped:
    """A page view or a legacy transaction (with its items)."""
    sources: dict[str, str] = {}
    if hit.fields.get("e") == "pv":
        out = _base(hit, "page_viewed", sources)
        if hit.fields.get("url"):
            out["url"] = hit.fields["url"]
        return [(out, sources)]
    out = _base(hit, "order_completed", sources)
    for key, ours in (("tr_id", "order_id"), ("tr_tt", "revenue"), ("tr_cu", "currency")):
        if hit.fields.get(key) not in (None, ""):
            out[ours], sources[ours] = _number(hit.fields[key]), hit.at(key)
    out["products"] = items.get(hit.fields.get("tr_id") or "", [])
    return [(out, sources)]


def _map_hit(hit: _Hit, items: Mapping[str, list[dict[str, Any]]]) -> tuple[_Mapped, str | None]:
    """Our events (each with its ``sources``) for one hit, or ``([], reason)``; a ``None``
    reason means skipped on purpose."""
    e = hit.fields.get("e")
    if e in ("pv", "tr"):
        return _map_legacy(hit, items), None
    if e == "ti":
        return [], None
    if e != "ue":
        return [], f"Unknown event type {e!r} - at `{hit.at('e')}`"
    if hit.ue is None:
        return [], f"Expected a self-describing event (`ue_pr` or `ue_px`) - at `{hit.where}`"
    if _schema_name(hit.ue.get("schema")) != _ACTION_NAME:
        return [], f"Unknown event schema {hit.ue.get('schema')!r} - at `{hit.ue_path}.schema`"
    data = hit.ue.get("data")
    data = data if isinstance(data, Mapping) else {}
    action = data.get("type")
    kind = ACTION_TYPES.get(action) if isinstance(action, str) else None
    if kind is None or kind not in ev.EVENT_TYPE_CODES:
        return [], f"Unknown e-commerce action {action!r} - at `{hit.ue_path}.data.type`"
    if kind == "checkout_step_completed":
        return _checkout_step(hit), None
    if kind in _PER_PRODUCT:
        return _per_product(hit, kind, data), None
    sources: dict[str, str] = {}
    if kind in ("promotion_viewed", "promotion_clicked"):
        out = _base(hit, kind, sources)
        for promo, where in _entities(hit, "promotion")[:1]:
            _copy(out, sources, promo, where, _PROMOTION)
            if "position" in out:  # the entity's position is a number, ours a label
                out["position"] = str(out["position"])
        return [(out, sources)], None
    products = _entities(hit, "product")
    sources.update({f"products[{i}]": where for i, (_, where) in enumerate(products)})
    out = _base(hit, kind, sources)
    out["products"] = [_product(product) for product, _ in products]
    if kind in _ORDER_ENTITY:
        name, fields = _ORDER_ENTITY[kind]
        found = _entities(hit, name)
        if not found:
            return [], f"Missing `{name}` entity for action {action!r} - at `{hit.co_path or hit.at('co')}`"
        _copy(out, sources, found[0][0], found[0][1], fields)
    elif data.get("name") is not None:  # product_list_viewed
        out["list_id"], sources["list_id"] = data["name"], f"{hit.ue_path}.data.name"
    return [(out, sources)], None


def _per_product(hit: _Hit, kind: str, data: Mapping[str, Any]) -> _Mapped:
    """One event per product entity; the k-th (k > 0) gets event id ``"{eid}:{k}"``."""
    mapped: _Mapped = []
    carts = _entities(hit, "cart")
    for k, (product, where) in enumerate(_entities(hit, "product") or [({}, hit.co_path or hit.at("co"))]):
        sources = {"product": where}
        out = _base(hit, kind, sources)
        out["product"] = _product(product)
        if k and "event_id" in out:
            out["event_id"] = f"{out['event_id']}:{k}"
        if kind == "product_clicked":
            if data.get("name") is not None:
                out["list_id"], sources["list_id"] = data["name"], f"{hit.ue_path}.data.name"
        elif carts:
            _copy(out, sources, carts[0][0], carts[0][1], {"cart_id": "cart_id"})
        mapped.append((out, sources))
    return mapped


def _checkout_step(hit: _Hit) -> _Mapped:
    """A ``checkout_step`` action: ``checkout_step_completed``, and at step 1 also
    ``checkout_started`` (event id ``"{eid}:started"``) with the cart's total and the products."""
    sources: dict[str, str] = {}
    out = _base(hit, "checkout_step_completed", sources)
    for step, where in _entities(hit, "checkout_step")[:1]:
        _copy(out, sources, step, where, _CHECKOUT_STEP)
    mapped = [(out, sources)]
    if out.get("step", 1) == 1:
        products = _entities(hit, "product")
        started_at = {f"products[{i}]": where for i, (_, where) in enumerate(products)}
        started = _base(hit, "checkout_started", started_at)
        started["products"] = [_product(product) for product, _ in products]
        if "event_id" in started:
            started["event_id"] += ":started"
        for cart, where in _entities(hit, "cart")[:1]:
            _copy(started, started_at, cart, where, {"total_value": "revenue"})
        mapped.append((started, started_at))
    return mapped


def _legacy_items(hits: Sequence[_Hit]) -> dict[str, list[dict[str, Any]]]:
    """The products of legacy ``ti`` events, by their order id."""
    items: dict[str, list[dict[str, Any]]] = {}
    for hit in hits:
        if hit.fields.get("e") == "ti" and hit.fields.get("ti_id"):
            item = {
                ours: _number(hit.fields[k])
                for k, ours in _LEGACY_ITEM.items()
                if hit.fields.get(k) not in (None, "")
            }
            if isinstance(item.get("product_id"), int | float):
                item["product_id"] = hit.fields["ti_sk"]
            items.setdefault(hit.fields["ti_id"], []).append(item)
    return items


def _run(
    hits: list[tuple[int, _Hit | str]],
    suffix: Callable[[int], str],
    errors: Errors,
    unknown_types: UnknownTypes,
) -> DecodeResult:
    out = _Collector(errors, unknown_types)
    items = _legacy_items([h for _, h in hits if isinstance(h, _Hit)])
    for position, hit in hits:
        if isinstance(hit, str):
            out.reject(hit + suffix(position), position)
            continue
        mapped, reason = _map_hit(hit, items)
        if not mapped:
            if reason is None or (reason.startswith("Unknown") and unknown_types == "skip"):
                out.n_unknown += 1
            else:
                out.reject(reason + suffix(position), position)
            continue
        # A hit that gives several events is taken whole or not at all.
        converted = [to_event(one, {"": hit.where, **sources}, _PRODUCT_RENAMES) for one, sources in mapped]
        good = [c for c in converted if not isinstance(c, str)]
        if len(good) < len(converted):
            out.reject(next(c for c in converted if isinstance(c, str)) + suffix(position), position)
            continue
        for event in good:
            out.add(event, position, None, "")
    return out.result()


def _protocol_time(f: Mapping[str, Any]) -> tuple[int | str | None, str]:
    """The event's time (true, else device-created, else sent) and the key it came from."""
    for key in ("ttm", "dtm", "stm"):
        value = f.get(key)
        if value not in (None, ""):
            number = _number(value)
            return (number if isinstance(number, int) else str(value)), key
    return None, "dtm"


def _protocol_hits(data: Any) -> Iterator[tuple[int, _Hit | str]]:
    if isinstance(data, bytes | bytearray | memoryview | str):
        try:
            data = json.loads(bytes(data) if not isinstance(data, str) else data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(f"Snowplow payload is not valid JSON: {exc}", None) from None
    if isinstance(data, Mapping) and "data" in data:
        events, prefix = data["data"], "$.data"
        if not isinstance(events, list):
            raise SchemaError("Expected `array` - at `$.data`", None)
    elif isinstance(data, Sequence) and not isinstance(data, str):
        events, prefix = list(data), "$"
    else:
        events, prefix = [data], "$.data"
    for i, fields in enumerate(events):
        where = f"{prefix}[{i}]"
        if not isinstance(fields, Mapping):
            yield i, f"Expected `object` - at `{where}`"
            continue
        stamp, key = _protocol_time(fields)
        hit = _Hit(fields, where, {"dtm": f"{where}.{key}"}, stamp)
        try:
            ue_key = "ue_pr" if fields.get("ue_pr") else "ue_px"
            _decode_parts(hit, ue_key, "co" if fields.get("co") else "cx")
        except ValueError as exc:
            yield i, str(exc)
            continue
        yield i, hit


def from_snowplow(
    data: bytes | bytearray | memoryview | str | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    errors: Errors = "raise",
    unknown_types: UnknownTypes = "raise",
) -> DecodeResult:
    """Map a Snowplow tracker-protocol body (``{"schema": ..., "data": [...]}``, a list of
    events, or one event; JSON bytes / text or parsed) onto events.

    A bad event is reported at its path in the body, e.g. ``Expected `float` >= 0.0 - at
    `$.data[0].co.data[0].data.price```, its position being its index in ``data``.

    Examples
    --------
    >>> body = {"data": [{"e": "pv", "uid": "u1", "dtm": "1714557600000", "url": "https://s/x"},
    ...                  {"e": "pp", "uid": "u1", "dtm": "1714557601000"}]}
    >>> result = from_snowplow(body, unknown_types="skip")
    >>> [type(e).__name__ for e in result], result[0].url, result.rejects.n_unknown
    (['PageViewed'], 'https://s/x', 1)
    >>> from_snowplow({"data": [{"e": "pv", "dtm": "1714557600000"}]})
    Traceback (most recent call last):
    ...
    affinity_sdk.errors.SchemaError: Object missing required field `user_id` - at `$.data[0].uid`
    """
    return _run(list(_protocol_hits(data)), lambda _: "", errors, unknown_types)


def _tsv_time(value: str) -> int | str:
    """``2024-05-01 10:00:00.123`` (UTC) -> epoch ms (as the protocol's times); the text
    unchanged if it does not parse, for the schema to report."""
    try:
        return to_epoch_ms(value.replace(" ", "T") + "Z")
    except ValueError:
        return value


def _tsv_hits(data: bytes | bytearray | memoryview | str) -> Iterator[tuple[int, _Hit | str]]:
    for index, line in iter_lines(data):
        try:
            text = line.decode().rstrip("\r")
        except UnicodeDecodeError as exc:
            yield index, f"Invalid UTF-8 (byte {exc.start})"
            continue
        columns = text.split("\t")
        if len(columns) != len(ENRICHED_COLUMNS):
            yield index, f"Expected {len(ENRICHED_COLUMNS)} tab-separated columns, got {len(columns)}"
            continue
        fields: dict[str, Any] = {"e": _TSV_EVENTS.get(columns[_COLUMN["event"]], columns[_COLUMN["event"]])}
        path = {"e": "$.event"}
        for key, column in _TSV_FIELDS.items():
            fields[key] = columns[_COLUMN[column]]
            path[key] = f"$.{column}"
        fields["ue"], fields["co"] = columns[_COLUMN["unstruct_event"]], columns[_COLUMN["contexts"]]
        path.update(ue="$.unstruct_event", co="$.contexts")
        stamp = next(((c, columns[_COLUMN[c]]) for c in _TSV_TIMES if columns[_COLUMN[c]]), None)
        path["dtm"] = f"$.{stamp[0]}" if stamp else "$.collector_tstamp"
        hit = _Hit(fields, "$", path, _tsv_time(stamp[1]) if stamp else None)
        try:
            _decode_parts(hit, "ue", "co")
        except ValueError as exc:
            yield index, str(exc)
            continue
        yield index, hit


def from_snowplow_tsv(
    data: bytes | bytearray | memoryview | str,
    *,
    errors: Errors = "raise",
    unknown_types: UnknownTypes = "raise",
) -> DecodeResult:
    """Map enriched Snowplow events (the 131-column TSV, one event a line) onto events.

    A bad line is reported at its column, ``(line N)`` after it, its position being ``N - 1``.

    Examples
    --------
    >>> row = dict.fromkeys(ENRICHED_COLUMNS, "")
    >>> row.update(event="page_view", user_id="u1", page_url="https://s/x", platform="web",
    ...            event_id="e1", derived_tstamp="2024-05-01 10:00:00.000")
    >>> event = from_snowplow_tsv("\\t".join(row.values()))[0]
    >>> type(event).__name__, event.url, event.timestamp
    ('PageViewed', 'https://s/x', 1714557600000)
    """
    return _run(list(_tsv_hits(data)), lambda i: f" (line {i + 1})", errors, unknown_types)
