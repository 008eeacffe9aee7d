"""Columnar event batches (numpy) and the string-id interner.

An :class:`EventBatch` holds one row per event in plain numpy columns, plus an *item table* with
one row per product line (one for product-level events, one per line item for orders), so that
nothing an event carried is lost and the kernels can scan contiguous arrays.

Examples
--------
>>> from affinity_sdk.events import ProductViewed, Product
>>> ev = ProductViewed(user_id="u1", timestamp=1_700_000_000_000,
...                    product=Product(product_id="p", category="shoes", brand="acme", price=10.0))
>>> batch = EventBatch.from_events([ev])
>>> len(batch), batch.interners.users.lookup("u1"), float(batch.revenue[0])
(1, 0, 10.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from . import events as ev
from .errors import SchemaError

__all__ = ["EventBatch", "Interner", "Interners", "event_id_hash"]

NO_CAMPAIGN: Final = -1
NO_CONSENT: Final = -1
_FNV_OFFSET: Final = 0xCBF29CE484222325
_FNV_PRIME: Final = 0x100000001B3
_MASK64: Final = (1 << 64) - 1


def event_id_hash(event_id: str | None) -> int:
    """64-bit FNV-1a of the UTF-8 bytes of ``event_id``; 0 means "no event id".

    The C++ NDJSON reader computes the same hash, so batches built either way agree.

    Examples
    --------
    >>> event_id_hash(None), event_id_hash("a") == event_id_hash("a") != event_id_hash("b")
    (0, True)
    """
    if event_id is None:
        return 0
    h = _FNV_OFFSET
    for byte in event_id.encode():
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h or 1


class Interner:
    """Maps string ids to dense ``int`` codes 0, 1, 2, ... in first-seen order, stably.

    Examples
    --------
    >>> names = Interner()
    >>> names.intern("a"), names.intern("b"), names.intern("a"), len(names)
    (0, 1, 0, 2)
    >>> names.lookup("zzz") is None
    True
    """

    __slots__ = ("_codes", "_names")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names: list[str] = []
        self._codes: dict[str, int] = {}
        for name in names:
            self.intern(name)

    def intern(self, name: str) -> int:
        """The code of ``name``, assigning the next free one if it is new."""
        code = self._codes.get(name)
        if code is None:
            code = len(self._names)
            self._codes[name] = code
            self._names.append(name)
        return code

    def lookup(self, name: str) -> int | None:
        """The code of ``name`` or ``None`` if it was never interned."""
        return self._codes.get(name)

    def name(self, code: int) -> str:
        """The string behind ``code``."""
        return self._names[code]

    @property
    def names(self) -> Sequence[str]:
        """All interned strings, indexed by code (read-only view)."""
        return tuple(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interner) and self._names == other._names

    __hash__ = None  # type: ignore[assignment]


@dataclass(eq=False)
class Interners:
    """The interners a batch's integer columns refer to; share one across batches."""

    users: Interner = field(default_factory=Interner)
    products: Interner = field(default_factory=Interner)
    categories: Interner = field(default_factory=Interner)
    brands: Interner = field(default_factory=Interner)
    campaigns: Interner = field(default_factory=Interner)


@dataclass(eq=False)
class EventBatch:
    """Events as numpy columns. Missing floats are NaN, missing codes are -1.

    Event columns (length ``n``): ``user`` (int64 code), ``event_type`` (uint8, index in
    :data:`affinity_sdk.events.EVENT_TYPES`), ``ts_ms`` (int64 epoch ms), ``channel`` (uint8, index
    in :data:`~affinity_sdk.events.CHANNELS`), ``revenue`` (float64: order revenue, refund amount,
    checkout revenue, or price × quantity for single-product events), ``discount`` (float64),
    ``has_coupon`` (bool), ``campaign`` (int32 code), ``event_id`` (uint64 FNV-1a hash, 0 = none),
    ``consent`` (int8: 1 granted, 0 revoked, -1 not a consent event).

    Item columns (one row per product line): ``item_event`` (int64 row in the event columns),
    ``item_product``, ``item_category``, ``item_brand`` (int32 codes), ``item_price``,
    ``item_discount`` (float64) and ``item_quantity`` (int32).
    """

    user: NDArray[np.int64]
    event_type: NDArray[np.uint8]
    ts_ms: NDArray[np.int64]
    channel: NDArray[np.uint8]
    revenue: NDArray[np.float64]
    discount: NDArray[np.float64]
    has_coupon: NDArray[np.bool_]
    campaign: NDArray[np.int32]
    event_id: NDArray[np.uint64]
    consent: NDArray[np.int8]
    item_event: NDArray[np.int64]
    item_product: NDArray[np.int32]
    item_category: NDArray[np.int32]
    item_brand: NDArray[np.int32]
    item_price: NDArray[np.float64]
    item_discount: NDArray[np.float64]
    item_quantity: NDArray[np.int32]
    interners: Interners

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @property
    def n_items(self) -> int:
        """Number of product lines in the item table."""
        return int(self.item_event.shape[0])

    @classmethod
    def empty(cls, interners: Interners | None = None) -> EventBatch:
        """A batch with no events."""
        return cls.from_events([], interners)

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], interners: Interners | None = None) -> EventBatch:
        """Build a batch from event Structs, interning ids into ``interners`` (new if None).

        Raises :class:`SchemaError` naming the position if a timestamp lies outside
        1900-01-01 .. 2200-01-01.
        """
        names = interners if interners is not None else Interners()
        cols: dict[str, list[object]] = {k: [] for k in _EVENT_COLUMNS}
        items: dict[str, list[object]] = {k: [] for k in _ITEM_COLUMNS}
        for position, event in enumerate(events):
            _append_event(cols, items, names, event, position)
        return cls(
            **{k: np.asarray(v, dtype=_EVENT_COLUMNS[k]) for k, v in cols.items()},
            **{k: np.asarray(v, dtype=_ITEM_COLUMNS[k]) for k, v in items.items()},
            interners=names,
        )


