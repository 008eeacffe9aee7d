"""Hypothesis strategies for valid events (shared by the event, decode and batch tests)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from hypothesis import strategies as st

from affinity_sdk.capture import events as ev

ids = st.text(min_size=1, max_size=12) | st.sampled_from(["u1", "u2", "sku-1", "cat", "Café", 'a"b'])
texts = st.none() | st.text(max_size=8)
amounts = st.floats(min_value=0.0, max_value=1e12, allow_nan=False) | st.sampled_from([0.0, 1.5, 19.99, 100])
zones = st.builds(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
timestamps = st.integers(min_value=ev.MIN_TS_MS, max_value=ev.MAX_TS_MS) | st.datetimes(
    min_value=dt.datetime(1901, 1, 1), max_value=dt.datetime(2199, 1, 1), timezones=zones
)
products = st.builds(
    ev.Product,
    product_id=ids,
    category=ids,
    brand=ids,
    price=amounts,
    discount=st.none() | amounts,
    quantity=st.integers(min_value=1, max_value=1_000_000),
)

_FIELD: dict[str, Any] = {
    "user_id": ids,
    "timestamp": timestamps,
    "event_id": ids,
    "session_id": ids,
    "order_id": ids,
    "campaign_id": ids,
    "channel": st.sampled_from(ev.CHANNELS),
    "product": products,
    "products": st.lists(products, max_size=3),
    "revenue": amounts,
    "discount": amounts,
    "currency": st.text(min_size=3, max_size=3),
    "granted": st.booleans(),
    "medium": st.sampled_from(ev.MEDIA),
    "step": st.integers(min_value=0, max_value=1_000),
    "rating": st.floats(min_value=0.0, max_value=5.0),
    "purpose": st.text(min_size=1, max_size=8),  # the schema asks for at least one character
}


def _kwargs(cls: type[Any]) -> st.SearchStrategy[dict[str, Any]]:
    required: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    for f in msgspec.structs.fields(cls):
        strategy = _FIELD.get(f.name, texts)
        if f.required:
            required[f.name] = strategy
        else:
            optional[f.name] = st.none() | strategy if f.default is None else strategy
    return st.fixed_dictionaries(required, optional=optional)


def event_of(cls: type[Any]) -> st.SearchStrategy[ev.Event]:
    return _kwargs(cls).map(lambda kw: cls(**kw))


events = st.one_of([event_of(cls) for cls in ev.EVENT_CLASSES.values()])
