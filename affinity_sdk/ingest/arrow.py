"""Arrow / Parquet for event batches (the ``[arrow]`` extra): the columns
:meth:`EventBatch.from_arrow <affinity_sdk.ingest.batch.EventBatch.from_arrow>` reads, the table
:meth:`EventBatch.to_arrow <affinity_sdk.ingest.batch.EventBatch.to_arrow>` writes, and the Parquet
read plan. pyarrow is imported on first use."""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import native
from affinity_sdk.capture import events as ev
from affinity_sdk.errors import SchemaError
from affinity_sdk.ingest.arrow_codes import _arrow_codes
from affinity_sdk.ingest.arrow_codes import _one_array as _one_array  # re-exported: their old home
from affinity_sdk.ingest.arrow_codes import _pyarrow as _pyarrow
from affinity_sdk.ingest.batch import _CHANNEL_CODES, ITEM_COLUMNS, NO_CAMPAIGN, NO_CONSENT, EventBatch
from affinity_sdk.ingest.interner import Interner, Interners, event_id_hash


def _numpy(array: Any, fill: Any = None) -> NDArray[Any]:
    """An Arrow Array or ChunkedArray as numpy, nulls -> ``fill`` (given where there are nulls).

    Fixed-width numbers and booleans are read straight from their buffers (zero-copy, read-only,
    where there are no nulls): pyarrow's ``to_numpy`` and ``fill_null``, left for other types, go
    through pandas-aware code that imports pandas (a third of a second of a short ``affinity
    score`` run)."""
    pa = _pyarrow()
    array = _one_array(array)
    kind, n, start = array.type, len(array), array.offset
    code = "?" if pa.types.is_boolean(kind) else _NUMPY_CODES.get(str(kind))
    if not n or code is None:
        if array.null_count and fill is not None:
            array = array.fill_null(fill)
        return np.asarray(array.to_numpy(zero_copy_only=False))
    buffers = array.buffers()
    values = (
        _bits(buffers[1], start, n)
        if code == "?"
        else np.frombuffer(buffers[1], dtype=code)[start : start + n]
    )
    if array.null_count and fill is not None:
        values = np.where(_bits(buffers[0], start, n), values, np.asarray(fill).astype(values.dtype))
    return values


def _valid(array: Any) -> NDArray[np.bool_]:
    """Where an Arrow Array or ChunkedArray is not null (``is_valid`` without pyarrow.compute)."""
    array = _one_array(array)
    if not array.null_count:
        return np.ones(len(array), dtype=np.bool_)
    if array.buffers()[0] is None:  # a null-typed array
        return np.zeros(len(array), dtype=np.bool_)
    return _bits(array.buffers()[0], array.offset, len(array))


def _bits(buffer: Any, start: int, n: int) -> NDArray[np.bool_]:
    """Bits ``start .. start + n`` of an Arrow bitmap (a validity or boolean buffer) as bools."""
    packed = np.frombuffer(buffer, dtype=np.uint8)[start // 8 : (start + n + 7) // 8]
    return np.unpackbits(packed, bitorder="little")[start % 8 : start % 8 + n].view(np.bool_)


#: numpy dtypes of the Arrow types :func:`_numpy` reads from their buffers (little-endian, as Arrow).
_NUMPY_CODES: Final = {
    **{f"int{8 * w}": f"<i{w}" for w in (1, 2, 4, 8)},
    **{f"uint{8 * w}": f"<u{w}" for w in (1, 2, 4, 8)},
    "float": "<f4",
    "double": "<f8",
}


def _arrow_float64(column: Any, what: str) -> NDArray[np.float64]:
    """A numeric Arrow column as float64 with NaN where null (zero-copy where there are no nulls);
    a column of another type is a :class:`SchemaError` naming ``what``."""
    pa = _pyarrow()
    column = _one_array(column)
    kind = column.type
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind)) and not (
        pa.types.is_null(kind)
    ):
        raise SchemaError(f"Expected `float`, got `{kind}` - at `$.{what}`", None)
    if column.type != pa.float64():
        column = column.cast(pa.float64())
    mod = native()
    if column.null_count and len(column) and mod is not None and hasattr(mod, "arrow_float64"):
        buffers = column.buffers()
        values = np.frombuffer(buffers[1], dtype=np.float64)[column.offset : column.offset + len(column)]
        out: NDArray[np.float64] = mod.arrow_float64(values, buffers[0], column.offset)
        return out
    return np.asarray(_numpy(column), dtype=np.float64)


