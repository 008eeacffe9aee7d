"""Columnar event batches (numpy) and the string-id interner.

An :class:`EventBatch` holds one row per event in plain numpy columns, plus an *item table* with
one row per product line (one for product-level events, one per line item for orders), so that
nothing an event carried is lost and the kernels can scan contiguous arrays.

Examples
--------
>>> from affinity_sdk.capture.events import ProductViewed, Product
>>> ev = ProductViewed(user_id="u1", timestamp=1_700_000_000_000,
...                    product=Product(product_id="p", category="shoes", brand="acme", price=10.0))
>>> batch = EventBatch.from_events([ev])
>>> len(batch), batch.interners.users.lookup("u1"), float(batch.revenue[0])
(1, 0, 10.0)
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import native
from affinity_sdk.capture import events as ev
from affinity_sdk.capture.decode import (
    _JSON_EVENT,
    _JSON_TAG,
    Errors,
    Rejects,
    UnknownTypes,
    _Collector,
    _decode_one,
    iter_lines,
)
from affinity_sdk.errors import SchemaError

__all__ = ["EventBatch", "Interner", "Interners", "SourcePositions", "event_id_hash"]

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


#: What an erased (forgotten) id leaves in :attr:`Interner.names`; never a valid id.
TOMBSTONE: Final = ""


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
            if name == TOMBSTONE:
                self._names.append(name)
            else:
                self.intern(name)

    def intern(self, name: str) -> int:
        """The code of ``name``, assigning the next free one if it is new."""
        code = self._codes.get(name)
        if code is None:
            code = len(self._names)
            self._codes[name] = code
            self._names.append(name)
        return code

    def intern_many(self, names: Iterable[str]) -> NDArray[np.int64]:
        """The codes of ``names`` (an int64 array), interning new ones in order.

        Examples
        --------
        >>> Interner(["a"]).intern_many(["b", "a", "b"]).tolist()
        [1, 0, 1]
        """
        names = names if isinstance(names, list | tuple) else list(names)
        codes = list(map(self._codes.get, names))
        if None in codes:
            missing = [n for n, c in zip(names, codes, strict=True) if c is None]
            if len(set(missing)) == len(missing):
                # Distinct new names (the usual case: a dictionary) are appended in one go.
                start = len(self._names)
                self._codes.update(zip(missing, range(start, start + len(missing)), strict=True))
                self._names.extend(missing)
                codes = list(map(self._codes.get, names))
            else:
                codes = [self.intern(n) if c is None else c for n, c in zip(names, codes, strict=True)]
        return np.asarray(codes, dtype=np.int64)

    def lookup(self, name: str) -> int | None:
        """The code of ``name`` or ``None`` if it was never interned."""
        return self._codes.get(name)

    def forget(self, name: str) -> int | None:
        """Erase ``name``: its code becomes a tombstone (``""``, never reused) and a later
        :meth:`intern` of the same name gets a new code. Returns the erased code, if any."""
        code = self._codes.pop(name, None)
        if code is not None:
            self._names[code] = TOMBSTONE
        return code

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


@dataclass(frozen=True, eq=False)
class SourcePositions:
    """Where each row of a batch came from in the bytes it was decoded from, so a problem found
    after decoding (:func:`~affinity_sdk.ingest.dedupe.screen_rows`) is reported where a person finds it.

    ``index`` holds per row the 0-based NDJSON line (``lines=True``) or the index in a JSON /
    MessagePack array of events (``lines=False``); ``single=True`` marks one event decoded on its
    own (not in an array), whose fields are at ``$.field``.

    Examples
    --------
    >>> import numpy as np
    >>> SourcePositions(np.array([0, 3]), lines=True).locate(1, "timestamp")
    '`$.timestamp` (line 4)'
    >>> SourcePositions(np.array([0, 3]), lines=False).locate(1, "timestamp")
    '`$[3].timestamp`'
    >>> SourcePositions(np.array([0]), lines=False, single=True).locate(0, "timestamp")
    '`$.timestamp`'
    """

    index: NDArray[np.int64]
    lines: bool
    single: bool = False

    def locate(self, row: int, path: str) -> str:
        """msgspec-style location of field ``path`` of ``row``, as the decoders write it."""
        position = int(self.index[row])
        if self.lines:
            return f"`$.{path}` (line {position + 1})"
        return f"`$.{path}`" if self.single else f"`$[{position}].{path}`"

    def take(self, keep: NDArray[np.bool_]) -> SourcePositions:
        return SourcePositions(self.index[keep], self.lines, self.single)


@dataclass(eq=False)
class EventBatch:
    """Events as numpy columns. Missing floats are NaN, missing codes are -1.

    Event columns (length ``n``): ``user`` (int64 code), ``event_type`` (uint8, index in
    :data:`affinity_sdk.capture.events.EVENT_TYPES`), ``ts_ms`` (int64 epoch ms), ``channel`` (uint8, index
    in :data:`~affinity_sdk.capture.events.CHANNELS`), ``revenue`` (float64: order revenue, refund amount,
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
    #: What the decoder left out (bad lines, unknown types); empty for batches built from Structs.
    rejects: Rejects = field(default_factory=Rejects)
    #: Per row, its place in the decoded bytes (set by :meth:`from_ndjson` and the Scorer's byte
    #: decoders); ``None`` for batches built from Structs, Arrow or by hand.
    source: SourcePositions | None = None

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def position(self, row: int) -> int:
        """The input position of ``row`` (NDJSON line or array index, 0-based), else ``row``.

        Examples
        --------
        >>> batch = EventBatch.from_ndjson(b'\\n{"type":"app_opened","user_id":"u","timestamp":0}\\n')
        >>> batch.position(0)
        1
        """
        return row if self.source is None else int(self.source.index[row])

    def locate(self, row: int, path: str) -> str:
        """Where field ``path`` of ``row`` is, msgspec-style: ```$[row].path``` without a source.

        Examples
        --------
        >>> batch = EventBatch.from_ndjson(b'\\n{"type":"app_opened","user_id":"u","timestamp":0}\\n')
        >>> batch.locate(0, "timestamp")
        '`$.timestamp` (line 2)'
        """
        return f"`$[{row}].{path}`" if self.source is None else self.source.locate(row, path)

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
        arrays: dict[str, Any] = {k: np.asarray(v, dtype=_EVENT_COLUMNS[k]) for k, v in cols.items()}
        arrays.update({k: np.asarray(v, dtype=_ITEM_COLUMNS[k]) for k, v in items.items()})
        return cls(**arrays, interners=names)

    @classmethod
    def from_ndjson(
        cls,
        data: bytes | bytearray | memoryview | str,
        interners: Interners | None = None,
        *,
        errors: Errors = "raise",
        unknown_types: UnknownTypes = "raise",
        reader: Literal["auto", "native", "python"] = "auto",
    ) -> EventBatch:
        """Build a batch straight from NDJSON bytes (one event per line, blank lines skipped).

        The result equals ``EventBatch.from_events(decode_ndjson(data, ...), interners)``, codes
        included, with ``errors`` / ``unknown_types`` as in :func:`~affinity_sdk.capture.decode.decode_ndjson`
        and what was left out in :attr:`rejects`. With the compiled extension (``reader="auto"`` or
        ``"native"``) a C++ reader parses the lines it fully understands straight into columns and
        hands every other line to msgspec, so errors and edge cases match the Struct decoders
        exactly; ``reader="python"`` uses msgspec for every line.

        Examples
        --------
        >>> data = b'{"type":"push_opened","user_id":"u7","timestamp":1700000000000,"campaign_id":"c"}\\n'
        >>> batch = EventBatch.from_ndjson(data + b'{"type":"push_opened"}\\n', errors="skip")
        >>> len(batch), batch.channel.tolist(), batch.rejects.n_invalid
        (1, [4], 1)
        """
        names = interners if interners is not None else Interners()
        buf = data.encode() if isinstance(data, str) else data
        mod = None if reader == "python" else native()
        if mod is None or not hasattr(mod, "read_ndjson"):
            if reader == "native":
                from affinity_sdk.errors import BackendUnavailableError

                raise BackendUnavailableError(
                    "the compiled NDJSON reader (affinity_sdk._native) is not available"
                )
            out = _Collector(errors, unknown_types)
            for index, line in iter_lines(buf):
                out.add(
                    _decode_one(line, _JSON_EVENT.decode, _JSON_TAG.decode),
                    index,
                    None,
                    f" (line {index + 1})",
                )
            batch = cls.from_events(out.events, names)
            batch.rejects = out.result().rejects
            batch.source = SourcePositions(np.asarray(out.positions, dtype=np.int64), lines=True)
            return batch
        return _from_native(cls, mod.read_ndjson(buf), buf, names, errors, unknown_types)

    @classmethod
    def from_arrow(cls, table: Any, interners: Interners | None = None) -> EventBatch:
        """Build a batch from an Arrow table with one row per event (needs the ``[arrow]`` extra).

        Columns (extra columns are ignored; string columns may be dictionary-encoded):

        - ``type`` (string, required): an :data:`~affinity_sdk.capture.events.EVENT_TYPES` name;
        - ``user_id`` (string, required);
        - ``timestamp`` (required): ``timestamp[unit, tz]`` or int64 epoch milliseconds;
        - ``channel`` (string, optional; null = the type's default channel);
        - ``event_id``: string (hashed with :func:`event_id_hash`) or uint64 (already hashed);
        - ``revenue``, ``discount`` (float, null = missing). Where ``revenue`` is missing for a
          single-product event it is price × quantity of its product, as in :meth:`from_events`;
        - ``coupon`` (string, non-null = coupon used) or ``has_coupon`` (bool);
        - ``campaign_id`` (string); ``granted`` (bool, consent events);
        - ``products``: list<struct<product_id, category, brand: string, price: double,
          discount: double (optional), quantity: int (optional, default 1)>>, one element for
          single-product events.

        Strings are interned per distinct value (dictionary encoding), not per row. Bad values
        raise :class:`SchemaError` naming the column and row.

        Examples
        --------
        >>> import pyarrow as pa
        >>> t = pa.table({"type": ["app_opened"], "user_id": ["u1"], "timestamp": [1_700_000_000_000]})
        >>> EventBatch.from_arrow(t).channel.tolist()
        [1]
        """
        names = interners if interners is not None else Interners()
        columns = _arrow_columns(table, names)
        arrays: dict[str, Any] = {
            k: np.ascontiguousarray(columns[k], dtype=_EVENT_COLUMNS[k]) for k in _EVENT_COLUMNS
        }
        arrays.update({k: np.ascontiguousarray(columns[k], dtype=_ITEM_COLUMNS[k]) for k in _ITEM_COLUMNS})
        return cls(**arrays, interners=names)

    @classmethod
    def from_parquet(
        cls, path: str | os.PathLike[str], interners: Interners | None = None, **read_options: Any
    ) -> EventBatch:
        """Read a Parquet file in the :meth:`from_arrow` layout (``read_options`` go to
        :func:`pyarrow.parquet.read_table`).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> batch = EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"u","timestamp":5}')
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.parquet"
        >>> batch.to_parquet(path)
        >>> EventBatch.from_parquet(path).ts_ms.tolist()
        [5]
        """
        pq = _pyarrow("parquet")
        if os.path.isfile(path) and "read_dictionary" not in read_options and "columns" not in read_options:
            read_options = {**read_options, **_parquet_read_plan(pq.ParquetFile(path).schema)}
        return cls.from_arrow(pq.read_table(path, **read_options), interners)

    def to_arrow(self) -> Any:
        """This batch as an Arrow table in the :meth:`from_arrow` layout (ids dictionary-encoded,
        ``event_id`` as its uint64 hash), so ``from_arrow(batch.to_arrow())`` rebuilds it.

        Examples
        --------
        >>> batch = EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"u","timestamp":5}')
        >>> batch.to_arrow().column_names[:3]
        ['type', 'user_id', 'timestamp']
        """
        return _arrow_table(self)

    def to_parquet(self, path: str | os.PathLike[str], **write_options: Any) -> None:
        """Write :meth:`to_arrow` to a Parquet file (``write_options`` go to
        :func:`pyarrow.parquet.write_table`).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> EventBatch.empty().to_parquet(pathlib.Path(tempfile.mkdtemp()) / "empty.parquet")
        """
        pq = _pyarrow("parquet")
        pq.write_table(self.to_arrow(), path, **write_options)


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


def _from_native(
    cls: type[EventBatch],
    res: dict[str, Any],
    buf: bytes | bytearray | memoryview,
    names: Interners,
    errors: Errors,
    unknown_types: UnknownTypes,
) -> EventBatch:
    """Finish a batch from the C++ reader's slots: decode its flagged lines with msgspec, merge,
    and intern the local string tables into ``names`` in first-seen order over the whole input."""
    status: NDArray[np.uint8] = res["status"]
    line: NDArray[np.int64] = res["line"]
    begin, end = res["begin"], res["end"]
    out = _Collector(errors, unknown_types)
    view = buf if isinstance(buf, bytes) else memoryview(buf).cast("B")
    for slot in np.flatnonzero(status).tolist():
        index = int(line[slot])
        raw = view[begin[slot] : end[slot]]
        out.add(_decode_one(raw, _JSON_EVENT.decode, _JSON_TAG.decode), index, None, f" (line {index + 1})")
    rejects = out.result().rejects
    # Slots are the non-blank lines in order, so a line index finds its slot by bisection.
    py_slots = np.searchsorted(line, np.asarray(out.positions, dtype=np.int64))
    local = Interners()
    py = cls.from_events(out.events, local)

    keep = status == 0
    cols = {k: res[k] for k in _EVENT_COLUMNS}
    cols["has_coupon"] = cols["has_coupon"].view(np.bool_)
    n_cpp = {k: len(res[k][0]) for k in _INTERNED}
    if py_slots.size:
        keep[py_slots] = True
        for k in _EVENT_COLUMNS:
            cols[k][py_slots] = getattr(py, k)
        cols["user"][py_slots] += n_cpp["users"]
        campaign = cols["campaign"]
        campaign[py_slots] = np.where(py.campaign >= 0, py.campaign + n_cpp["campaigns"], -1)

    # Items: C++ rows then msgspec rows, stably ordered by slot (each event's items stay in order).
    item_slot = res["item_slot"]
    n_cpp_items = item_slot.shape[0]
    items = {k: res[k] for k in _ITEM_COLUMNS if k != "item_event"}
    item_order: NDArray[np.intp] | None = None
    if py.n_items:
        item_slot = np.concatenate([item_slot, py_slots[py.item_event]])
        for k in items:
            extra = getattr(py, k)
            if k in _ITEM_INTERNER:
                extra = extra + n_cpp[_ITEM_INTERNER[k]]
            items[k] = np.concatenate([items[k], extra])
        item_order = np.argsort(item_slot, kind="stable")
        item_slot = item_slot[item_order]
        for k in items:
            items[k] = items[k][item_order]

    # Local code -> global code, interning in order of first appearance in the final batch.
    remap: dict[str, NDArray[np.int64]] = {}
    for kind in _INTERNED:
        cpp_names, cpp_first = res[kind]
        py_names = getattr(local, kind).names
        if not py_names:
            remap[kind] = getattr(names, kind).intern_many(cpp_names)
            continue
        py_codes = _py_codes(py, kind)
        valid = py_codes >= 0
        _, py_first = np.unique(py_codes[valid], return_index=True)
        py_first = np.flatnonzero(valid)[py_first]
        if kind in ("users", "campaigns"):
            py_key = py_slots[py_first]
            cpp_key = cpp_first
        else:
            assert item_order is not None
            inverse = np.empty_like(item_order)
            inverse[item_order] = np.arange(item_order.shape[0])
            py_key = inverse[n_cpp_items + py_first]
            cpp_key = inverse[cpp_first]
        all_names = [*cpp_names, *py_names]
        order = np.argsort(np.concatenate([cpp_key, py_key]), kind="stable")
        table = np.empty(len(all_names), dtype=np.int64)
        interner = getattr(names, kind)
        table[order] = interner.intern_many([all_names[i] for i in order.tolist()])
        remap[kind] = table

    rows = np.cumsum(keep) - 1
    every = bool(keep.all())
    final = {k: (v if every else v[keep]) for k, v in cols.items()}
    final["user"] = remap["users"][final["user"]]
    campaign = final["campaign"]
    # -1 (no campaign) picks the appended -1.
    final["campaign"] = np.append(remap["campaigns"], -1)[campaign]
    final_items: dict[str, NDArray[Any]] = {"item_event": rows[item_slot]}
    for k, v in items.items():
        final_items[k] = remap[_ITEM_INTERNER[k]][v].astype(np.int32) if k in _ITEM_INTERNER else v
    arrays: dict[str, Any] = {k: np.ascontiguousarray(v, dtype=_EVENT_COLUMNS[k]) for k, v in final.items()}
    arrays.update({k: np.ascontiguousarray(v, dtype=_ITEM_COLUMNS[k]) for k, v in final_items.items()})
    source = SourcePositions(np.ascontiguousarray(line if every else line[keep], dtype=np.int64), lines=True)
    return cls(**arrays, interners=names, rejects=rejects, source=source)


def _py_codes(py: EventBatch, kind: str) -> NDArray[Any]:
    column: dict[str, NDArray[Any]] = {
        "users": py.user,
        "campaigns": py.campaign,
        "products": py.item_product,
        "categories": py.item_category,
        "brands": py.item_brand,
    }
    return column[kind]


_INTERNED: Final = ("users", "products", "categories", "brands", "campaigns")
_ITEM_INTERNER: Final = {"item_product": "products", "item_category": "categories", "item_brand": "brands"}


# ---- Arrow / Parquet ([arrow] extra) --------------------------------------------------------------


def _pyarrow(sub: str = "") -> Any:
    """pyarrow (or ``pyarrow.<sub>``), imported on first use with a clear error if missing."""
    try:
        return importlib.import_module("pyarrow" + (f".{sub}" if sub else ""))
    except ImportError as exc:
        raise ImportError("Arrow / Parquet support needs pyarrow: pip install 'affinity_sdk[arrow]'") from exc


def _one_array(column: Any) -> Any:
    """A ChunkedArray as one Array (no copy when it has a single chunk)."""
    pa = _pyarrow()
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _string_buffers(array: Any) -> tuple[NDArray[Any], Any] | None:
    """Offsets (numpy view) and data buffer of a string / large_string Array, or None for other types."""
    pa = _pyarrow()
    if pa.types.is_string(array.type):
        dtype: type[np.generic] = np.int32
    elif pa.types.is_large_string(array.type):
        dtype = np.int64
    else:
        return None
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=dtype)[array.offset : array.offset + len(array) + 1]
    return offsets, (buffers[2] if buffers[2] is not None else b"")


