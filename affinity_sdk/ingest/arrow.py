"""Arrow / Parquet for event batches (the ``[arrow]`` extra): the columns
:meth:`EventBatch.from_arrow <affinity_sdk.ingest.batch.EventBatch.from_arrow>` reads, the table
:meth:`EventBatch.to_arrow <affinity_sdk.ingest.batch.EventBatch.to_arrow>` writes, and the Parquet
read plan. pyarrow is imported on first use."""

from __future__ import annotations

import importlib
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import native
from affinity_sdk.capture import events as ev
from affinity_sdk.errors import SchemaError
from affinity_sdk.ingest.batch import _CHANNEL_CODES, ITEM_COLUMNS, NO_CAMPAIGN, NO_CONSENT, EventBatch
from affinity_sdk.ingest.interner import Interner, Interners, event_id_hash


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
    column = _text_column(_one_array(column), what)
    if column.null_count and required:
        row = int(pc.index(column.is_null(), True).as_py())
        raise SchemaError(f"Expected `str`, got `null` - at `$[{row}].{what}`", row)
    if column.null_count == len(column):  # e.g. an all-None pandas column: Arrow type `null`
        return np.full(len(column), -1, dtype=dtype)
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


def _text_column(column: Any, what: str) -> Any:
    """``column`` if it holds text (plain or dictionary-encoded; a string view is cast to a string),
    else a :class:`SchemaError` naming it, as msgspec words a wrong type."""
    pa = _pyarrow()
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return column
    if hasattr(pa.types, "is_string_view") and pa.types.is_string_view(kind):
        return (
            column.cast(pa.large_string())
            if kind is column.type
            else column.cast(pa.dictionary(column.type.index_type, pa.large_string()))
        )
    raise SchemaError(f"Expected `str`, got `{kind}` - at `$.{what}`", None)


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
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


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
            consent = _arrow_numpy(granted.cast(pa.int8()), NO_CONSENT)  # true 1, false 0, null -1
        else:
            consent = np.where(
                np.asarray(granted.is_valid().to_numpy(zero_copy_only=False)),
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
    offsets = np.asarray(col.offsets.to_numpy(zero_copy_only=False))
    if offsets.shape[0] and offsets[0] != 0:
        offsets = offsets - offsets[0]
    flat = col.flatten()
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
