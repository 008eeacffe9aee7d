"""Order logs: a CSV with one row per order (customer, date, revenue) as ``order_completed`` events.

:func:`read_order_log` reads a CSV with a header holding (at least) the three order columns,
``customer_id``, ``date`` and ``revenue`` by default, other header names through ``columns``
(:func:`parse_column_map` reads the CLI's ``customer_id=cust,date=day,revenue=amount``), into an
:class:`~affinity_sdk.ingest.batch.EventBatch` of ``order_completed`` events without products, so
every consumer of order events (:func:`~affinity_sdk.models.bgnbd.summary_from_batch`, the CLV
model) reads an order log and an event file alike.

Values: ``customer_id`` any non-empty text; ``date`` an ISO-8601 date or date-time (``1997-01-31``,
``19970131``, ``1997-01-31T14:05:00Z``, with or without an offset; without one it is UTC; a date
alone is midnight UTC; years 1900 to 2199); ``revenue`` a finite number >= 0. A bad row gets a located error,
msgspec-style, "Expected ..., got ... - at line N, column `name`", where ``N`` is the line of the
file (the header is line 1); ``errors`` decides what happens to it, as for event files:
``"raise"`` (a :class:`~affinity_sdk.errors.SchemaError` whose ``position`` is ``N - 1``),
``"skip"`` (dropped and counted in the batch's ``rejects.n_invalid``) or ``"collect"`` (also
listed in ``rejects.errors`` as ``(N - 1, message)``).

Examples
--------
>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "orders.csv"
>>> _ = path.write_text("cust,day,amount\\nann,2024-01-05,30\\nbob,2024-01-06,-1\\nann,2024-02-01,12.5\\n")
>>> batch = read_order_log(path, columns=parse_column_map("customer_id=cust,date=day,revenue=amount"),
...                        errors="collect")
>>> list(batch.interners.users.names), batch.revenue.tolist(), batch.rejects.errors
(['ann'], [30.0, 12.5], [(2, 'Expected a finite revenue >= 0, got -1 - at line 3, column `amount`')])
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from os import PathLike
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.decode import Rejects
from affinity_sdk.errors import AffinityError, ConfigError, SchemaError
from affinity_sdk.ingest.batch import NO_CAMPAIGN, NO_CONSENT, EventBatch
from affinity_sdk.ingest.interner import Interners

__all__ = [
    "ORDER_COLUMNS",
    "frame_orders",
    "orders_batch",
    "parse_column_map",
    "read_order_log",
]

#: The order-log fields, each read from the header column of the same name unless mapped.
ORDER_COLUMNS: Final = ("customer_id", "date", "revenue")

Errors = Literal["raise", "skip", "collect"]


def parse_column_map(text: str) -> dict[str, str]:
    """``"customer_id=cust,date=day"`` as ``{"customer_id": "cust", "date": "day"}``; keys must be
    among :data:`ORDER_COLUMNS`.

    Examples
    --------
    >>> parse_column_map("customer_id=cust, revenue=amount")
    {'customer_id': 'cust', 'revenue': 'amount'}
    >>> parse_column_map("user=cust")
    Traceback (most recent call last):
    ...
    affinity_sdk.errors.ConfigError: unknown order column 'user' in --columns: use customer_id, date, revenue
    """
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, name = (s.strip() for s in part.partition("="))
        if not sep or not key or not name:
            raise ConfigError(
                f"invalid column mapping {part!r} in --columns: use field=header, e.g. date=day"
            )
        if key not in ORDER_COLUMNS:
            raise ConfigError(f"unknown order column {key!r} in --columns: use {', '.join(ORDER_COLUMNS)}")
        if key in mapping:
            raise ConfigError(f"order column {key!r} is mapped twice in --columns")
        mapping[key] = name
    return mapping


def _epoch_ms(text: str) -> int:
    """Epoch ms of an ISO-8601 date or date-time; naive values are UTC. Years outside
    1900-2199 raise ``ValueError``, as the event decoders screen timestamps."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if not 1900 <= when.year < 2200:
        raise ValueError(f"year {when.year} out of range")
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class _Rows:
    """The valid rows of an order log, and what was wrong with the others."""

    def __init__(self, errors: Errors) -> None:
        self.errors = errors
        self.customer: list[str] = []
        self.ts_ms: list[int] = []
        self.revenue: list[float] = []
        self.ms_of: dict[str, int] = {}  # each distinct date text is parsed once
        self.rejects: list[tuple[int, str]] = []
        self.n_invalid = 0

    def reject(self, line: int, message: str) -> None:
        if self.errors == "raise":
            raise SchemaError(message, line - 1)
        self.n_invalid += 1
        if self.errors == "collect":
            self.rejects.append((line - 1, message))