_LocalCodes = tuple[NDArray[np.int32], list[str], NDArray[np.int64], NDArray[np.int64]]


def _local_codes(column: Any) -> _LocalCodes | None:
    """With the compiled extension, a string column (plain or dictionary-encoded) as local codes
    numbered in order of first appearance (-1 where null), with the distinct values, the first row
    and the length in code points of each; None where only the pyarrow path applies."""
    pa = _pyarrow()
    mod = native()
    if mod is None or not hasattr(mod, "arrow_dict_codes") or len(column) == 0:
        return None
    if pa.types.is_dictionary(column.type):
        dictionary = column.dictionary
        strings = _string_buffers(dictionary)
        indices = column.indices
        if strings is None or dictionary.null_count or not pa.types.is_integer(indices.type):
            return None
        if pa.types.is_uint64(indices.type):
            return None
        buffers = indices.buffers()
        index_dtype = np.dtype(indices.type.to_pandas_dtype())
        idx = np.frombuffer(buffers[1], dtype=index_dtype)[indices.offset : indices.offset + len(indices)]
        validity = buffers[0] if indices.null_count else None
        local, order, first = mod.arrow_dict_codes(idx, validity, indices.offset, len(dictionary))
        values, lengths = mod.arrow_take_strings(strings[0], strings[1], order)
        return local, values, first, lengths
    strings = _string_buffers(column)
    if strings is None:
        return None
    validity = column.buffers()[0] if column.null_count else None
    local, values, first, lengths = mod.arrow_string_codes(strings[0], strings[1], validity, column.offset)
    return local, values, first, lengths