def _arrow_floats(table: Any, name: str, n: int, limit: float = ev.MAX_AMOUNT) -> NDArray[np.float64]:
    if name not in table.column_names:
        return np.full(n, np.nan)
    out = _arrow_float64(table.column(name), name)
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
    ts_col = _one_array(table.column("timestamp"))
    if ts_col.null_count:
        row = int(_pyarrow("compute").index(ts_col.is_null(), True).as_py())
        raise SchemaError(f"Expected `int | datetime`, got `null` - at `$[{row}].timestamp`", row)
    if pa.types.is_timestamp(ts_col.type):
        per_ms = {"s": -1000, "ms": 1, "us": 1000, "ns": 1_000_000}[ts_col.type.unit]
        raw = np.asarray(_numpy(ts_col.view(pa.int64())), dtype=np.int64)
        ts_ms = raw if per_ms == 1 else raw * -per_ms if per_ms < 0 else raw // per_ms
    elif pa.types.is_integer(ts_col.type):
        ts_ms = np.asarray(_numpy(ts_col.cast(pa.int64())), dtype=np.int64)
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
    "medium",
    "products",
)
_ARROW_STRINGS: Final = ("type", "user_id", "channel", "campaign_id", "coupon", "medium")
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

    medium = _arrow_media(table)
    default = _DEFAULT_CHANNELS[event_type]
    if medium is not None:
        # a message without a channel is on its medium's channel (events.event_channel)
        by_medium = _IS_MESSAGE[event_type] & (medium >= 0)
        if by_medium.any():
            default = np.where(by_medium, _MEDIUM_CHANNEL_CODES[np.maximum(medium, 0)], default)
    if "channel" in table.column_names:
        channels = Interner(ev.CHANNELS)
        given = _arrow_codes(table.column("channel"), channels, "channel", False, np.int32)
        if len(channels) > len(ev.CHANNELS):
            row = int(np.flatnonzero(given >= len(ev.CHANNELS))[0])
            raise SchemaError(f"Invalid channel - at `$[{row}].channel`", row)
        if (given < 0).any():
            channel = np.where(given >= 0, given, default).astype(np.uint8)
        else:
            channel = given.astype(np.uint8)
    else:
        channel = default.astype(np.uint8)

    if "event_id" not in table.column_names:
        event_id = np.zeros(n, dtype=np.uint64)
    elif pa.types.is_unsigned_integer(table.schema.field("event_id").type):
        event_id = np.asarray(_numpy(table.column("event_id"), 0), dtype=np.uint64)
    else:
        event_id = hash_strings(table.column("event_id").cast(pa.large_string()).combine_chunks())

    if "coupon" in table.column_names:
        has_coupon = _valid(table.column("coupon"))
    elif "has_coupon" in table.column_names:
        has_coupon = np.asarray(_numpy(table.column("has_coupon"), False))
    else:
        has_coupon = np.zeros(n, dtype=np.bool_)
    if "campaign_id" in table.column_names:
        campaign = _arrow_codes(table.column("campaign_id"), names.campaigns, "campaign_id", False, np.int32)
    else:
        campaign = np.full(n, NO_CAMPAIGN, dtype=np.int32)
    consent = _arrow_consent(table, event_type, medium)

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


def _arrow_media(table: Any) -> NDArray[np.int64] | None:
    """The ``medium`` column as :data:`~affinity_sdk.capture.events.MEDIA` codes (-1: null), or
    ``None`` when the table has none; :class:`SchemaError` names the first unknown medium."""
    if "medium" not in table.column_names:
        return None
    media = Interner(ev.MEDIA)
    medium = _arrow_codes(table.column("medium"), media, "medium", False, np.int64)
    if len(media) > len(ev.MEDIA):
        row = int(np.flatnonzero(medium >= len(ev.MEDIA))[0])
        raise SchemaError(f"Invalid medium {media.name(int(medium[row]))!r} - at `$[{row}].medium`", row)
    return medium


def _arrow_consent(
    table: Any, event_type: NDArray[np.uint8], medium: NDArray[np.int64] | None
) -> NDArray[np.int8]:
    """The batch ``consent`` codes from ``granted`` and ``medium`` (:func:`_arrow_media`'s codes,
    :func:`~affinity_sdk.profile.channel_consent.encode_consent`): a ``consent_changed`` row with
    a medium decides for it alone, an ``unsubscribed`` row with one revokes it."""
    pa = _pyarrow()
    n = table.num_rows
    if "granted" not in table.column_names:
        consent = np.full(n, NO_CONSENT, dtype=np.int8)
    else:
        granted = _one_array(table.column("granted"))
        if pa.types.is_boolean(granted.type):
            consent = _numpy(granted, False).astype(np.int8)  # true 1, false 0
            if granted.null_count:
                consent[~_valid(granted)] = NO_CONSENT
        else:
            consent = np.where(
                _valid(granted),
                np.asarray(granted.fill_null(False).to_numpy(zero_copy_only=False)).astype(np.int8),
                NO_CONSENT,
            ).astype(np.int8)
    if medium is None:
        return consent
    decided = (event_type == _CONSENT_CHANGED) & (consent >= 0)
    on_medium = (medium >= 0) & (decided | (event_type == _UNSUBSCRIBED))
    if not on_medium.any():
        return consent
    granted_bit = np.where(decided, consent, 0)  # an unsubscribe revokes
    coded: NDArray[np.int8] = np.where(on_medium, 2 + 2 * medium + granted_bit, consent).astype(np.int8)
    return coded