def read_order_log(
    path: str | PathLike[str],
    *,
    columns: Mapping[str, str] | None = None,
    errors: Errors = "raise",
    interners: Interners | None = None,
) -> EventBatch:
    """Read an order-log CSV (see the module docstring) as ``order_completed`` events, one per
    valid row, in file order; ids are interned into ``interners`` (new if None).

    Raises :class:`~affinity_sdk.errors.ConfigError` for a mapping key that is not an order
    column, :class:`~affinity_sdk.errors.SchemaError` for a header without a needed column (or a
    bad row with ``errors="raise"``) and :class:`~affinity_sdk.errors.AffinityError` for an
    unreadable file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "orders.csv"
    >>> _ = path.write_text("customer_id,date,revenue\\nann,2024-01-05T10:00:00+02:00,30\\n")
    >>> batch = read_order_log(path)
    >>> batch.ts_ms.tolist(), batch.event_type.tolist() == [ev.EVENT_TYPE_CODES["order_completed"]]
    ([1704441600000], True)
    """
    if errors not in ("raise", "skip", "collect"):
        raise ConfigError(f"errors must be 'raise', 'skip' or 'collect' (got {errors!r})")
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(ORDER_COLUMNS))
    if unknown:
        raise ConfigError(f"unknown order column {unknown[0]!r}: use {', '.join(ORDER_COLUMNS)}")
    names = {key: mapping.get(key, key) for key in ORDER_COLUMNS}
    rows = _Rows(errors)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise SchemaError(
                    f"the order log {path} is empty: expected a header with {', '.join(names.values())}"
                )
            index = {name.strip(): i for i, name in enumerate(header)}
            missing = [f"`{name}` ({key})" for key, name in names.items() if name not in index]
            if missing:
                raise SchemaError(
                    f"the order log {path} has no column {', '.join(missing)}: its header has "
                    f"{', '.join(repr(h) for h in header)} (map others with --columns field=header)"
                )
            at = [index[names[key]] for key in ORDER_COLUMNS]
            for record in reader:
                if record:
                    _read_row(rows, reader.line_num, record, at, names)
    except (OSError, UnicodeDecodeError) as exc:
        raise AffinityError(f"cannot read the order log {path}: {exc}") from None
    except csv.Error as exc:
        raise SchemaError(f"the order log {path} is not valid CSV: {exc}") from None
    return orders_batch(
        rows.customer, rows.ts_ms, rows.revenue, interners, Rejects(rows.rejects, rows.n_invalid)
    )


def _read_row(rows: _Rows, line: int, record: list[str], at: list[int], names: dict[str, str]) -> None:
    """Check one CSV record and append it to ``rows`` (or reject it)."""
    if len(record) <= max(at):
        absent = next(key for key, i in zip(ORDER_COLUMNS, at, strict=True) if i >= len(record))
        rows.reject(line, f"Expected a value, got nothing - at line {line}, column `{names[absent]}`")
        return
    customer, date, revenue_text = (record[i].strip() for i in at)
    if not customer:
        rows.reject(line, f"Expected a customer id, got '' - at line {line}, column `{names['customer_id']}`")
        return
    ts_ms = rows.ms_of.get(date)
    if ts_ms is None:
        try:
            ts_ms = rows.ms_of[date] = _epoch_ms(date)
        except (ValueError, OverflowError):
            rows.reject(
                line,
                f"Expected an ISO-8601 date (e.g. 1997-01-31), got {date!r} - at line {line}, "
                f"column `{names['date']}`",
            )
            return
    try:
        revenue = float(revenue_text)
    except ValueError:
        revenue = math.nan
    if not (math.isfinite(revenue) and revenue >= 0):
        rows.reject(
            line,
            f"Expected a finite revenue >= 0, got {revenue_text or repr('')} - at line {line}, "
            f"column `{names['revenue']}`",
        )
        return
    rows.customer.append(customer)
    rows.ts_ms.append(ts_ms)
    rows.revenue.append(revenue)


