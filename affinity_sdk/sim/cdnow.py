"""The CDNOW purchase log (a real dataset, see ``tests/data/cdnow``) as an event batch."""

from __future__ import annotations

from os import PathLike
from typing import Final

from affinity_sdk.capture.order_log import read_order_log
from affinity_sdk.ingest.batch import EventBatch

__all__ = ["CDNOW_COLUMNS", "cdnow_orders"]

#: The CDNOW CSV's names for the order-log columns (``date`` keeps its name).
CDNOW_COLUMNS: Final = {"customer_id": "sample_id", "revenue": "dollars"}


def cdnow_orders(path: str | PathLike[str]) -> EventBatch:
    """The CDNOW purchase log (a CSV with ``sample_id``, ``date``, ``dollars`` columns, one row per
    purchase record) as ``order_completed`` events: one per record, revenue = dollars, no products.
    It is an order log (:func:`~affinity_sdk.capture.order_log.read_order_log`) with the columns
    :data:`CDNOW_COLUMNS`; a bad row raises.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cdnow.csv"
    >>> _ = path.write_text("sample_id,date,dollars\\n4,1997-01-01,29.33\\n4,1997-01-18,29.73\\n")
    >>> batch = cdnow_orders(path)
    >>> list(batch.interners.users.names), batch.revenue.tolist(), int(batch.ts_ms[0])
    (['4'], [29.33, 29.73], 852076800000)
    """
    return read_order_log(path, columns=CDNOW_COLUMNS)
