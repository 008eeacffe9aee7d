"""Columnar event batches (numpy).

An :class:`EventBatch` holds one row per event in plain numpy columns, plus an *item table* with
one row per product line (one for product-level events, one per line item for orders), so that
nothing an event carried is lost and the kernels can scan contiguous arrays. The string ids behind
its integer codes live in :mod:`affinity_sdk.ingest.interner`; Arrow / Parquet conversion is in
:mod:`affinity_sdk.ingest.arrow`.

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

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from affinity_sdk.capture.formats import skip_bom
from affinity_sdk.errors import SchemaError
from affinity_sdk.ingest.interner import TOMBSTONE, Interner, Interners, event_id_hash
from affinity_sdk.profile.channel_consent import encode_consent

# Interner, Interners and TOMBSTONE are re-exported for callers that import them from here.
__all__ = [
    "EVENT_COLUMNS",
    "IS_ACTIVITY",
    "ITEM_COLUMNS",
    "TOMBSTONE",
    "EventBatch",
    "Interner",
    "Interners",
    "SourcePositions",
    "concat_batches",
    "kept_row_numbers",
    "take_rows",
]

NO_CAMPAIGN: Final = -1
NO_CONSENT: Final = -1
#: Per ``event_type`` code: something the person did, not a message sent to them
#: (:data:`~affinity_sdk.capture.events.ACTIVITY_TYPES`).
IS_ACTIVITY: Final = np.isin(
    np.arange(len(ev.EVENT_TYPES)), [ev.EVENT_TYPE_CODES[t] for t in ev.ACTIVITY_TYPES]
)


@dataclass(frozen=True, eq=False)
class SourcePositions:
    """Where each row of a batch came from in the bytes it was decoded from, so a problem found
    after decoding (:func:`~affinity_sdk.ingest.screen.screen_rows`) is reported where a person finds it.

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
    ``consent`` (int8: -1 not a consent decision; 0 / 1 a global revoke / grant; ``2 + 2 * m +
    granted`` a decision on medium ``m`` alone, ``m`` the index in
    :data:`~affinity_sdk.capture.events.MEDIA`: see
    :func:`~affinity_sdk.profile.channel_consent.encode_consent`. A ``consent_changed`` event
    with a ``medium`` and an ``unsubscribed`` event with one (a revoke) carry codes >= 2).

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
        cols: dict[str, list[object]] = {k: [] for k in EVENT_COLUMNS}
        items: dict[str, list[object]] = {k: [] for k in ITEM_COLUMNS}
        for position, event in enumerate(events):
            _append_event(cols, items, names, event, position)
        arrays: dict[str, Any] = {k: np.asarray(v, dtype=EVENT_COLUMNS[k]) for k, v in cols.items()}
        arrays.update({k: np.asarray(v, dtype=ITEM_COLUMNS[k]) for k, v in items.items()})
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
        first_line: int = 0,
    ) -> EventBatch:
        """Build a batch straight from NDJSON bytes (one event per line, blank lines skipped).

        The result equals ``EventBatch.from_events(decode_ndjson(data, ...), interners)``, codes
        included, with ``errors`` / ``unknown_types`` as in :func:`~affinity_sdk.capture.decode.decode_ndjson`
        and what was left out in :attr:`rejects`. With the compiled extension (``reader="auto"`` or
        ``"native"``) a C++ reader parses the lines it fully understands straight into columns and
        hands every other line to msgspec, so errors and edge cases match the Struct decoders
        exactly; ``reader="python"`` uses msgspec for every line. ``first_line`` is the index of
        ``data``'s first line in a larger input (a chunk of a file), so positions and messages
        name lines of that input; :func:`affinity_sdk.ingest.ndjson.read_ndjson_file` streams a
        file that way.

        Examples
        --------
        >>> data = b'{"type":"push_opened","user_id":"u7","timestamp":1700000000000,"campaign_id":"c"}\\n'
        >>> batch = EventBatch.from_ndjson(data + b'{"type":"push_opened"}\\n', errors="skip")
        >>> len(batch), batch.channel.tolist(), batch.rejects.n_invalid
        (1, [4], 1)
        """
        names = interners if interners is not None else Interners()
        buf = skip_bom(data.encode() if isinstance(data, str) else data)  # BOM: still line 1
        mod = None if reader == "python" else native()
        if mod is None or not hasattr(mod, "read_ndjson"):
            if reader == "native":
                from affinity_sdk.errors import BackendUnavailableError

                raise BackendUnavailableError(
                    "the compiled NDJSON reader (affinity_sdk._native) is not available"
                )
            out = _Collector(errors, unknown_types)
            for index, line in iter_lines(buf):
                at = index + first_line
                decoded = _decode_one(line, _JSON_EVENT.decode, _JSON_TAG.decode)
                out.add(decoded, at, None, f" (line {at + 1})")
            batch = cls.from_events(out.events, names)
            batch.rejects = out.result().rejects
            batch.source = SourcePositions(np.asarray(out.positions, dtype=np.int64), lines=True)
            return batch
        from affinity_sdk.ingest.ndjson import finish_native

        return finish_native(mod.read_ndjson(buf), buf, names, errors, unknown_types, first_line=first_line)

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
        - ``medium`` (string, optional: a :data:`~affinity_sdk.capture.events.MEDIA` name): on a
          ``consent_changed`` row the decision covers that medium alone, on an ``unsubscribed``
          row it revokes it; null = a global decision (or none);
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
        from affinity_sdk.ingest.arrow import _arrow_columns

        names = interners if interners is not None else Interners()
        columns = _arrow_columns(table, names)
        arrays: dict[str, Any] = {
            k: np.ascontiguousarray(columns[k], dtype=EVENT_COLUMNS[k]) for k in EVENT_COLUMNS
        }
        arrays.update({k: np.ascontiguousarray(columns[k], dtype=ITEM_COLUMNS[k]) for k in ITEM_COLUMNS})
        return cls(**arrays, interners=names)

    @classmethod
    def from_frame(
        cls, frame: Any, interners: Interners | None = None, *, columns: Mapping[str, str] | None = None
    ) -> EventBatch:
        """Build a batch from a pandas or polars DataFrame or a pyarrow Table / RecordBatch with
        one row per event, in the :meth:`from_arrow` layout (see :mod:`affinity_sdk.ingest.frames`).

        ``columns`` maps the layout's names to the frame's where they differ, e.g.
        ``{"user_id": "customer", "timestamp": "event_time"}``. pandas and polars frames pass
        through Arrow (zero-copy where their memory allows), and neither library is imported
        unless such a frame is given. A missing column or a column of the wrong type raises
        :class:`SchemaError` naming it.

        Examples
        --------
        >>> import pandas as pd
        >>> df = pd.DataFrame({"kind": ["app_opened"], "customer": ["u1"],
        ...                    "at": pd.to_datetime(["2024-01-01"], utc=True)})
        >>> batch = EventBatch.from_frame(df, columns={"type": "kind", "user_id": "customer",
        ...                                            "timestamp": "at"})
        >>> batch.interners.users.names, batch.ts_ms.tolist()
        (('u1',), [1704067200000])
        """
        from affinity_sdk.ingest.frames import frame_batch

        return frame_batch(frame, interners, columns)

    @classmethod
    def from_orders(
        cls,
        orders: Any,
        *,
        customer: str = "customer_id",
        date: str = "date",
        revenue: str = "revenue",
        errors: Errors = "raise",
        interners: Interners | None = None,
    ) -> EventBatch:
        """Order log (one row per order) as ``order_completed`` events without products, like
        lifetimes' ``summary_data_from_transaction_data(transactions, customer_id_col,
        datetime_col, monetary_value_col)`` takes a transaction table.

        ``orders`` is a CSV path (:func:`~affinity_sdk.capture.order_log.read_order_log`) or a
        pandas / polars DataFrame or pyarrow Table; ``customer``, ``date`` and ``revenue`` name
        its columns. Customer ids may be strings or integers; dates are datetimes, dates or
        ISO-8601 strings (naive ones are UTC); revenue a finite number >= 0. Bad rows are
        handled by ``errors`` as for event files, located as ``line N`` (CSV) or ``row N``
        (frames, 0-based).

        Examples
        --------
        >>> import pandas as pd
        >>> tx = pd.DataFrame({"cust": [7, 7, 9], "day": ["2024-01-05", "2024-02-01", "2024-01-09"],
        ...                    "amount": [30.0, 12.5, 8.0]})
        >>> batch = EventBatch.from_orders(tx, customer="cust", date="day", revenue="amount")
        >>> batch.interners.users.names, batch.revenue.tolist()
        (('7', '9'), [30.0, 12.5, 8.0])
        """
        from affinity_sdk.capture.order_log import frame_orders, read_order_log

        mapping = {"customer_id": customer, "date": date, "revenue": revenue}
        if isinstance(orders, str | os.PathLike):
            return read_order_log(orders, columns=mapping, errors=errors, interners=interners)
        return frame_orders(orders, columns=mapping, errors=errors, interners=interners)

    @classmethod
    def from_parquet(
        cls,
        path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        interners: Interners | None = None,
        **read_options: Any,
    ) -> EventBatch:
        """Read a Parquet file in the :meth:`from_arrow` layout (``read_options`` go to
        :func:`pyarrow.parquet.read_table`); a folder of files (sub-folders included) or a list
        of files is read row group by row group (:func:`affinity_sdk.ingest.parquet.read_parquet`).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> batch = EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"u","timestamp":5}')
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.parquet"
        >>> batch.to_parquet(path)
        >>> EventBatch.from_parquet(path).ts_ms.tolist()
        [5]
        """
        if not isinstance(path, str | os.PathLike) or os.path.isdir(path):
            from affinity_sdk.ingest.parquet import read_parquet

            return read_parquet(path, interners, **read_options)
        from affinity_sdk.ingest.arrow import _parquet_read_plan, _pyarrow

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
        from affinity_sdk.ingest.arrow import _arrow_table

        return _arrow_table(self)

    def to_parquet(self, path: str | os.PathLike[str], **write_options: Any) -> None:
        """Write :meth:`to_arrow` to a Parquet file (``write_options`` go to
        :func:`pyarrow.parquet.write_table`).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> EventBatch.empty().to_parquet(pathlib.Path(tempfile.mkdtemp()) / "empty.parquet")
        """
        from affinity_sdk.ingest.arrow import _pyarrow

        pq = _pyarrow("parquet")
        pq.write_table(self.to_arrow(), path, **write_options)


