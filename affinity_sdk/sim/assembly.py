"""Blocks of simulated events (:class:`_Part`) merged into the time-sorted history and horizon
batches (:class:`~affinity_sdk.ingest.batch.EventBatch`), with the per-event fields a batch does not
keep (:class:`EventDetails`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.ingest.batch import NO_CAMPAIGN, NO_CONSENT, EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.sim.catalogue import Catalogue
from affinity_sdk.sim.ids import _event_id_hashes

__all__ = ["EventDetails"]


@dataclass(eq=False)
class EventDetails:
    """Per-event fields a batch does not keep, aligned with the batch's rows.

    ``order_no`` (-1: none) names the order of order, checkout, coupon and refund events;
    ``session_no`` (-1: none) the browsing session; ``aux`` is the category code searched for or
    listed (``products_searched`` / ``product_list_viewed``), -1 otherwise; ``first_id`` is the
    serial number behind the first row's ``event_id``.
    """

    order_no: NDArray[np.int64]
    session_no: NDArray[np.int64]
    aux: NDArray[np.int32]
    first_id: int


@dataclass(eq=False)
class _Part:
    """A block of events (unsorted) with its product lines (``item_event`` local to the block)."""

    user: NDArray[np.int64]
    event_type: NDArray[np.uint8]
    ts_ms: NDArray[np.int64]
    channel: NDArray[np.uint8]
    revenue: NDArray[np.float64]
    discount: NDArray[np.float64]
    has_coupon: NDArray[np.bool_]
    campaign: NDArray[np.int32]
    consent: NDArray[np.int8]
    order_no: NDArray[np.int64]
    session_no: NDArray[np.int64]
    aux: NDArray[np.int32]
    item_event: NDArray[np.int64]
    item_product: NDArray[np.int64]
    item_price: NDArray[np.float64]
    item_discount: NDArray[np.float64]
    item_quantity: NDArray[np.int32]


def _part(
    user: NDArray[np.int64],
    etype: int | NDArray[np.uint8],
    ts: NDArray[np.int64],
    channel: int | NDArray[np.uint8],
    *,
    revenue: NDArray[np.float64] | None = None,
    discount: NDArray[np.float64] | None = None,
    has_coupon: NDArray[np.bool_] | None = None,
    campaign: NDArray[np.int32] | None = None,
    consent: NDArray[np.int8] | None = None,
    order_no: NDArray[np.int64] | None = None,
    session_no: NDArray[np.int64] | None = None,
    aux: NDArray[np.int32] | None = None,
    items: tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int32]
    ]
    | None = None,
) -> _Part:
    n = int(user.shape[0])

    def full(value: Any, dtype: Any, fill: Any) -> Any:
        if value is None:
            return np.full(n, fill, dtype)
        return np.broadcast_to(np.asarray(value, dtype), (n,))

    if items is None:
        items = (
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.float64),
            np.empty(0, np.int32),
        )
    return _Part(
        user=user,
        event_type=full(etype, np.uint8, 0),
        ts_ms=ts,
        channel=full(channel, np.uint8, 0),
        revenue=full(revenue, np.float64, np.nan),
        discount=full(discount, np.float64, np.nan),
        has_coupon=full(has_coupon, np.bool_, False),
        campaign=full(campaign, np.int32, NO_CAMPAIGN),
        consent=full(consent, np.int8, NO_CONSENT),
        order_no=full(order_no, np.int64, -1),
        session_no=full(session_no, np.int64, -1),
        aux=full(aux, np.int32, -1),
        item_event=items[0],
        item_product=items[1],
        item_price=items[2],
        item_discount=items[3],
        item_quantity=items[4],
    )


_EVENT_FIELDS: Final = (
    "user",
    "event_type",
    "ts_ms",
    "channel",
    "revenue",
    "discount",
    "has_coupon",
    "campaign",
    "consent",
    "order_no",
    "session_no",
    "aux",
)


def _time_order(ts: NDArray[np.int64]) -> NDArray[np.intp]:
    """``np.argsort(ts, kind="stable")``, faster: bucket by the top 16 bits, then sort the nearly sorted."""
    if ts.shape[0] == 0:
        return np.empty(0, np.intp)
    offset = ts - ts.min()
    shift = max(0, int(offset.max()).bit_length() - 16)
    coarse = np.argsort((offset >> shift).astype(np.uint16), kind="stable")  # radix sort: O(n)
    return coarse[np.argsort(offset[coarse], kind="stable")]


def _assemble(
    parts: list[_Part], cat: Catalogue, names: Interners, seed: int, end_ms: int
) -> tuple[EventBatch, EventDetails, EventBatch, EventDetails]:
    n = sum(int(p.user.shape[0]) for p in parts)
    # Each part lists its product lines grouped by event, in event order.
    lines = np.concatenate(
        [np.bincount(p.item_event, minlength=p.user.shape[0]) for p in parts] or [np.empty(0, np.int64)]
    )
    order = _time_order(np.concatenate([p.ts_ms for p in parts]))
    cols: dict[str, NDArray[Any]] = {}
    for k in _EVENT_FIELDS:
        merged = np.concatenate([getattr(p, k) for p in parts])
        for p in parts:  # let the parts go as the batch fills, to keep peak memory down
            setattr(p, k, merged[:0])
        cols[k] = merged[order]
        del merged
    line_start = np.cumsum(lines) - lines
    count = lines[order]
    item_event = np.repeat(np.arange(n, dtype=np.int64), count)
    source = np.arange(item_event.shape[0], dtype=np.int64) + np.repeat(
        line_start[order] - (np.cumsum(count) - count), count
    )
    del lines, line_start, count
    item_cols: dict[str, NDArray[Any]] = {}
    for k in ("item_product", "item_price", "item_discount", "item_quantity"):
        merged = np.concatenate([getattr(p, k) for p in parts])
        for p in parts:
            setattr(p, k, merged[:0])
        item_cols[k] = merged[source]
        del merged
    del source
    n_hist = int(np.searchsorted(cols["ts_ms"], end_ms, "left"))
    n_hist_items = int(np.searchsorted(item_event, n_hist, "left"))

    def batch(ev_sl: slice, it_sl: slice, first: int) -> tuple[EventBatch, EventDetails]:
        product = item_cols["item_product"][it_sl]
        b = EventBatch(
            user=np.ascontiguousarray(cols["user"][ev_sl]),
            event_type=np.ascontiguousarray(cols["event_type"][ev_sl]),
            ts_ms=np.ascontiguousarray(cols["ts_ms"][ev_sl]),
            channel=np.ascontiguousarray(cols["channel"][ev_sl]),
            revenue=np.ascontiguousarray(cols["revenue"][ev_sl]),
            discount=np.ascontiguousarray(cols["discount"][ev_sl]),
            has_coupon=np.ascontiguousarray(cols["has_coupon"][ev_sl]),
            campaign=np.ascontiguousarray(cols["campaign"][ev_sl]),
            event_id=_event_id_hashes(seed, first, ev_sl.stop - ev_sl.start),
            consent=np.ascontiguousarray(cols["consent"][ev_sl]),
            item_event=item_event[it_sl] - ev_sl.start,
            item_product=product.astype(np.int32),
            item_category=cat.category[product],
            item_brand=cat.brand[product],
            item_price=np.ascontiguousarray(item_cols["item_price"][it_sl]),
            item_discount=np.ascontiguousarray(item_cols["item_discount"][it_sl]),
            item_quantity=np.ascontiguousarray(item_cols["item_quantity"][it_sl]),
            interners=names,
        )
        d = EventDetails(
            order_no=np.ascontiguousarray(cols["order_no"][ev_sl]),
            session_no=np.ascontiguousarray(cols["session_no"][ev_sl]),
            aux=np.ascontiguousarray(cols["aux"][ev_sl]),
            first_id=first,
        )
        return b, d

    hist, hist_d = batch(slice(0, n_hist), slice(0, n_hist_items), 0)
    fut, fut_d = batch(slice(n_hist, n), slice(n_hist_items, item_event.shape[0]), n_hist)
    return hist, hist_d, fut, fut_d
