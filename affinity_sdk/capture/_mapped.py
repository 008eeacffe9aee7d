"""Shared by the source adapters that build our events as dicts (Snowplow, store webhooks): turn
a mapped dict into an event, and name a bad field where it sat in the *source* payload.

An adapter records, while it maps, where each of our fields came from: ``sources`` maps a top
field (``"revenue"``), an item (``"products[0]"``, ``"product"``) or ``""`` (the event itself) to
a source path, and ``renames`` maps our item field names back to the source's (``product_id`` ->
``id``). A msgspec message at ``$.products[0].price`` then reads ``$.data[1].co.data[2].data.price``.

Examples
--------
>>> mapped = {"type": "order_refunded", "user_id": "u", "timestamp": 0, "order_id": "o",
...           "revenue": -5}
>>> to_event(mapped, {"revenue": "$.refund_amount"}, {})
'Expected `float` >= 0.0 - at `$.refund_amount`'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from affinity_sdk.capture import events as ev

_PATH: Final = re.compile(r"`\$((?:\.\w+|\[\d+\])*)`")
_HEAD: Final = re.compile(r"\.(\w+)(\[\d+\])?(?:\.(\w+))?")
_MISSING: Final = re.compile(r"^Object missing required field `(\w+)`(?: - at `\$([^`]*)`)?$")


def locate(message: str, sources: Mapping[str, str], renames: Mapping[str, str]) -> str:
    """``message`` with its first ``$...`` path replaced by where the value sat in the source.

    Examples
    --------
    >>> locate("Expected `str` - at `$.product.product_id`", {"product": "$.line_items[0]"},
    ...        {"product_id": "sku"})
    'Expected `str` - at `$.line_items[0].sku`'
    """

    missing = _MISSING.match(message)
    if missing is not None:
        # Point at where the missing value would sit: msgspec names the object that lacks it.
        name, parent = missing.group(1), missing.group(2) or ""
        message = f"Object missing required field `{name}` - at `${parent}.{name}`"

    def swap(match: re.Match[str]) -> str:
        path = match.group(1)
        head = _HEAD.fullmatch(path)
        if head is None:
            return f"`{sources.get('', '$')}{path}`"
        name, index, field = head.group(1), head.group(2) or "", head.group(3)
        for key in (name + index, name):
            if key in sources:
                base = sources[key]
                if field is None:
                    return f"`{base}`"
                return f"`{base}.{renames.get(field, field)}`"
        return f"`{sources.get('', '$')}{path}`"

    return _PATH.sub(swap, message, count=1)


def to_event(
    mapped: dict[str, Any], sources: Mapping[str, str], renames: Mapping[str, str]
) -> ev.Event | str:
    """The event ``mapped`` describes, or the located message of why it is not one.

    Examples
    --------
    >>> to_event({"type": "app_opened", "user_id": "u", "timestamp": 0}, {}, {}).user_id
    'u'
    """
    try:
        event: ev.Event = msgspec.convert(mapped, ev.Event)
    except msgspec.ValidationError as exc:
        return locate(str(exc), sources, renames)
    ts = ev.timestamp_ms(event)
    if not ev.MIN_TS_MS <= ts <= ev.MAX_TS_MS:
        message = f"Timestamp {ts} ms is outside 1900-01-01 .. 2200-01-01 - at `$.timestamp`"
        return locate(message, sources, renames)
    return event
