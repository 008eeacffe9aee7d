"""Screening: the numbers a batch must hold before anything is folded.

The decoders enforce the schema, but Structs built in Python skip validation and an
:class:`~affinity_sdk.ingest.batch.EventBatch` can be built by hand, so the ingest pipeline
screens every batch (:func:`screen_rows`) and rejects, locates and explains each bad row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.capture import events as ev
from affinity_sdk.ingest.batch import EventBatch

__all__ = ["MAX_ROW_REVENUE", "screen_rows"]


#: Largest revenue an event row can carry: a product line's price × quantity at their maxima.
MAX_ROW_REVENUE: Final = ev.MAX_AMOUNT * 1_000_000


def _bad_amount(values: NDArray[np.float64], limit: float) -> NDArray[np.bool_]:
    """Not missing (NaN) and not a number in ``0 .. limit`` (so ±inf and negatives are bad)."""
    bad: NDArray[np.bool_] = (values < 0.0) | (values > limit)  # NaN compares false both ways
    return bad


def screen_rows(
    batch: EventBatch, *, max_ts_ms: int | None = None
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], Callable[[int], str]]:
    """Rows whose numbers cannot be folded: ``(bad, future, message)``.

    The decoders already enforce the schema, but Structs built in Python skip validation and an
    :class:`~affinity_sdk.ingest.batch.EventBatch` can be built by hand, so the Scorer checks every
    batch before folding: event-type and channel codes in range; timestamps within
    1900-01-01 .. 2200-01-01; revenue, discounts and prices missing (NaN) or finite, non-negative
    and at most :data:`~affinity_sdk.capture.events.MAX_AMOUNT` (revenue: times the largest quantity;
    required for ``order_completed``); quantities at least 1. ``future`` marks the rows (also in
    ``bad``) stamped after ``max_ts_ms``; ``message(row)`` says what is wrong with a bad row,
    msgspec-style.

    Examples
    --------
    >>> from affinity_sdk.ingest.batch import EventBatch
    >>> from affinity_sdk.capture.events import AppOpened, OrderCompleted
    >>> good = AppOpened(user_id="a", timestamp=5)
    >>> bad = OrderCompleted(user_id="b", timestamp=0, order_id="o", products=[], revenue=float("inf"))
    >>> flags, future, message = screen_rows(EventBatch.from_events([good, bad]), max_ts_ms=4)
    >>> flags.tolist(), future.tolist()
    ([True, True], [True, False])
    >>> message(1)
    'Expected a number in 0 .. 1e+18 or nothing, got inf - at `$[1].revenue`'
    """
    n = len(batch)
    n_types, n_channels = len(ev.EVENT_TYPES), len(ev.CHANNELS)
    ts = batch.ts_ms
    revenue_required = batch.event_type == ev.EVENT_TYPE_CODES["order_completed"]
    checks: list[tuple[NDArray[np.bool_], Callable[[int], str]]] = [
        (
            batch.event_type >= n_types,
            lambda r: f"Unknown event type code {int(batch.event_type[r])} - at {batch.locate(r, 'type')}",
        ),
        (
            batch.channel >= n_channels,
            lambda r: f"Unknown channel code {int(batch.channel[r])} - at {batch.locate(r, 'channel')}",
        ),
        (
            (ts < ev.MIN_TS_MS) | (ts > ev.MAX_TS_MS),
            lambda r: (
                f"Timestamp {int(ts[r])} ms is outside 1900-01-01 .. 2200-01-01 "
                f"- at {batch.locate(r, 'timestamp')}"
            ),
        ),
        (
            _bad_amount(batch.revenue, MAX_ROW_REVENUE) | (np.isnan(batch.revenue) & revenue_required),
            lambda r: (
                f"Expected a number in 0 .. {MAX_ROW_REVENUE:g} or nothing, got {batch.revenue[r]} "
                f"- at {batch.locate(r, 'revenue')}"
            ),
        ),
        (
            _bad_amount(batch.discount, ev.MAX_AMOUNT),
            lambda r: (
                f"Expected a number in 0 .. {ev.MAX_AMOUNT:g} or nothing, got {batch.discount[r]} "
                f"- at {batch.locate(r, 'discount')}"
            ),
        ),
    ]
    item_bad = (
        _bad_amount(batch.item_price, ev.MAX_AMOUNT)  # NaN: no price given (optional in Segment's spec)
        | _bad_amount(batch.item_discount, ev.MAX_AMOUNT)
        | (batch.item_quantity < 1)
    )
    bad_items = np.zeros(n, dtype=np.bool_)
    bad_items[batch.item_event[item_bad]] = True
    checks.append(
        (
            bad_items,
            lambda r: (
                f"A product's price or discount is not a number in 0 .. {ev.MAX_AMOUNT:g}, or its "
                f"quantity is below 1 - at {batch.locate(r, 'products')}"
            ),
        )
    )
    future = np.zeros(n, dtype=np.bool_) if max_ts_ms is None else ts > max_ts_ms
    checks.append(
        (
            future,
            lambda r: (
                f"Timestamp {int(ts[r])} ms is later than {max_ts_ms} ms, the newest time accepted "
                f"(max_future after the newest event or the clock) - at {batch.locate(r, 'timestamp')}"
            ),
        )
    )
    bad = np.zeros(n, dtype=np.bool_)
    for flags, _ in checks:
        bad |= flags

    def message(row: int) -> str:
        return next(describe(row) for flags, describe in checks if flags[row])

    return bad, future, message
