"""What every Dask entry point shares: importing Dask lazily (so the package imports without
it), the source type aliases, and the shuffle of events by user with a scoring pass per
partition.

Examples
--------
>>> import pandas as pd, dask.dataframe as dd
>>> events = dd.from_pandas(pd.DataFrame({"user_id": list("abcab"), "ts_ms": range(5)}), npartitions=2)
>>> parts = by_user(events, 3, "tasks").compute(scheduler="sync")
>>> sorted(parts["user_id"].tolist())
['a', 'a', 'b', 'b', 'c']
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from os import PathLike
from typing import Any, Final, Literal

__all__ = ["STR", "Format", "Reader", "Source", "by_user", "dask_module", "require_dask", "shuffle_and_score"]

Source = str | PathLike[str] | Sequence[str | PathLike[str]] | Any
Format = Literal["auto", "parquet", "ndjson"]
Reader = Literal["auto", "native", "python"]
#: The pandas dtype of string columns (user ids, tier labels, value names).
STR: Final = "str"


def require_dask() -> Any:
    """``dask.dataframe`` (typed ``Any``: Dask's annotations are partial)."""
    try:
        dd = importlib.import_module("dask.dataframe")
    except ImportError as exc:
        raise ImportError(
            "affinity_sdk.scale.dask needs Dask: pip install 'affinity_sdk[dask]' "
            "(dask[dataframe], distributed, pyarrow)"
        ) from exc
    return dd


def dask_module() -> Any:
    """The ``dask`` module (``ImportError`` naming the extra when it is missing)."""
    require_dask()
    return importlib.import_module("dask")


def by_user(events: Any, npartitions: int | None, shuffle_method: str | None) -> Any:
    """``events`` hash-partitioned by ``user_id`` (whole users per partition)."""
    return events.shuffle(
        on="user_id", npartitions=npartitions or events.npartitions, shuffle_method=shuffle_method
    )


def shuffle_and_score(
    events: Any,
    now: Any,
    npartitions: int | None,
    shuffle_method: str | None,
    compute: dict[str, Any],
    score: Any,
    args: tuple[Any, ...],
    meta: Any,
) -> tuple[Any, int]:
    """Hash-partition ``events`` by user, run ``score(partition, now_ms, *args)`` on every
    partition and persist the result; ``now=None`` takes the latest event time in the same pass."""
    dask = dask_module()
    from affinity_sdk._units import to_epoch_ms

    shuffled = by_user(events, npartitions, shuffle_method)
    now_value: Any = events["ts_ms"].max() if now is None else to_epoch_ms(now)
    scored = shuffled.map_partitions(score, now_value, *args, meta=meta)
    if now is None:
        scored, now_value = dask.persist(scored, now_value, **compute)
        return scored, int(dask.compute(now_value, **compute)[0])
    (scored,) = dask.persist(scored, **compute)
    return scored, int(now_value)