def _arrow_codes(
    column: Any, interner: Interner, what: str, required: bool, dtype: type[np.generic] = np.int64
) -> NDArray[Any]:
    """Intern a string column per distinct value; -1 where null. Raises on nulls if required.

    Only values some row uses are checked and interned, in order of first appearance (a Parquet
    dictionary may carry values no row refers to: those must neither fail the batch nor be interned).
    """
    pc = _pyarrow("compute")
    column = _one_array(column)
    if column.null_count and required:
        row = int(pc.index(column.is_null(), True).as_py())
        raise SchemaError(f"Expected `str`, got `null` - at `$[{row}].{what}`", row)
    fast = _local_codes(column)
    if fast is None:
        return np.asarray(_arrow_codes_pyarrow(column, interner, what), dtype=dtype)
    local, values, first, lengths = fast
    # Ids are 1..512 characters, required or not (an empty id would be a tombstone, see Interner).
    bad = (lengths < 1) | (lengths > 512)
    if bad.any():
        k = int(np.argmax(bad))  # local codes are in first-seen order: the first bad one is the first row
        row = int(first[k])
        bound = "<= 512" if lengths[k] > 0 else ">= 1"
        raise SchemaError(f"Expected `str` of length {bound} - at `$[{row}].{what}`", row)
    start = len(interner)
    table = interner.intern_many(values)
    if len(interner) - start == len(values) and not column.null_count:
        # All values were new and distinct: they got start, start + 1, ... in local code order.
        return (local + start).astype(dtype, copy=False) if start else local.astype(dtype, copy=False)
    codes: NDArray[Any] = np.append(table, -1).astype(dtype)[local]  # local -1 (null) picks the -1
    return codes


