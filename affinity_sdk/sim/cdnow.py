"""The CDNOW purchase log (a real dataset, see ``tests/data/cdnow``) as an event batch."""

from __future__ import annotations

from os import PathLike

import numpy as np

from affinity_sdk.capture import events as ev
from affinity_sdk.ingest.batch import NO_CAMPAIGN, NO_CONSENT, EventBatch
from affinity_sdk.ingest.interner import Interners

__all__ = ["cdnow_orders"]


def cdnow_orders(path: str | PathLike[str]) -> EventBatch:
    """The CDNOW purchase log (a CSV with ``sample_id``, ``date``, ``dollars`` columns, one row per
    purchase record) as ``order_completed`` events: one per record, revenue = dollars, no products.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cdnow.csv"
    >>> _ = path.write_text("sample_id,date,dollars\\n4,1997-01-01,29.33\\n4,1997-01-18,29.73\\n")
    >>> batch = cdnow_orders(path)
    >>> list(batch.interners.users.names), batch.revenue.tolist(), int(batch.ts_ms[0])
    (['4'], [29.33, 29.73], 852076800000)
    """
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    names = Interners()
    user = names.users.intern_many([r["sample_id"] for r in rows])
    n = user.shape[0]
    return EventBatch(
        user=user,
        event_type=np.full(n, ev.EVENT_TYPE_CODES["order_completed"], np.uint8),
        ts_ms=np.array([r["date"] for r in rows], dtype="datetime64[ms]").astype(np.int64),
        channel=np.zeros(n, np.uint8),
        revenue=np.array([float(r["dollars"]) for r in rows]),
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
    )