def consent_arrow_columns(consent: NDArray[np.int8]) -> tuple[Any, Any]:
    """``(granted, medium)`` Arrow columns of batch ``consent`` codes, as
    :meth:`EventBatch.from_arrow <affinity_sdk.ingest.batch.EventBatch.from_arrow>` reads them back:
    ``granted`` null where no decision, ``medium`` null where the decision (if any) is global.

    Examples
    --------
    >>> import numpy as np
    >>> granted, medium = consent_arrow_columns(np.array([-1, 0, 1, 7], dtype=np.int8))
    >>> granted.to_pylist(), medium.to_pylist()
    ([None, False, True, True], [None, None, None, 'push'])
    """
    pa = _pyarrow()
    pc = _pyarrow("compute")
    granted = pa.array(consent % 2 == 1, pa.bool_(), mask=consent < 0)
    codes = (consent.astype(np.int64) - 2) // 2
    medium = pc.take(pa.array(list(ev.MEDIA), pa.string()), pa.array(codes, pa.int64(), mask=consent < 2))
    return granted, medium


def hash_strings(column: Any) -> NDArray[np.uint64]:
    """:func:`~affinity_sdk.ingest.interner.event_id_hash` of every string of a ``large_string``
    Arrow array (compiled when the extension is built).

    Examples
    --------
    >>> import pyarrow as pa
    >>> from affinity_sdk.ingest.interner import event_id_hash
    >>> hashes = hash_strings(pa.array(["a", "b"], pa.large_string()))
    >>> hashes.tolist() == [event_id_hash("a"), event_id_hash("b")]
    True
    """
    mod = native()
    if mod is None or not hasattr(mod, "fnv1a_strings"):
        return np.asarray([event_id_hash(s) for s in column.to_pylist()], dtype=np.uint64)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[
        column.offset : column.offset + len(column) + 1
    ]
    data = (
        np.frombuffer(column.buffers()[2], dtype=np.uint8) if column.buffers()[2] else np.zeros(0, np.uint8)
    )
    valid = _valid(column).view(np.uint8)
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
        empty: dict[str, Any] = {k: np.zeros(0, dtype=v) for k, v in ITEM_COLUMNS.items()}
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
    offsets = _numpy(col.offsets)
    # What `flatten` gives a list array without nulls (it would import pyarrow.compute).
    flat = col.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    if offsets[0] != 0:
        offsets = offsets - offsets[0]
    item_event = _item_rows(offsets)
    fields = {f.name for f in flat.type}
    for required in ("product_id", "category", "brand", "price"):
        if required not in fields:
            raise SchemaError(f"Object missing required field `{required}` - at `$.products[]`", None)
    price = _arrow_float64(flat.field("price"), "products[].price")
    _check_amounts(price, "products[].price", nan_ok=False)
    discount = np.full(price.shape[0], np.nan)
    if "discount" in fields:
        discount = _arrow_float64(flat.field("discount"), "products[].discount")
        _check_amounts(discount, "products[].discount")
    quantity = np.ones(price.shape[0], dtype=np.int32)
    if "quantity" in fields:
        q = _numpy(flat.field("quantity"), 1)
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
    granted, medium = consent_arrow_columns(batch.consent)
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
            "granted": granted,
            "medium": medium,
            "products": pa.ListArray.from_arrays(pa.array(offsets), products),
        }
    )


_CONSENT_CHANGED: Final = ev.EVENT_TYPE_CODES["consent_changed"]
_UNSUBSCRIBED: Final = ev.EVENT_TYPE_CODES["unsubscribed"]
_SINGLE_PRODUCT_CODES: Final = np.asarray(
    [
        ev.EVENT_TYPE_CODES[t]
        for t in ("product_viewed", "product_added", "product_removed", "product_added_to_wishlist")
    ]
)
#: Indexed by event type code (uint8, so every value indexes): single-product event or not.
_IS_SINGLE_PRODUCT: Final = np.isin(np.arange(256), _SINGLE_PRODUCT_CODES)
#: Indexed by event type code (uint8): a ``message_*`` event (its medium sets its channel).
_IS_MESSAGE: Final = np.isin(
    np.arange(256),
    [code for name, code in ev.EVENT_TYPE_CODES.items() if issubclass(ev.EVENT_CLASSES[name], ev._Message)],
)
#: Indexed by medium code: the channel code of a message on that medium.
_MEDIUM_CHANNEL_CODES: Final = np.asarray(
    [_CHANNEL_CODES[ev._MEDIUM_CHANNEL[m]] for m in ev.MEDIA], dtype=np.uint8
)
#: Indexed by event type code: the type's default channel code.
_DEFAULT_CHANNELS: Final = np.asarray(
    [_CHANNEL_CODES[ev.default_channel(t)] for t in ev.EVENT_TYPES], dtype=np.uint8
)