def _arrow_codes_pyarrow(column: Any, interner: Interner, what: str) -> NDArray[np.int64]:
    """:func:`_arrow_codes` with pyarrow and numpy only (no extension, or not a string column)."""
    pa = _pyarrow()
    pc = _pyarrow("compute")
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    indices = column.indices.fill_null(-1) if column.null_count else column.indices
    idx = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    first_row = np.full(len(column.dictionary), n_rows := idx.shape[0], dtype=np.int64)
    present = idx >= 0
    np.minimum.at(first_row, idx[present], np.flatnonzero(present))
    used = np.flatnonzero(first_row < n_rows)
    lengths = np.asarray(pc.utf8_length(column.dictionary).to_numpy(zero_copy_only=False))[used]
    bad = (lengths < 1) | (lengths > 512)
    if bad.any():
        rows = first_row[used[bad]]
        row = int(rows.min())
        bound = "<= 512" if column.dictionary[int(idx[row])].as_py() else ">= 1"
        raise SchemaError(f"Expected `str` of length {bound} - at `$[{row}].{what}`", row)
    used = used[np.argsort(first_row[used], kind="stable")]  # intern in order of first appearance
    values = column.dictionary.take(pa.array(used, pa.int64())).to_pylist()
    table = np.full(len(column.dictionary) + 1, -1, dtype=np.int64)  # the extra -1 serves null rows
    table[used] = interner.intern_many(values)
    codes: NDArray[np.int64] = table[idx]
    return codes