def frame_orders(
    frame: Any,
    *,
    columns: Mapping[str, str] | None = None,
    errors: Errors = "raise",
    interners: Interners | None = None,
) -> EventBatch:
    """A pandas / polars DataFrame or pyarrow Table of orders (one row each) as
    ``order_completed`` events, in row order; ``columns`` maps :data:`ORDER_COLUMNS` to the
    frame's names. Customer ids are text or integers (read as their decimal text); dates are
    datetimes, dates or ISO-8601 text (naive values are UTC); revenue is a number. A bad row
    ("Expected ..., got ... - at row N, column `name`", ``N`` 0-based) is handled by ``errors``
    as in :func:`read_order_log`; a column of the wrong type raises
    :class:`~affinity_sdk.errors.SchemaError` naming it.

    Examples
    --------
    >>> import pyarrow as pa
    >>> t = pa.table({"customer_id": ["a", "b"], "date": ["2024-01-05", "someday"], "revenue": [3, 4]})
    >>> batch = frame_orders(t, errors="collect")
    >>> batch.revenue.tolist(), batch.rejects.errors
    ([3.0], [(1, "Expected an ISO-8601 date (e.g. 1997-01-31), got 'someday' - at row 1, column `date`")])
    """
    from affinity_sdk.ingest.arrow import _arrow_float64, _pyarrow
    from affinity_sdk.ingest.frames import _to_arrow, frame_kind

    if errors not in ("raise", "skip", "collect"):
        raise ConfigError(f"errors must be 'raise', 'skip' or 'collect' (got {errors!r})")
    names = {key: dict(columns or {}).get(key, key) for key in ORDER_COLUMNS}
    unknown = sorted(set(columns or {}) - set(ORDER_COLUMNS))
    if unknown:
        raise ConfigError(f"unknown order column {unknown[0]!r}: use {', '.join(ORDER_COLUMNS)}")
    kind = frame_kind(frame)
    if kind is None:
        raise SchemaError(
            f"Expected a CSV path or a pandas / polars DataFrame or pyarrow Table of orders, got "
            f"`{type(frame).__name__}`"
        )
    present = [str(c) for c in frame.columns] if kind != "arrow" else list(frame.schema.names)
    missing = [f"`{name}` ({key})" for key, name in names.items() if name not in present]
    if missing:
        raise SchemaError(
            f"the order frame has no column {', '.join(missing)}: its columns are "
            f"{', '.join(repr(p) for p in present[:20])} (map others with customer=, date=, revenue=)"
        )
    pa = _pyarrow()
    pc = _pyarrow("compute")
    table = _to_arrow(frame, kind, [names[key] for key in ORDER_COLUMNS])
    customer = _frame_customers(table.column(0), names["customer_id"])
    ts_ms, bad_date = _frame_dates(table.column(1), names["date"])
    try:
        revenue = _arrow_float64(table.column(2), names["revenue"])
    except SchemaError as exc:
        raise SchemaError(f"{exc} (the order frame's revenue column)") from None
    bad = {
        "customer_id": customer.is_null().to_numpy(zero_copy_only=False)
        | (pc.utf8_length(customer).fill_null(0).to_numpy(zero_copy_only=False) == 0),
        "date": bad_date,
        "revenue": ~(np.isfinite(revenue) & (revenue >= 0)),
    }
    rows = _Rows(errors)
    invalid = bad["customer_id"] | bad["date"] | bad["revenue"]
    for row in np.flatnonzero(invalid).tolist():
        key = next(k for k in ORDER_COLUMNS if bad[k][row])
        value = table.column(ORDER_COLUMNS.index(key))[row].as_py()
        what = {
            "customer_id": "a customer id",
            "date": "an ISO-8601 date (e.g. 1997-01-31)",
            "revenue": "a finite revenue >= 0",
        }[key]
        rows.reject(row + 1, f"Expected {what}, got {value!r} - at row {row}, column `{names[key]}`")
    keep = ~invalid
    return orders_batch(
        customer.filter(pa.array(keep)).to_pylist() if invalid.any() else customer.to_pylist(),
        ts_ms[keep],
        revenue[keep],
        interners,
        Rejects(rows.rejects, rows.n_invalid),
    )