#: The event columns of a batch and their dtypes: the one list every batch operation walks.
EVENT_COLUMNS: Final[dict[str, type[np.generic]]] = {
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
#: The item (product line) columns and their dtypes.
ITEM_COLUMNS: Final[dict[str, type[np.generic]]] = {
    "item_event": np.int64,
    "item_product": np.int32,
    "item_category": np.int32,
    "item_brand": np.int32,
    "item_price": np.float64,
    "item_discount": np.float64,
    "item_quantity": np.int32,
}
#: The item columns other than ``item_event`` (which is renumbered, not copied).
_ITEM_VALUE_COLUMNS: Final = tuple(name for name in ITEM_COLUMNS if name != "item_event")
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
    product = getattr(event, "product", None)
    if isinstance(product, ev.Product):  # every type with one product (see capture/events.py)
        products = [product]
        revenue = _NAN if product.price is None else product.price * product.quantity
        discount = _NAN if product.discount is None else product.discount
    elif isinstance(event, ev.OrderCompleted):
        products = event.products
        revenue = event.revenue
        discount = _NAN if event.discount is None else event.discount
        has_coupon = event.coupon is not None
    elif isinstance(event, ev.OrderRefunded | ev.CheckoutStarted | ev.OrderUpdated | ev.OrderCancelled):
        products = event.products
        revenue = _NAN if event.revenue is None else event.revenue
    elif isinstance(event, ev.ProductListViewed | ev.CartViewed | ev.ProductListFiltered | ev.CartShared):
        products = event.products
    elif isinstance(event, ev.CouponApplied):
        discount = _NAN if event.discount is None else event.discount
        has_coupon = event.coupon is not None
    elif ev.message_action(event) is not None:
        campaign_id: str | None = getattr(event, "campaign_id", None)
        if campaign_id is not None:
            campaign = names.campaigns.intern(campaign_id)
        if isinstance(event, ev.Unsubscribed) and event.medium is not None:
            consent = encode_consent(False, event.medium)  # revokes that medium alone
    elif isinstance(event, ev.ConsentChanged):
        consent = encode_consent(event.granted, event.medium)
    cols["user"].append(names.users.intern(event.user_id))
    cols["event_type"].append(ev.EVENT_TYPE_CODES[kind])
    cols["ts_ms"].append(ts)
    cols["channel"].append(_CHANNEL_CODES[ev.event_channel(event)])
    cols["revenue"].append(revenue)
    cols["discount"].append(discount)
    cols["has_coupon"].append(has_coupon)
    cols["campaign"].append(campaign)
    cols["event_id"].append(event_id_hash(event.event_id))
    cols["consent"].append(consent)
    for product in products:
        items["item_event"].append(row)
        items["item_product"].append(names.products.intern(product.product_id))
        # -1 / NaN: not given (Segment makes them optional). A NaN *given* (only a constructed
        # Struct can hold one: decoding rejects it) goes in as inf, so the screen rejects it.
        category, brand, price = product.category, product.brand, product.price
        items["item_category"].append(-1 if category is None else names.categories.intern(category))
        items["item_brand"].append(-1 if brand is None else names.brands.intern(brand))
        items["item_price"].append(_NAN if price is None else price if price == price else math.inf)
        items["item_discount"].append(_NAN if product.discount is None else product.discount)
        items["item_quantity"].append(product.quantity)


def take_rows(batch: EventBatch, keep: NDArray[np.bool_]) -> EventBatch:
    """The events of ``batch`` where ``keep`` is true, with their item rows (renumbered).

    Examples
    --------
    >>> import numpy as np
    >>> from affinity_sdk.capture.events import OrderCompleted, Product
    >>> p = Product(product_id="p", category="c", brand="b", price=1.0)
    >>> orders = [OrderCompleted(user_id=u, timestamp=0, order_id=u, products=[p, p], revenue=2.0)
    ...           for u in ("a", "b")]
    >>> kept = take_rows(EventBatch.from_events(orders), np.array([False, True]))
    >>> len(kept), kept.item_event.tolist(), kept.user.tolist()
    (1, [0, 0], [1])
    """
    if keep.all():
        return batch
    keep_items = keep[batch.item_event]
    changes: dict[str, Any] = {name: getattr(batch, name)[keep] for name in EVENT_COLUMNS}
    changes.update({name: getattr(batch, name)[keep_items] for name in _ITEM_VALUE_COLUMNS})
    changes["item_event"] = kept_row_numbers(batch.item_event[keep_items], keep)
    changes["source"] = None if batch.source is None else batch.source.take(keep)
    return replace(batch, **changes)


def kept_row_numbers(rows: NDArray[np.int64], keep: NDArray[np.bool_]) -> NDArray[np.int64]:
    """The numbers that rows ``rows`` (all kept) take once the rows where ``keep`` is false are
    dropped: each moves up by the dropped rows before it (a search over the drops, usually few,
    rather than a cumulative sum over every row).

    Examples
    --------
    >>> kept_row_numbers(np.array([0, 2, 5]), np.array([True, False, True, False, False, True])).tolist()
    [0, 1, 2]
    """
    return rows - np.searchsorted(np.flatnonzero(~keep), rows)


def concat_batches(batches: list[EventBatch], interners: Interners) -> EventBatch:
    """One batch of ``batches`` (all coded in ``interners``), item rows renumbered.

    Examples
    --------
    >>> names = Interners()
    >>> one = EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"a","timestamp":1}', names)
    >>> len(concat_batches([one, one], names))
    2
    """
    if not batches:
        return EventBatch.empty(interners)
    offsets = np.cumsum([0] + [len(b) for b in batches[:-1]])
    columns: dict[str, Any] = {
        name: np.concatenate([getattr(b, name) for b in batches]) for name in EVENT_COLUMNS
    }
    columns.update(
        {name: np.concatenate([getattr(b, name) for b in batches]) for name in _ITEM_VALUE_COLUMNS}
    )
    columns["item_event"] = np.concatenate(
        [b.item_event + off for b, off in zip(batches, offsets, strict=True)]
    )
    return EventBatch(**columns, interners=interners)