def _arrow_numpy(column: Any, fill: Any = None) -> NDArray[Any]:
    """One Arrow column as numpy: zero-copy (read-only) where the layout allows; nulls -> ``fill``."""
    column = _one_array(column)
    if column.null_count and fill is not None:
        column = column.fill_null(fill)
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _arrow_float64(column: Any) -> NDArray[np.float64]:
    """A numeric Arrow column as float64 with NaN where null (zero-copy where there are no nulls)."""
    pa = _pyarrow()
    column = _one_array(column)
    if column.type != pa.float64():
        column = column.cast(pa.float64())
    mod = native()
    if column.null_count and len(column) and mod is not None and hasattr(mod, "arrow_float64"):
        buffers = column.buffers()
        values = np.frombuffer(buffers[1], dtype=np.float64)[column.offset : column.offset + len(column)]
        out: NDArray[np.float64] = mod.arrow_float64(values, buffers[0], column.offset)
        return out
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _arrow_floats(table: Any, name: str, n: int, limit: float = ev.MAX_AMOUNT) -> NDArray[np.float64]:
    if name not in table.column_names:
        return np.full(n, np.nan)
    out = _arrow_float64(table.column(name))
    _check_amounts(out, name, limit)
    return out


def _check_amounts(
    values: NDArray[np.float64], what: str, limit: float = ev.MAX_AMOUNT, nan_ok: bool = True
) -> None:
    """Raise naming the first row outside 0 .. ``limit`` (NaN is missing: fine if ``nan_ok``,
    otherwise reported as -1.0)."""
    if values.shape[0] == 0:
        return
    if nan_ok:  # one pass each, NaN ignored; all-NaN gives NaN, which takes the exact path below
        low, high = np.fmin.reduce(values), np.fmax.reduce(values)
    else:  # NaN propagates and takes the exact path below
        low, high = values.min(), values.max()
    if low >= 0.0 and high <= limit:
        return
    if not nan_ok:
        values = np.where(np.isnan(values), -1.0, values)
    bad = ~((values >= 0.0) & (values <= limit)) & ~np.isnan(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SchemaError(
            f"Expected `float` in 0.0 .. {limit:g}, got {float(values[row])!r} - at `$[{row}].{what}`", row
        )


def _arrow_timestamps(table: Any) -> NDArray[np.int64]:
    pa = _pyarrow()
    pc = _pyarrow("compute")
    ts_col = _one_array(table.column("timestamp"))
    if ts_col.null_count:
        row = int(pc.index(ts_col.is_null(), True).as_py())
        raise SchemaError(f"Expected `int | datetime`, got `null` - at `$[{row}].timestamp`", row)
    if pa.types.is_timestamp(ts_col.type):
        per_ms = {"s": -1000, "ms": 1, "us": 1000, "ns": 1_000_000}[ts_col.type.unit]
        raw = np.asarray(ts_col.view(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
        ts_ms = raw if per_ms == 1 else raw * -per_ms if per_ms < 0 else raw // per_ms
    elif pa.types.is_integer(ts_col.type):
        ts_ms = np.asarray(ts_col.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        raise SchemaError(f"Expected `int | datetime`, got `{ts_col.type}` - at `$.timestamp`", None)
    if ts_ms.shape[0] and (ts_ms.min() < ev.MIN_TS_MS or ts_ms.max() > ev.MAX_TS_MS):
        row = int(np.flatnonzero((ts_ms < ev.MIN_TS_MS) | (ts_ms > ev.MAX_TS_MS))[0])
        raise SchemaError(
            f"Timestamp {ts_ms[row]} ms is outside 1900-01-01 .. 2200-01-01 - at `$[{row}].timestamp`", row
        )
    return ts_ms


#: Top-level columns :meth:`EventBatch.from_arrow` reads (others are ignored).
_ARROW_COLUMNS: Final = (
    "type",
    "user_id",
    "timestamp",
    "channel",
    "event_id",
    "revenue",
    "discount",
    "coupon",
    "has_coupon",
    "campaign_id",
    "granted",
    "products",
)
_ARROW_STRINGS: Final = ("type", "user_id", "channel", "campaign_id", "coupon")
_ARROW_ITEM_STRINGS: Final = ("product_id", "category", "brand")


def _parquet_read_plan(schema: Any) -> dict[str, Any]:
    """``read_table`` options for a Parquet schema: only the columns ``from_arrow`` reads, and its
    string columns (top-level and inside ``products``) straight as dictionaries, so that strings
    are decoded once per distinct value instead of once per row."""
    paths = [column.path for column in schema]
    present = [name for name in dict.fromkeys(p.split(".", 1)[0] for p in paths) if name in _ARROW_COLUMNS]
    strings = [
        path
        for column, path in zip(schema, paths, strict=True)
        if column.physical_type == "BYTE_ARRAY"
        and column.logical_type.type == "STRING"
        and (
            path in _ARROW_STRINGS
            or (path.startswith("products.") and path.rsplit(".", 1)[-1] in _ARROW_ITEM_STRINGS)
        )
    ]
    return {"columns": present, "read_dictionary": strings}


def _arrow_columns(table: Any, names: Interners) -> dict[str, Any]:
    pa = _pyarrow()
    n = table.num_rows
    for required in ("type", "user_id", "timestamp"):
        if required not in table.column_names:
            raise SchemaError(f"Object missing required field `{required}` (Arrow column)", None)
    type_names = Interner(ev.EVENT_TYPES)
    event_type = _arrow_codes(table.column("type"), type_names, "type", True, np.int32)
    if len(type_names) > len(ev.EVENT_TYPES):
        unknown = type_names.name(len(ev.EVENT_TYPES))
        row = int(np.flatnonzero(event_type >= len(ev.EVENT_TYPES))[0])
        raise SchemaError(f"Unknown event type {unknown!r} - at `$[{row}].type`", row)
    event_type = event_type.astype(np.uint8)
    user = _arrow_codes(table.column("user_id"), names.users, "user_id", True)
    ts_ms = _arrow_timestamps(table)

    if "channel" in table.column_names:
        channels = Interner(ev.CHANNELS)
        given = _arrow_codes(table.column("channel"), channels, "channel", False, np.int32)
        if len(channels) > len(ev.CHANNELS):
            row = int(np.flatnonzero(given >= len(ev.CHANNELS))[0])
            raise SchemaError(f"Invalid channel - at `$[{row}].channel`", row)
        if (given < 0).any():
            channel = np.where(given >= 0, given, _DEFAULT_CHANNELS[event_type]).astype(np.uint8)
        else:
            channel = given.astype(np.uint8)
    else:
        channel = _DEFAULT_CHANNELS[event_type]

    if "event_id" not in table.column_names:
        event_id = np.zeros(n, dtype=np.uint64)
    elif pa.types.is_unsigned_integer(table.schema.field("event_id").type):
        event_id = np.asarray(_arrow_numpy(table.column("event_id"), 0), dtype=np.uint64)
    else:
        event_id = _hash_strings(table.column("event_id").cast(pa.large_string()).combine_chunks())

    if "coupon" in table.column_names:
        has_coupon = np.asarray(table.column("coupon").is_valid().to_numpy(zero_copy_only=False))
    elif "has_coupon" in table.column_names:
        has_coupon = np.asarray(_arrow_numpy(table.column("has_coupon"), False))
    else:
        has_coupon = np.zeros(n, dtype=np.bool_)
    if "campaign_id" in table.column_names:
        campaign = _arrow_codes(table.column("campaign_id"), names.campaigns, "campaign_id", False, np.int32)
    else:
        campaign = np.full(n, NO_CAMPAIGN, dtype=np.int32)
    if "granted" not in table.column_names:
        consent = np.full(n, NO_CONSENT, dtype=np.int8)
    else:
        granted = _one_array(table.column("granted"))
        if pa.types.is_boolean(granted.type):
            consent = _arrow_numpy(granted.cast(pa.int8()), NO_CONSENT)  # true 1, false 0, null -1
        else:
            consent = np.where(
                np.asarray(granted.is_valid().to_numpy(zero_copy_only=False)),
                np.asarray(granted.fill_null(False).to_numpy(zero_copy_only=False)).astype(np.int8),
                NO_CONSENT,
            ).astype(np.int8)

    items = _arrow_items(table, names, n)
    # Derived single-product revenue (price × quantity) may exceed MAX_AMOUNT by the quantity bound.
    revenue = _arrow_floats(table, "revenue", n, ev.MAX_AMOUNT * 1_000_000)
    offsets = items.pop("offsets")
    missing = np.flatnonzero(np.isnan(revenue))
    if missing.shape[0]:
        missing = missing[_IS_SINGLE_PRODUCT[event_type[missing]]]
        derive = missing[offsets[missing + 1] > offsets[missing]]
        if derive.shape[0]:
            at = offsets[derive]
            revenue = np.array(revenue)  # writable
            revenue[derive] = items["item_price"][at] * items["item_quantity"][at]
    return {
        "user": user,
        "event_type": event_type,
        "ts_ms": ts_ms,
        "channel": channel,
        "revenue": revenue,
        "discount": _arrow_floats(table, "discount", n),
        "has_coupon": has_coupon,
        "campaign": campaign,
        "event_id": event_id,
        "consent": consent,
        **items,
    }


def _hash_strings(column: Any) -> NDArray[np.uint64]:
    mod = native()
    if mod is None or not hasattr(mod, "fnv1a_strings"):
        return np.asarray([event_id_hash(s) for s in column.to_pylist()], dtype=np.uint64)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[
        column.offset : column.offset + len(column) + 1
    ]
    data = (
        np.frombuffer(column.buffers()[2], dtype=np.uint8) if column.buffers()[2] else np.zeros(0, np.uint8)
    )
    valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=np.uint8)
    return np.asarray(mod.fnv1a_strings(np.ascontiguousarray(offsets), data, valid), dtype=np.uint64)


def _item_rows(offsets: NDArray[Any]) -> NDArray[np.int64]:
    """The event row of each list element, given list offsets that start at 0."""
    mod = native()
    if mod is not None and hasattr(mod, "rows_from_offsets"):
        rows: NDArray[np.int64] = mod.rows_from_offsets(np.ascontiguousarray(offsets))
        return rows
    return np.repeat(np.arange(offsets.shape[0] - 1, dtype=np.int64), np.diff(offsets))


def _arrow_items(table: Any, names: Interners, n: int) -> dict[str, Any]:
    pa = _pyarrow()
    if "products" not in table.column_names or pa.types.is_null(table.schema.field("products").type):
        empty: dict[str, Any] = {k: np.zeros(0, dtype=v) for k, v in _ITEM_COLUMNS.items()}
        return {**empty, "offsets": np.zeros(n + 1, dtype=np.int64)}
    col = _one_array(table.column("products"))
    kind = col.type
    if not ((pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(kind.value_type)):
        raise SchemaError(
            f"Expected `array` of product objects, got `{kind}` - at `$.products` (a column of "
            "Python lists turned into strings on the way? Keep it an Arrow list, e.g. "
            "`table.to_pandas(types_mapper=pandas.ArrowDtype)`)",
            None,
        )
    if col.null_count:
        col = col.fill_null(pa.scalar([], type=col.type))
    offsets = np.asarray(col.offsets.to_numpy(zero_copy_only=False))
    if offsets.shape[0] and offsets[0] != 0:
        offsets = offsets - offsets[0]
    flat = col.flatten()
    item_event = _item_rows(offsets)
    fields = {f.name for f in flat.type}
    for required in ("product_id", "category", "brand", "price"):
        if required not in fields:
            raise SchemaError(f"Object missing required field `{required}` - at `$.products[]`", None)
    price = _arrow_float64(flat.field("price"))
    _check_amounts(price, "products[].price", nan_ok=False)
    discount = np.full(price.shape[0], np.nan)
    if "discount" in fields:
        discount = _arrow_float64(flat.field("discount"))
        _check_amounts(discount, "products[].discount")
    quantity = np.ones(price.shape[0], dtype=np.int32)
    if "quantity" in fields:
        q = _arrow_numpy(flat.field("quantity"), 1)
        if q.dtype != np.int32:
            q = np.asarray(q, dtype=np.int64)
        if q.shape[0] and (q.min() < 1 or q.max() > 1_000_000):
            raise SchemaError("Expected `int` in 1 .. 1000000 - at `$.products[].quantity`", None)
        quantity = q.astype(np.int32, copy=False)
    return {
        "offsets": offsets,
        "item_event": item_event,
        "item_product": _arrow_codes(
            flat.field("product_id"), names.products, "products[].product_id", True, np.int32
        ),
        "item_category": _arrow_codes(
            flat.field("category"), names.categories, "products[].category", True, np.int32
        ),
        "item_brand": _arrow_codes(flat.field("brand"), names.brands, "products[].brand", True, np.int32),
        "item_price": price,
        "item_discount": discount,
        "item_quantity": quantity,
    }


def _dictionary(codes: NDArray[Any], interner: Interner) -> Any:
    pa = _pyarrow()
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(interner.names), type=pa.string()))


def _arrow_table(batch: EventBatch) -> Any:
    pa = _pyarrow()
    n = len(batch)
    offsets = np.searchsorted(batch.item_event, np.arange(n + 1)).astype(np.int32)
    products = pa.StructArray.from_arrays(
        [
            _dictionary(batch.item_product, batch.interners.products),
            _dictionary(batch.item_category, batch.interners.categories),
            _dictionary(batch.item_brand, batch.interners.brands),
            pa.array(batch.item_price),
            pa.array(batch.item_discount, from_pandas=True),
            pa.array(batch.item_quantity),
        ],
        names=["product_id", "category", "brand", "price", "discount", "quantity"],
    )
    return pa.table(
        {
            "type": _dictionary(batch.event_type.astype(np.int64), Interner(ev.EVENT_TYPES)),
            "user_id": _dictionary(batch.user, batch.interners.users),
            "timestamp": pa.array(batch.ts_ms, type=pa.timestamp("ms", tz="UTC")),
            "channel": _dictionary(batch.channel.astype(np.int64), Interner(ev.CHANNELS)),
            "event_id": pa.array(batch.event_id, mask=batch.event_id == 0),
            "revenue": pa.array(batch.revenue, from_pandas=True),
            "discount": pa.array(batch.discount, from_pandas=True),
            "has_coupon": pa.array(batch.has_coupon),
            "campaign_id": _dictionary(batch.campaign.astype(np.int64), batch.interners.campaigns),
            "granted": pa.array(batch.consent == 1, mask=batch.consent < 0),
            "products": pa.ListArray.from_arrays(pa.array(offsets), products),
        }
    )


_SINGLE_PRODUCT_CODES: Final = np.asarray(
    [
        ev.EVENT_TYPE_CODES[t]
        for t in ("product_viewed", "product_added", "product_removed", "product_added_to_wishlist")
    ]
)
#: Indexed by event type code (uint8, so every value indexes): single-product event or not.
_IS_SINGLE_PRODUCT: Final = np.isin(np.arange(256), _SINGLE_PRODUCT_CODES)
#: Indexed by event type code: the type's default channel code.
_DEFAULT_CHANNELS: Final = np.asarray(
    [_CHANNEL_CODES[ev.default_channel(t)] for t in ev.EVENT_TYPES], dtype=np.uint8
)