_EVENT_COLUMNS: Final[dict[str, type[np.generic]]] = {
    "user": np.int64,
    "event_type": np.uint8,
    "ts_ms": np.int64,
    "channel": np.uint8,
    "revenue": np.float64,
    "discount": np.float64,
    "has_coupon": np.bool_,
    "campaign": np.int32,
    "event_id": np.uint64,
    "consent": np.int8,
}
_ITEM_COLUMNS: Final[dict[str, type[np.generic]]] = {
    "item_event": np.int64,
    "item_product": np.int32,
    "item_category": np.int32,
    "item_brand": np.int32,
    "item_price": np.float64,
    "item_discount": np.float64,
    "item_quantity": np.int32,
}
_CHANNEL_CODES: Final = {name: code for code, name in enumerate(ev.CHANNELS)}
_NAN: Final = float("nan")


def _append_event(
    cols: dict[str, list[object]],
    items: dict[str, list[object]],
    names: Interners,
    event: ev.Event,
    position: int,
) -> None:
    kind: str = event.__struct_config__.tag  # type: ignore[assignment]
    ts = ev.timestamp_ms(event)
    if not ev.MIN_TS_MS <= ts <= ev.MAX_TS_MS:
        raise SchemaError(
            f"Timestamp {ts} ms is outside 1900-01-01 .. 2200-01-01 - at `$[{position}].timestamp`",
            position,
        )
    row = len(cols["user"])
    products: list[ev.Product] = []
    revenue = _NAN
    discount = _NAN
    has_coupon = False
    campaign = NO_CAMPAIGN
    consent = NO_CONSENT
    if isinstance(event, ev.ProductViewed | ev.ProductAdded | ev.ProductRemoved | ev.ProductAddedToWishlist):
        products = [event.product]
        revenue = event.product.price * event.product.quantity
        discount = _NAN if event.product.discount is None else event.product.discount
    elif isinstance(event, ev.OrderCompleted):
        products = event.products
        revenue = event.revenue
        discount = _NAN if event.discount is None else event.discount
        has_coupon = event.coupon is not None
    elif isinstance(event, ev.OrderRefunded | ev.CheckoutStarted):
        products = event.products
        revenue = _NAN if event.revenue is None else event.revenue
    elif isinstance(event, ev.ProductListViewed | ev.CartViewed):
        products = event.products
    elif isinstance(event, ev.CouponApplied):
        discount = _NAN if event.discount is None else event.discount
        has_coupon = event.coupon is not None
    elif isinstance(
        event, ev.EmailOpened | ev.EmailClicked | ev.SmsClicked | ev.PushOpened | ev.Unsubscribed
    ):
        if event.campaign_id is not None:
            campaign = names.campaigns.intern(event.campaign_id)
    elif isinstance(event, ev.ConsentChanged):
        consent = 1 if event.granted else 0
    cols["user"].append(names.users.intern(event.user_id))
    cols["event_type"].append(ev.EVENT_TYPE_CODES[kind])
    cols["ts_ms"].append(ts)
    cols["channel"].append(_CHANNEL_CODES[event.channel or ev.default_channel(kind)])
    cols["revenue"].append(revenue)
    cols["discount"].append(discount)
    cols["has_coupon"].append(has_coupon)
    cols["campaign"].append(campaign)
    cols["event_id"].append(event_id_hash(event.event_id))
    cols["consent"].append(consent)
    for product in products:
        items["item_event"].append(row)
        items["item_product"].append(names.products.intern(product.product_id))
        items["item_category"].append(names.categories.intern(product.category))
        items["item_brand"].append(names.brands.intern(product.brand))
        items["item_price"].append(product.price)
        items["item_discount"].append(_NAN if product.discount is None else product.discount)
        items["item_quantity"].append(product.quantity)