def _frame_customers(column: Any, name: str) -> Any:
    """A customer column as one Arrow string array (integers as their decimal text)."""
    from affinity_sdk.ingest.arrow import _one_array, _pyarrow

    pa = _pyarrow()
    column = _one_array(column)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    kind = column.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)
    if text or pa.types.is_integer(kind) or getattr(pa.types, "is_string_view", bool)(kind):
        return column.cast(pa.large_string())
    raise SchemaError(f"Expected customer ids as text or integers, got `{column.type}` - at column `{name}`")


def _frame_dates(column: Any, name: str) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Epoch ms of a date column and, per row, whether it is missing, unreadable or out of range."""
    from affinity_sdk.ingest.arrow import _one_array, _pyarrow

    pa = _pyarrow()
    column = _one_array(column)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if pa.types.is_date(kind):
            column = column.cast(pa.timestamp("ms"))
        per_ms = {"s": -1000, "ms": 1, "us": 1000, "ns": 1_000_000}[column.type.unit]
        raw = np.asarray(column.view(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), np.int64)
        ts_ms = raw * -per_ms if per_ms < 0 else raw // per_ms
        bad = np.asarray(column.is_null().to_numpy(zero_copy_only=False))
        bad |= (ts_ms < ev.MIN_TS_MS) | (ts_ms > ev.MAX_TS_MS)
        return ts_ms, bad
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise SchemaError(f"Expected datetimes, dates or ISO-8601 text, got `{kind}` - at column `{name}`")
    encoded = column.dictionary_encode()
    ms_of = np.zeros(len(encoded.dictionary) + 1, dtype=np.int64)
    ok = np.zeros(len(encoded.dictionary) + 1, dtype=np.bool_)  # the extra slot serves nulls
    for i, text in enumerate(encoded.dictionary.to_pylist()):
        try:
            ms_of[i] = _epoch_ms(text.strip())
            ok[i] = True
        except (ValueError, OverflowError):
            pass
    idx = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    return ms_of[idx], ~ok[idx]


def orders_batch(
    customer: Sequence[str],
    ts_ms: ArrayLike,
    revenue: ArrayLike,
    interners: Interners | None = None,
    rejects: Rejects | None = None,
) -> EventBatch:
    """``order_completed`` events (no products, no ids, default channel) from plain columns.

    Examples
    --------
    >>> batch = orders_batch(["a", "b", "a"], [0, 5, 9], [1.0, 2.0, 3.0])
    >>> batch.user.tolist(), len(batch.interners.users)
    ([0, 1, 0], 2)
    """
    names = interners if interners is not None else Interners()
    user = names.users.intern_many(list(customer))
    n = user.shape[0]
    return EventBatch(
        user=user,
        event_type=np.full(n, ev.EVENT_TYPE_CODES["order_completed"], np.uint8),
        ts_ms=np.asarray(ts_ms, dtype=np.int64).reshape(n),
        channel=np.zeros(n, np.uint8),
        revenue=np.asarray(revenue, dtype=np.float64).reshape(n),
        discount=np.zeros(n),
        has_coupon=np.zeros(n, bool),
        campaign=np.full(n, NO_CAMPAIGN, np.int32),
        event_id=np.zeros(n, np.uint64),
        consent=np.full(n, NO_CONSENT, np.int8),
        item_event=np.zeros(0, np.int64),
        item_product=np.zeros(0, np.int32),
        item_category=np.zeros(0, np.int32),
        item_brand=np.zeros(0, np.int32),
        item_price=np.zeros(0),
        item_discount=np.zeros(0),
        item_quantity=np.zeros(0, np.int32),
        interners=names,
        rejects=rejects if rejects is not None else Rejects(),
    )
