"""What every Dask entry point shares: importing Dask lazily (so the package imports without
it), the source type aliases, empty frames for ``meta``, tree reductions of worker results, and
the shuffle of events by user with a scoring pass per partition.

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
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from typing import Any, Final, Literal

__all__ = [
    "STR",
    "Format",
    "Reader",
    "Source",
    "by_user",
    "dask_module",
    "empty_frame",
    "require_dask",
    "shuffle_and_score",
    "tree_reduce",
]

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


def empty_frame(dtypes: Mapping[str, Any]) -> Any:
    """An empty pandas DataFrame with these columns and dtypes (a Dask ``meta``).

    Examples
    --------
    >>> empty_frame({"user_id": STR, "score": "float64"}).dtypes.astype(str).tolist()
    ['str', 'float64']
    """
    import pandas as pd

    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in dtypes.items()})


def tree_reduce(parts: list[Any], combine: Callable[..., Any], split_every: int = 8) -> Any:
    """``parts`` (Delayed) combined ``split_every`` at a time, in order, in a tree of worker
    tasks: ``combine(*some_parts)`` gives one part; the root is returned (Delayed).

    Examples
    --------
    >>> from dask import delayed
    >>> tree_reduce([delayed(i) for i in range(20)], lambda *xs: sum(xs), 3).compute(scheduler="sync")
    190
    """
    delayed = dask_module().delayed
    while len(parts) > 1:
        parts = [delayed(combine)(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


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
