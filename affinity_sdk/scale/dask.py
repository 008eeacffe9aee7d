"""Scale-out on Dask: score a partitioned event lake exactly, on any Dask cluster.

:func:`score_dataset` reads a partitioned Parquet or NDJSON event dataset (or takes a Dask
DataFrame), hash-partitions the events by ``user_id`` with Dask's own shuffle so that each
partition holds *whole users*, runs one ordinary :class:`~affinity_sdk.score.scorer.Scorer` (compiled
kernels included) per partition inside the workers, and cuts High / Medium / Low tiers at the
*exact* global quantiles of the raw score with a distributed radix selection (a few rounds of
small histograms, never the scores themselves, travel to the client). The result matches a
single-process ``Scorer`` fed the same events to float rounding: every user's state is built by the
same code from the same events, only the summation order differs.

Why hash-partitioning rather than merging per-partition states: the latest consent event of a
user decides whether they are scored, and that needs all of the user's events in one place (an
OR of partial opt-out flags would not be exact).

:func:`score_propensity` does the same for a fitted
:class:`~affinity_sdk.models.propensity.PropensityModel` (events and their product lines are shuffled,
features and probabilities are computed per user in the workers, tiers at exact quantiles).

The module imports without Dask; its functions raise :class:`ImportError` naming the
``[dask]`` extra when Dask is missing. Worker tasks are plain top-level functions of their
arguments (no global state), so any worker with ``affinity_sdk`` installed can run them.

Examples
--------
>>> import tempfile, pathlib
>>> from affinity_sdk import Scorer
>>> from affinity_sdk.sim.datasets import simulate_shop
>>> sim = simulate_shop(40, weeks=2, horizon_weeks=1, seed=5)
>>> with tempfile.TemporaryDirectory() as tmp:
...     _ = sim.write_parquet(pathlib.Path(tmp) / "events.parquet")
...     scores = score_dataset(tmp, scheduler="sync")
...     frame = scores.compute()
>>> single = Scorer()
>>> _ = single.ingest(sim.batch)
>>> expected = single.score().to_pandas().set_index("user_id")
>>> got = frame.set_index("user_id").loc[expected.index]
>>> bool((got["tier"] == expected["tier"]).all()), bool(np.allclose(got["score"], expected["score"]))
(True, True)
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike, fspath
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.config import ScoringConfig, default_config
from affinity_sdk.ingest.batch import EventBatch, Interner, Interners
from affinity_sdk.score.results import TIER_LABELS

__all__ = [
    "DaskAffinities",
    "DaskPropensity",
    "DaskScores",
    "exact_quantile_cutoffs",
    "read_events",
    "score_affinities",
    "score_dataset",
    "score_propensity",
]

Source = str | PathLike[str] | Sequence[str | PathLike[str]] | Any
Format = Literal["auto", "parquet", "ndjson"]
Reader = Literal["auto", "native", "python"]

#: Columns of the lean event frame that travels through the shuffle (what a Scorer folds).
EVENT_COLUMNS: Final = ("user_id", "event_type", "ts_ms", "revenue", "consent", "event_id")
_NDJSON_SUFFIXES: Final = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz")
_RADIX_BITS: Final = 11  # 2048 counts per fraction per partition: 6 rounds for 64-bit keys
_SIGN: Final = np.uint64(1 << 63)
#: Columns of the flat layout that a Scorer needs (``products``: for revenue = price × quantity).
_FLAT_COLUMNS: Final = ("type", "user_id", "timestamp", "event_id", "revenue", "granted", "products")
_STR: Final = "str"
#: Every column of the :meth:`EventBatch.from_arrow` layout (for models that use product lines).
_DETAIL_COLUMNS: Final = (
    *_FLAT_COLUMNS,
    "channel",
    "discount",
    "coupon",
    "has_coupon",
    "campaign_id",
)


def _require_dask() -> Any:
    """``dask.dataframe`` (typed ``Any``: Dask's annotations are partial)."""
    try:
        dd = importlib.import_module("dask.dataframe")
    except ImportError as exc:
        raise ImportError(
            "affinity_sdk.scale.dask needs Dask: pip install 'affinity_sdk[dask]' "
            "(dask[dataframe], distributed, pyarrow)"
        ) from exc
    return dd


def _dask() -> Any:
    _require_dask()
    return importlib.import_module("dask")


# --------------------------------------------------------------------------------------------
# reading: any source -> lean event frame (one row per event)
# --------------------------------------------------------------------------------------------
def _lean_meta(detail: bool = False) -> Any:
    import pandas as pd

    return (
        _lean_from_batch(EventBatch.empty(), detail, 0)
        if detail
        else pd.DataFrame(
            {
                "user_id": pd.Series([], dtype=_STR),
                "event_type": pd.Series([], dtype=np.uint8),
                "ts_ms": pd.Series([], dtype=np.int64),
                "revenue": pd.Series([], dtype=np.float64),
                "consent": pd.Series([], dtype=np.int8),
                "event_id": pd.Series([], dtype=np.uint64),
            }
        )
    )


def _lean_from_arrow(table: Any, detail: bool = False, part: int = 0) -> Any:
    """The lean frame from a flat event table, decoded by
    :meth:`EventBatch.from_arrow <affinity_sdk.ingest.batch.EventBatch.from_arrow>` (the layout and
    rules a single-process ``Scorer`` sees, e.g. revenue = price × quantity when missing)."""
    wanted = [c for c in (_DETAIL_COLUMNS if detail else _FLAT_COLUMNS) if c in table.column_names]
    return _lean_from_batch(EventBatch.from_arrow(table.select(wanted)), detail, part)


def _lean_from_pandas(frame: Any, detail: bool = False, partition_info: Any = None) -> Any:
    import pandas as pd
    import pyarrow as pa

    wanted = [c for c in (_DETAIL_COLUMNS if detail else _FLAT_COLUMNS) if c in frame.columns]
    frame = frame[wanted]
    if "granted" in wanted and not pd.api.types.is_bool_dtype(frame["granted"].dtype):
        # Dask stores an object column of booleans and nulls as strings.
        text = frame["granted"].astype("str").str.lower()
        granted = pd.Series(pd.NA, index=frame.index, dtype="boolean")
        granted[text == "true"] = True
        granted[text == "false"] = False
        frame = frame.assign(granted=granted)
    part = int(partition_info["number"]) if partition_info else 0
    return _lean_from_arrow(pa.Table.from_pandas(frame, preserve_index=False), detail, part)


def _read_parquet_part(
    path: str, row_groups: list[int], filesystem: Any, detail: bool = False, part: int = 0
) -> Any:
    import pandas as pd
    import pyarrow.parquet as pq

    # Row group by row group: nested columns cannot be read into one chunked table in one call.
    with pq.ParquetFile(path, filesystem=filesystem) as file:
        columns = [c for c in (_DETAIL_COLUMNS if detail else _FLAT_COLUMNS) if c in file.schema_arrow.names]
        # Event keys stay unique across the row groups of one task: 2**24 row groups a task.
        frames = [
            _lean_from_arrow(file.read_row_group(g, columns=columns), detail, (part << 24) + i)
            for i, g in enumerate(row_groups)
        ]
    if not frames:
        return _lean_meta(detail)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _parquet_parts(paths: list[str], rows_per_partition: int) -> list[tuple[str, list[int], Any]]:
    """(file, row groups, filesystem) per task: whole row groups, about ``rows_per_partition``
    rows each, never spanning two files."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(paths if len(paths) > 1 else paths[0], format="parquet")
    parts: list[tuple[str, list[int], Any]] = []
    for fragment in dataset.get_fragments():
        groups: list[int] = []
        rows = 0
        for group in fragment.row_groups:
            groups.append(group.id)
            rows += group.num_rows
            if rows >= rows_per_partition:
                parts.append((fragment.path, groups, dataset.filesystem))
                groups, rows = [], 0
        if groups or not fragment.row_groups:
            parts.append((fragment.path, groups, dataset.filesystem))
    return parts


def _names_at(names: Sequence[str], codes: NDArray[np.integer[Any]]) -> Any:
    """``names[codes]`` as a string Series (code -1: missing), taken in Arrow: no Python string
    object per row, which is what dominated building the lean frame."""
    import pandas as pd
    import pyarrow as pa

    values = pa.array(list(names), type=pa.large_string()).take(pa.array(codes, mask=codes < 0))
    return pd.Series(pd.array(values, dtype=_STR))


def _lean_from_batch(batch: EventBatch, detail: bool = False, part: int = 0) -> Any:
    """One row per event; with ``detail`` every event column plus one row per product line
    (``kind`` 1), tied to its event by ``ekey`` (unique per input part), so that a shuffle by
    user keeps an event and its lines together."""
    import pandas as pd

    events = pd.DataFrame(
        {
            "user_id": _names_at(batch.interners.users.names, batch.user),
            "event_type": batch.event_type,
            "ts_ms": batch.ts_ms,
            "revenue": batch.revenue,
            "consent": batch.consent,
            "event_id": batch.event_id,
        }
    )
    if not detail:
        return events
    n = len(batch)
    ekey = (np.int64(part) << np.int64(32)) + np.arange(n, dtype=np.int64)
    events = events.assign(
        channel=batch.channel,
        discount=batch.discount,
        has_coupon=batch.has_coupon,
        campaign=_names_at(batch.interners.campaigns.names, batch.campaign),
        kind=np.zeros(n, dtype=np.int8),
        ekey=ekey,
    )
    m = batch.n_items
    items = events.iloc[batch.item_event].reset_index(drop=True).assign(kind=np.ones(m, dtype=np.int8))
    rows = pd.concat([events, items], ignore_index=True)
    for column, codes, interner in (
        ("item_product", batch.item_product, batch.interners.products),
        ("item_category", batch.item_category, batch.interners.categories),
        ("item_brand", batch.item_brand, batch.interners.brands),
    ):
        rows[column] = _names_at(interner.names, np.concatenate([np.full(n, -1, dtype=codes.dtype), codes]))
    for column, values, fill in (
        ("item_price", batch.item_price, np.nan),
        ("item_discount", batch.item_discount, np.nan),
        ("item_quantity", batch.item_quantity, 0),
    ):
        rows[column] = np.concatenate([np.full(n, fill, dtype=values.dtype), values])
    return rows


def _lean_from_ndjson(
    block: bytes, errors: Literal["raise", "skip"], reader: Reader, detail: bool = False, part: int = 0
) -> Any:
    return _lean_from_batch(EventBatch.from_ndjson(block, errors=errors, reader=reader), detail, part)


def _infer_format(paths: list[str]) -> Literal["parquet", "ndjson"]:
    first = paths[0].lower().rstrip("/")
    if first.endswith(_NDJSON_SUFFIXES):
        return "ndjson"
    if Path(first).is_dir():
        entries = sorted(p.name.lower() for p in Path(first).iterdir() if p.is_file())
        if entries and all(e.endswith(_NDJSON_SUFFIXES) for e in entries):
            return "ndjson"
    return "parquet"


def read_events(
    source: Source,
    *,
    format: Format = "auto",
    blocksize: str | int = "64MiB",
    rows_per_partition: int = 2_000_000,
    errors: Literal["raise", "skip"] = "raise",
    reader: Reader = "auto",
    detail: bool = False,
) -> Any:
    """A lazy Dask DataFrame of events in the lean layout the scorers fold.

    Parameters
    ----------
    source
        A Parquet file, directory or glob; an NDJSON file, directory or glob (``.ndjson``,
        ``.jsonl``, ``.json``, optionally ``.gz``); a list of paths; or a Dask DataFrame. Parquet
        and DataFrames use the layout of :meth:`EventBatch.from_arrow
        <affinity_sdk.ingest.batch.EventBatch.from_arrow>` (``type``, ``user_id``, ``timestamp``; the
        optional ``revenue``, ``granted`` and ``products`` are read, other columns skipped) and are
        decoded by it, so every rule matches single-process ingestion (a DataFrame's ``products``
        must stay Arrow lists, e.g. built with ``to_pandas(types_mapper=pandas.ArrowDtype)``: Dask
        turns a column of Python lists into strings, which is refused). Remote URLs
        (``s3://...``) work where pyarrow has the filesystem.
    format
        ``"auto"`` decides by suffix (a directory of NDJSON files is NDJSON, anything else Parquet).
    blocksize
        Bytes per NDJSON partition (split at line ends).
    rows_per_partition
        Parquet rows per partition (whole row groups; a partition never spans two files).
    errors, reader
        For NDJSON: ``"raise"`` on the first bad line (its line number is within its block) or
        ``"skip"`` bad lines; the C++ or msgspec line reader; as
        :meth:`EventBatch.from_ndjson <affinity_sdk.ingest.batch.EventBatch.from_ndjson>`.
    detail
        Also carry every other event column and one row per product line (what affinity and
        propensity features read); the plain frame is what a ``Scorer`` folds.

    Returns
    -------
    dask.dataframe.DataFrame
        Columns ``user_id`` (string), ``event_type`` (uint8 code in
        :data:`~affinity_sdk.capture.events.EVENT_TYPES`), ``ts_ms`` (int64), ``revenue`` (float64, NaN
        where absent), ``consent`` (int8: 1 granted, 0 revoked, -1 not a consent event) and
        ``event_id`` (uint64 FNV-1a hash, 0 = none).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from affinity_sdk.sim.datasets import simulate_shop
    >>> sim = simulate_shop(10, weeks=1, horizon_weeks=1, seed=1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = sim.write_ndjson(pathlib.Path(tmp) / "events.ndjson")
    ...     events = read_events(pathlib.Path(tmp) / "events.ndjson").compute(scheduler="sync")
    >>> len(events) == len(sim.batch), list(events.columns)
    (True, ['user_id', 'event_type', 'ts_ms', 'revenue', 'consent', 'event_id'])
    """
    dd = _require_dask()
    delayed = _dask().delayed

    if isinstance(source, dd.DataFrame):
        return source.map_partitions(_lean_from_pandas, detail, meta=_lean_meta(detail))
    many: Sequence[Any] = source if isinstance(source, list | tuple) else [source]
    paths = [fspath(p) for p in many]
    if not paths:
        raise ValueError("no input paths given")
    kind = _infer_format(paths) if format == "auto" else format
    if kind == "parquet":
        parts = [
            delayed(_read_parquet_part)(*task, detail, i)
            for i, task in enumerate(_parquet_parts(paths, rows_per_partition))
        ]
    elif kind == "ndjson":
        read_bytes = importlib.import_module("dask.bytes").read_bytes
        globs = [str(Path(p) / "*") if Path(p).is_dir() else p for p in paths]
        compression = "infer" if any(p.endswith(".gz") for p in globs) else None
        _, blocks = read_bytes(
            globs, delimiter=b"\n", blocksize=blocksize, sample=False, compression=compression
        )
        flat = [block for file_blocks in blocks for block in file_blocks]
        parts = [delayed(_lean_from_ndjson)(block, errors, reader, detail, i) for i, block in enumerate(flat)]
    else:
        raise ValueError(f"unknown format {format!r}: use 'auto', 'parquet' or 'ndjson'")
    if not parts:
        raise ValueError(f"no events found at {paths}")
    return dd.from_delayed(parts, meta=_lean_meta(detail), verify_meta=False)


# --------------------------------------------------------------------------------------------
# scoring inside the workers
# --------------------------------------------------------------------------------------------
def _batch_from_lean(frame: Any) -> EventBatch:
    """An :class:`EventBatch` from a lean frame (without ``detail``, only the columns a Scorer
    folds are filled)."""
    import pandas as pd

    items = None
    if "kind" in frame.columns:
        is_item = frame["kind"].to_numpy() == 1
        items, frame = frame[is_item], frame[~is_item]
    codes, uniques = pd.factorize(frame["user_id"], sort=False)
    names = Interners(users=Interner(uniques.tolist()))
    n = len(frame)
    cols: dict[str, Any] = {
        "user": codes.astype(np.int64),
        "event_type": frame["event_type"].to_numpy(dtype=np.uint8),
        "ts_ms": frame["ts_ms"].to_numpy(dtype=np.int64),
        "channel": np.zeros(n, dtype=np.uint8),
        "revenue": frame["revenue"].to_numpy(dtype=np.float64),
        "discount": np.full(n, np.nan),
        "has_coupon": np.zeros(n, dtype=np.bool_),
        "campaign": np.full(n, -1, dtype=np.int32),
        "event_id": frame["event_id"].to_numpy(dtype=np.uint64),
        "consent": frame["consent"].to_numpy(dtype=np.int8),
        "item_event": np.zeros(0, dtype=np.int64),
        "item_product": np.zeros(0, dtype=np.int32),
        "item_category": np.zeros(0, dtype=np.int32),
        "item_brand": np.zeros(0, dtype=np.int32),
        "item_price": np.zeros(0, dtype=np.float64),
        "item_discount": np.zeros(0, dtype=np.float64),
        "item_quantity": np.zeros(0, dtype=np.int32),
    }
    if items is not None:
        cols["channel"] = frame["channel"].to_numpy(dtype=np.uint8)
        cols["discount"] = frame["discount"].to_numpy(dtype=np.float64)
        cols["has_coupon"] = frame["has_coupon"].to_numpy(dtype=np.bool_)
        campaign, campaign_names = pd.factorize(frame["campaign"], sort=False)
        names.campaigns = Interner(campaign_names.tolist())
        cols["campaign"] = campaign.astype(np.int32)
        owner = pd.Index(frame["ekey"].to_numpy()).get_indexer(items["ekey"].to_numpy())
        order = np.argsort(owner, kind="stable")  # product lines grouped by event, as decoders emit
        items = items.iloc[order]
        cols["item_event"] = owner[order].astype(np.int64)
        for column, kind in (
            ("item_product", "products"),
            ("item_category", "categories"),
            ("item_brand", "brands"),
        ):
            item_codes, item_names = pd.factorize(items[column], sort=False)
            setattr(names, kind, Interner(item_names.tolist()))
            cols[column] = item_codes.astype(np.int32)
        cols["item_price"] = items["item_price"].to_numpy(dtype=np.float64)
        cols["item_discount"] = items["item_discount"].to_numpy(dtype=np.float64)
        cols["item_quantity"] = items["item_quantity"].to_numpy(dtype=np.int32)
    return EventBatch(**cols, interners=names)


def _scored_meta(config: ScoringConfig, with_tier: bool) -> Any:
    import pandas as pd

    cols: dict[str, Any] = {
        "user_id": pd.Series([], dtype=_STR),
        "raw_score": pd.Series([], dtype=np.float64),
        "score": pd.Series([], dtype=np.float64),
    }
    if with_tier:
        cols["tier"] = pd.Series([], dtype=_STR)
    for name in config.signal_names:
        cols[name] = pd.Series([], dtype=np.float64)
    return pd.DataFrame(cols)


def _score_partition(
    frame: Any, now_ms: Any, config: ScoringConfig, backend: str | None, dedupe: bool
) -> Any:
    """Score the whole users of one partition at ``now_ms`` with a fresh Scorer."""
    import pandas as pd

    from affinity_sdk.score.scorer import Scorer

    if dedupe and len(frame):
        # Every copy of a replayed event has the same user, so it is in this partition: dropping
        # repeated ids here is exact, with no window to size (the Scorer's own window is off).
        ids = frame["event_id"]
        frame = frame[~(ids.duplicated() & (ids != 0))]
    scorer = Scorer(config, backend=backend, dedupe_window=None)
    if len(frame):
        scorer.ingest(_batch_from_lean(frame))
    result = scorer.score(int(now_ms))
    cols: dict[str, Any] = {
        "user_id": pd.Series(result.user_ids, dtype=_STR),
        "raw_score": result.raw_score,
        "score": result.score,
    }
    decayed = result.decayed.reshape(len(result), len(config.signal_names))
    for i, name in enumerate(config.signal_names):
        cols[name] = decayed[:, i]
    return pd.DataFrame(cols)


def _with_tiers(
    frame: Any,
    cut_up: NDArray[np.float64],
    cut_down: NDArray[np.float64],
    backend: str | None,
) -> Any:
    import pandas as pd

    from affinity_sdk import kernels

    raw = frame["raw_score"].to_numpy(dtype=np.float64)
    codes = kernels.assign_tiers(raw, cut_up, cut_down, backend=backend)
    out = frame.copy()
    out.insert(3, "tier", pd.Series(TIER_LABELS[codes], index=out.index, dtype=_STR))
    return out


# --------------------------------------------------------------------------------------------
# exact global quantiles by distributed radix selection
# --------------------------------------------------------------------------------------------
def _order_keys(values: NDArray[np.float64]) -> NDArray[np.uint64]:
    """uint64 keys whose unsigned order is the float order (negative floats: all bits flipped)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    keys: NDArray[np.uint64] = np.where(bits & _SIGN, ~bits, bits | _SIGN)
    return keys


def _from_order_key(key: int) -> float:
    bits = np.uint64(key)
    raw = bits & ~_SIGN if bits & _SIGN else ~bits
    return float(np.array([raw], dtype=np.uint64).view(np.float64)[0])


def _digit_histograms(
    frame: Any, prefixes: NDArray[np.uint64], shift: int, width: int, column: str
) -> NDArray[np.int64]:
    """Per prefix, counts of the next ``width``-bit digit among keys whose higher bits match."""
    keys = _order_keys(frame[column].to_numpy(dtype=np.float64))
    out = np.zeros((prefixes.shape[0], 1 << width), dtype=np.int64)
    high = shift + width
    top = keys >> np.uint64(high) if high < 64 else np.zeros_like(keys)
    digits = ((keys >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.intp)
    for i, prefix in enumerate(prefixes):
        out[i] = np.bincount(digits[top == prefix], minlength=1 << width)
    return out


def _ranks(n: int, fractions: NDArray[np.float64]) -> list[int | None]:
    """The 1-based descending rank whose value is each fraction's cut-off (None: +inf), as in
    :func:`affinity_sdk.kernels.quantile_cutoffs`."""
    ranks: list[int | None] = []
    for q in fractions.tolist():
        if q >= 1.0 or n == 0:
            ranks.append(None)
        else:
            ranks.append(min(max(1, math.ceil(n * (1.0 - q) - 1e-9)), n))
    return ranks


def exact_quantile_cutoffs(
    frame: Any, fractions: Sequence[float] | NDArray[np.float64], *, column: str = "raw_score", **compute: Any
) -> NDArray[np.float64]:
    r"""Exact :func:`~affinity_sdk.kernels.quantile_cutoffs` of a Dask DataFrame column.

    A radix selection over the order-preserving 64-bit keys of the floats: each round every
    partition sends one small histogram (2048 counts per fraction) of the next 11 bits among the
    values that still match the prefix chosen so far; six rounds pin down every bit, so the
    result is the exact order statistic :math:`v_{(k)}`, :math:`k = \max(1, \lceil n(1-q)\rceil)`,
    never an approximation. Persist ``frame`` first: each round reads it again.

    ``compute`` is passed to :func:`dask.compute` (e.g. ``scheduler="sync"``).

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd
    >>> values = pd.DataFrame({"raw_score": np.arange(10.0)[::-1] - 3.0})
    >>> frame = dd.from_pandas(values, npartitions=3)
    >>> exact_quantile_cutoffs(frame, [0.9, 0.6, 1.0], scheduler="sync").tolist()
    [6.0, 3.0, inf]
    """
    _require_dask()
    cuts, _ = _radix_select(frame, np.asarray(fractions, dtype=np.float64), column, compute)
    return cuts


def _radix_select(
    frame: Any, fractions: NDArray[np.float64], column: str, compute: dict[str, Any]
) -> tuple[NDArray[np.float64], int]:
    """The cut-offs and the number of values (counted by the first round's histograms)."""
    dask = _dask()
    delayed = dask.delayed
    parts = frame.to_delayed()
    out = np.full(fractions.shape[0], np.inf)
    n = -1
    prefix: dict[int, int] = {}
    remaining: dict[int, int] = {}
    shift = 64
    while shift > 0:
        width = min(_RADIX_BITS, shift)
        shift -= width
        # Fractions that share a prefix share a histogram row; the first round has one prefix, 0.
        unique = sorted(set(prefix.values())) or [0]
        prefixes = np.array(unique, dtype=np.uint64)
        hists = dask.compute(
            *[delayed(_digit_histograms)(p, prefixes, shift, width, column) for p in parts], **compute
        )
        total = np.sum(hists, axis=0) if hists else np.zeros((1, 1 << width), dtype=np.int64)
        if n < 0:
            n = int(total.sum())
            for i, rank in enumerate(_ranks(n, fractions)):
                if rank is not None:
                    prefix[i], remaining[i] = 0, rank
            if not prefix:
                break
        for i in prefix:
            row = total[unique.index(prefix[i])][::-1]  # largest digit first
            cum = np.cumsum(row)
            j = int(np.searchsorted(cum, remaining[i]))  # first digit where the count reaches k
            remaining[i] -= int(cum[j - 1]) if j else 0
            prefix[i] = (prefix[i] << width) | ((1 << width) - 1 - j)
    for i, key in prefix.items():
        out[i] = _from_order_key(key)
    return out, n


def _cutoff_plan(config: ScoringConfig) -> tuple[NDArray[np.float64], bool]:
    """The quantile fractions the single-process Scorer evaluates (up, then down when banded)."""
    t = config.tiers
    band = t.hysteresis
    if band == 0.0:
        return np.array([t.medium, t.high]), False
    return np.array(
        [
            min(t.medium + band, 1.0),
            min(t.high + band, 1.0),
            max(t.medium - band, 0.0),
            max(t.high - band, 0.0),
        ]
    ), True


def _absolute_cutoffs(config: ScoringConfig) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    t = config.tiers
    half = config.score.half_point
    band = t.hysteresis

    def raw_at(score: float) -> float:
        return float("inf") if score >= 100.0 else half * score / (100.0 - score)

    up = np.array([raw_at(t.medium + band), raw_at(t.high + band)])
    down = np.array([raw_at(max(t.medium - band, 0.0)), raw_at(max(t.high - band, 0.0))])
    return up, down


# --------------------------------------------------------------------------------------------
# the public entry points
# --------------------------------------------------------------------------------------------
def _by_user(events: Any, npartitions: int | None, shuffle_method: str | None) -> Any:
    """``events`` hash-partitioned by ``user_id`` (whole users per partition)."""
    return events.shuffle(
        on="user_id", npartitions=npartitions or events.npartitions, shuffle_method=shuffle_method
    )


def _shuffle_and_score(
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
    dask = _dask()
    from affinity_sdk._units import to_epoch_ms

    shuffled = _by_user(events, npartitions, shuffle_method)
    now_value: Any = events["ts_ms"].max() if now is None else to_epoch_ms(now)
    scored = shuffled.map_partitions(score, now_value, *args, meta=meta)
    if now is None:
        scored, now_value = dask.persist(scored, now_value, **compute)
        return scored, int(dask.compute(now_value, **compute)[0])
    (scored,) = dask.persist(scored, **compute)
    return scored, int(now_value)


@dataclass(frozen=True, eq=False)
class DaskScores:
    """What :func:`score_dataset` returns: the lazy score table and how its tiers were cut.

    ``frame`` is a Dask DataFrame with one row per consenting user: ``user_id``, ``raw_score``,
    ``score`` (0-100), ``tier`` (``"high"`` / ``"medium"`` / ``"low"``) and the decayed value of
    each signal, in the column order of :meth:`ScoreResult.columns
    <affinity_sdk.score.results.ScoreResult.columns>`. It is built on persisted per-partition scores,
    so computing or writing it does not re-read the events. ``cut_up`` / ``cut_down`` are the raw
    score thresholds to enter / stay in Medium and High (equal without hysteresis).
    """

    frame: Any
    now_ms: int
    n_users: int
    cut_up: NDArray[np.float64]
    cut_down: NDArray[np.float64]
    config: ScoringConfig
    backend: str | None

    @property
    def metadata(self) -> dict[str, str]:
        """Provenance written with :meth:`to_parquet` (as in
        :class:`~affinity_sdk.score.results.ScoreResult`)."""
        return {
            "config_version": self.config.version,
            "config_fingerprint": self.config.fingerprint,
            "now_ms": str(self.now_ms),
            "backend": str(self.backend),
        }

    def compute(self, **kwargs: Any) -> Any:
        """The whole table as one pandas DataFrame (it must fit on the client)."""
        return self.frame.compute(**kwargs)

    def to_parquet(self, path: str | PathLike[str], **kwargs: Any) -> None:
        """Write the table as a partitioned Parquet dataset, one file per partition, with the
        provenance in each file's metadata."""
        self.frame.to_parquet(fspath(path), custom_metadata=self.metadata, write_index=False, **kwargs)


def score_dataset(
    source: Source,
    config: ScoringConfig | str | PathLike[str] | None = None,
    *,
    now: Any = None,
    format: Format = "auto",
    npartitions: int | None = None,
    backend: str | None = "auto",
    shuffle_method: str | None = None,
    blocksize: str | int = "64MiB",
    rows_per_partition: int = 2_000_000,
    errors: Literal["raise", "skip"] = "raise",
    reader: Reader = "auto",
    dedupe: bool = True,
    **compute: Any,
) -> DaskScores:
    """Score every user of a partitioned event dataset on Dask, exactly as one ``Scorer`` would.

    Events are hash-partitioned by ``user_id`` (Dask's shuffle), each partition is folded and
    scored at ``now`` by a fresh :class:`~affinity_sdk.score.scorer.Scorer` in a worker, the scored
    partitions are persisted, and tiers are cut at the exact global quantiles
    (:func:`exact_quantile_cutoffs`) or at the absolute thresholds of ``config``.

    Runs on whatever Dask scheduler is current: a ``distributed.Client`` (``LocalCluster`` or a
    cluster by address) once created is used automatically; ``**compute`` goes to
    :func:`dask.persist` / :func:`dask.compute` (e.g. ``scheduler="sync"``).

    Parameters
    ----------
    source
        Events: see :func:`read_events` (Parquet, NDJSON, a list of paths or a Dask DataFrame).
    config
        A :class:`~affinity_sdk.config.ScoringConfig`, a TOML / JSON path, or ``None`` (default).
    now
        Scoring time (``datetime``, ISO string or epoch ms); ``None`` means the latest event
        time in the dataset, as ``Scorer.score()`` does (computed in the same pass).
    npartitions
        Partitions after the shuffle (default: as many as the input). Each holds whole users, so
        memory per worker task is about ``n_users / npartitions`` profiles.
    backend
        Kernel backend used inside the workers (``"auto"``: the fastest available there).
    shuffle_method
        Passed to Dask's ``DataFrame.shuffle`` (``"p2p"``, ``"tasks"``, ``"disk"``; default:
        Dask's choice, ``p2p`` on a distributed cluster).
    blocksize, rows_per_partition, errors, reader
        Input partitioning and NDJSON reading, see :func:`read_events`.
    dedupe
        Fold each ``event_id`` once (events without an id always fold), as the ``Scorer``'s
        replay window does, but exactly: all copies of an event share its user and so its
        partition, whatever their number or distance apart.

    Returns
    -------
    DaskScores

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from affinity_sdk.sim.datasets import simulate_shop
    >>> sim = simulate_shop(30, weeks=2, horizon_weeks=1, seed=2)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = sim.write_ndjson(pathlib.Path(tmp) / "events.ndjson")
    ...     scores = score_dataset(pathlib.Path(tmp) / "events.ndjson", now="2026-02-01T00:00:00Z",
    ...                            scheduler="sync")
    ...     table = scores.compute(scheduler="sync")
    >>> scores.n_users == len(table), sorted(table.columns[:4])
    (True, ['raw_score', 'score', 'tier', 'user_id'])
    """
    dd = _require_dask()
    dask = _dask()
    from affinity_sdk._backends import resolve_backend

    if config is None:
        config = default_config()
    elif not isinstance(config, ScoringConfig):
        config = ScoringConfig.load(Path(config))
    if backend not in (None, "auto"):
        resolve_backend(backend)  # fail here, not in every worker, for a backend nobody has
    events = read_events(
        source,
        format=format,
        blocksize=blocksize,
        rows_per_partition=rows_per_partition,
        errors=errors,
        reader=reader,
    )
    scored, now_ms = _shuffle_and_score(
        events,
        now,
        npartitions,
        shuffle_method,
        compute,
        _score_partition,
        (config, backend, dedupe),
        _scored_meta(config, with_tier=False),
    )
    if config.tiers.method == "absolute":
        cut_up, cut_down = _absolute_cutoffs(config)
        n_users = int(dask.compute(scored.shape[0], **compute)[0])
    else:
        fractions, banded = _cutoff_plan(config)
        cuts, n_users = _radix_select(scored, fractions, "raw_score", compute)
        cut_up, cut_down = (cuts[:2], cuts[2:]) if banded else (cuts, cuts)
    frame = scored.map_partitions(
        _with_tiers, cut_up, cut_down, backend, meta=_scored_meta(config, with_tier=True)
    )
    assert isinstance(frame, dd.DataFrame)
    return DaskScores(
        frame=frame,
        now_ms=now_ms,
        n_users=n_users,
        cut_up=cut_up,
        cut_down=cut_down,
        config=config,
        backend=backend,
    )


def _propensity_partition(frame: Any, now_ms: Any, model: Any, backend: str | None) -> Any:
    import pandas as pd

    batch = _batch_from_lean(frame)
    if len(batch) == 0:
        return _propensity_meta(False)
    p, seen = model.score_batch(batch, int(now_ms), backend=backend)
    return pd.DataFrame(
        {"user_id": pd.Series(batch.interners.users.names, dtype=_STR), "probability": p, "seen": seen}
    )


def _propensity_meta(with_tier: bool) -> Any:
    import pandas as pd

    cols: dict[str, Any] = {
        "user_id": pd.Series([], dtype=_STR),
        "probability": pd.Series([], dtype=np.float64),
        "seen": pd.Series([], dtype=np.bool_),
    }
    if with_tier:
        cols["tier"] = pd.Series([], dtype=_STR)
    return pd.DataFrame(cols)


def _propensity_tiers(frame: Any, cuts: NDArray[np.float64], backend: str | None) -> Any:
    import pandas as pd

    from affinity_sdk import kernels

    codes = kernels.assign_tiers(frame["probability"].to_numpy(dtype=np.float64), cuts, backend=backend)
    return frame.assign(tier=pd.Series(TIER_LABELS[codes], index=frame.index, dtype=_STR))


@dataclass(frozen=True, eq=False)
class DaskPropensity:
    """What :func:`score_propensity` returns: ``frame`` (Dask DataFrame: ``user_id``,
    ``probability``, ``seen``, ``tier``), the scoring time, the number of users and the
    probability cut-offs for Medium and High."""

    frame: Any
    now_ms: int
    n_users: int
    cuts: NDArray[np.float64]
    outcome: str

    def compute(self, **kwargs: Any) -> Any:
        """The whole table as one pandas DataFrame."""
        return self.frame.compute(**kwargs)


def score_propensity(
    source: Source,
    model: Any,
    *,
    now: Any = None,
    tiers: Any = None,
    format: Format = "auto",
    npartitions: int | None = None,
    backend: str | None = "auto",
    shuffle_method: str | None = None,
    blocksize: str | int = "64MiB",
    rows_per_partition: int = 2_000_000,
    errors: Literal["raise", "skip"] = "raise",
    reader: Reader = "auto",
    **compute: Any,
) -> DaskPropensity:
    """Score a fitted :class:`~affinity_sdk.models.propensity.PropensityModel` on every user of an event
    dataset on Dask, as ``model.score_batch`` and ``model.tiers`` do in one process.

    Events and their product lines are shuffled by user (``read_events(detail=True)``), each
    partition's users get their features and probabilities in a worker, and quantile tiers are
    cut at the exact global quantiles of the probability (:func:`exact_quantile_cutoffs`).
    Features are per user, so the result does not depend on the partitioning; a model whose
    ``spec.bgnbd`` is set is refused, because its BG/NBD features are fitted on the whole
    population at scoring time.

    Parameters
    ----------
    model
        A fitted :class:`~affinity_sdk.models.propensity.PropensityModel`.
    now
        Feature cut-off (default: the latest event time in the dataset).
    tiers
        A :class:`~affinity_sdk.models.propensity.TierSpec` (default ``TierSpec()``: quantile 0.9 / 0.6).
    source, format, npartitions, backend, shuffle_method, blocksize, rows_per_partition, errors, reader
        As in :func:`score_dataset`.

    Returns
    -------
    DaskPropensity

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from affinity_sdk.sim.datasets import simulate_shop
    >>> from affinity_sdk.models.propensity import PropensityModel, build_training_set
    >>> sim = simulate_shop(200, weeks=6, horizon_weeks=1, seed=2)
    >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
    >>> model = PropensityModel.fit(data)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = sim.write_parquet(pathlib.Path(tmp) / "events.parquet")
    ...     result = score_propensity(tmp, model, now=sim.end_ms, scheduler="sync")
    ...     table = result.compute(scheduler="sync")
    >>> sorted(table.columns), result.n_users == len(table)
    (['probability', 'seen', 'tier', 'user_id'], True)
    """
    dd = _require_dask()
    from affinity_sdk.models.propensity import TierSpec

    if getattr(model.spec, "bgnbd", False):
        raise ValueError(
            "score_propensity cannot split a model with BG/NBD features (spec.bgnbd): they are "
            "fitted on the whole population when scoring; use a model without them"
        )
    spec = tiers if tiers is not None else TierSpec()
    events = read_events(
        source,
        format=format,
        blocksize=blocksize,
        rows_per_partition=rows_per_partition,
        errors=errors,
        reader=reader,
        detail=True,
    )
    scored, now_ms = _shuffle_and_score(
        events,
        now,
        npartitions,
        shuffle_method,
        compute,
        _propensity_partition,
        (model, backend),
        _propensity_meta(False),
    )
    fractions = np.array([spec.medium, spec.high], dtype=np.float64)
    if spec.method == "quantile":
        cuts, n_users = _radix_select(scored, fractions, "probability", compute)
    else:
        cuts = fractions
        n_users = int(_dask().compute(scored.shape[0], **compute)[0])
    frame = scored.map_partitions(_propensity_tiers, cuts, backend, meta=_propensity_meta(True))
    assert isinstance(frame, dd.DataFrame)
    return DaskPropensity(frame=frame, now_ms=now_ms, n_users=n_users, cuts=cuts, outcome=model.outcome)


# --------------------------------------------------------------------------------------------
# affinity top-k: a catalogue pass, a fold per partition of users, a totals reduction, top-k
# --------------------------------------------------------------------------------------------
#: Bits of an item row's position within its input partition in the lake-order key
#: ``partition << 40 | row`` (2**23 partitions of up to 2**40 product lines).
_POSITION_BITS: Final = 40


def _catalogue_part(frame: Any, part: int) -> dict[str, Any]:
    """What the catalogue pass needs from one *input* partition (before any shuffle): the first
    product line (in lake order, key ``pos``) of every category and brand name (their interning
    order in a single process), the first line with a price of every product (its category and
    the price ``fit_price_bands`` uses), and the latest event time."""
    import pandas as pd

    is_item = frame["kind"].to_numpy() == 1
    events_ts = frame["ts_ms"].to_numpy()[~is_item]
    items = frame[is_item]
    lines = pd.DataFrame(
        {
            "pos": (np.int64(part) << np.int64(_POSITION_BITS)) + np.arange(len(items), dtype=np.int64),
            "product": items["item_product"].array,
            "category": items["item_category"].array,
            "brand": items["item_brand"].array,
            "price": items["item_price"].to_numpy(dtype=np.float64),
        }
    )
    # the rules of affinity._price_cuts: a product with a category and a finite price
    priced = lines["product"].notna() & lines["category"].notna() & np.isfinite(lines["price"])
    return {
        "categories": lines.loc[lines["category"].notna(), ["category", "pos"]].drop_duplicates("category"),
        "brands": lines.loc[lines["brand"].notna(), ["brand", "pos"]].drop_duplicates("brand"),
        "products": lines.loc[priced, ["product", "pos", "category", "price"]].drop_duplicates("product"),
        "max_ts": int(events_ts.max()) if events_ts.shape[0] else None,
    }


def _merge_catalogues(*parts: dict[str, Any]) -> dict[str, Any]:
    """Keep the first occurrence (smallest lake position) of every name across parts."""
    import pandas as pd

    out: dict[str, Any] = {}
    for key, name in (("categories", "category"), ("brands", "brand"), ("products", "product")):
        frame = pd.concat([p[key] for p in parts], ignore_index=True)
        out[key] = frame.sort_values("pos", kind="stable").drop_duplicates(name)
    stamps = [p["max_ts"] for p in parts if p["max_ts"] is not None]
    out["max_ts"] = max(stamps) if stamps else None
    return out


def _affinity_meta() -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "user_id": pd.Series([], dtype=_STR),
            "code": pd.Series([], dtype=np.int64),
            "decayed": pd.Series([], dtype=np.float64),
        }
    )


def _affinity_partition(
    frame: Any, now_ms: Any, config: Any, backend: str | None, dimension: str, shared: Any
) -> Any:
    """Fold the whole users of one partition into an ``AffinityModel`` with the global value
    codes and price cut points, and return their decayed engagement per (user, value code) at
    ``now_ms``, rows grouped by user with codes ascending (the model's CSR order)."""
    import dataclasses

    import pandas as pd

    from affinity_sdk.models.affinity import AffinityModel

    categories, brands, cuts = shared
    if len(frame) == 0:
        return _affinity_meta()
    batch = _batch_from_lean(frame)
    local = batch.interners

    def to_global(codes: NDArray[np.int32], interner: Interner, names: Sequence[str]) -> NDArray[np.int32]:
        table = np.append(pd.Index(names, dtype=object).get_indexer(list(interner.names)), -1)
        result: NDArray[np.int32] = table[codes].astype(np.int32)  # local -1 (none) stays -1
        return result

    batch = dataclasses.replace(
        batch,
        item_category=to_global(batch.item_category, local.categories, categories),
        item_brand=to_global(batch.item_brand, local.brands, brands),
        interners=Interners(
            users=local.users,
            products=local.products,
            categories=Interner(categories),
            brands=Interner(brands),
            campaigns=local.campaigns,
        ),
    )
    model = AffinityModel(config, backend=backend)
    model.price_cuts_ = np.array(cuts, dtype=np.float64)  # fitted on the whole catalogue
    model.ingest(batch)
    s = model.scores(dimension, int(now_ms))  # type: ignore[arg-type]
    rows = np.repeat(np.arange(s.n_profiles), np.diff(s.indptr))
    users = np.asarray(local.users.names, dtype=object)
    return pd.DataFrame({"user_id": pd.Series(users[rows], dtype=_STR), "code": s.cols, "decayed": s.decayed})


def _affinity_totals(frame: Any, n_values: int) -> tuple[NDArray[np.float64], int]:
    """One partition's decayed engagement per value and its number of users (whole users)."""
    codes = frame["code"].to_numpy(dtype=np.int64)
    totals = np.bincount(codes, weights=frame["decayed"].to_numpy(dtype=np.float64), minlength=n_values)
    return totals.astype(np.float64), int(frame["user_id"].nunique())


def _topk_meta() -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "user_id": pd.Series([], dtype=_STR),
            "rank": pd.Series([], dtype=np.int64),
            "value": pd.Series([], dtype=_STR),
            "affinity": pd.Series([], dtype=np.float64),
        }
    )


def _affinity_topk(frame: Any, shared: Any, k: int, shrinkage: float, backend: str | None) -> Any:
    """Long-format top ``k`` of the partition's users with the global population totals."""
    import pandas as pd

    from affinity_sdk.models.affinity import top_affinities_from_totals

    totals, names = shared
    if len(frame) == 0:
        return _topk_meta()
    user_codes, users = pd.factorize(frame["user_id"], sort=False)
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_codes, minlength=len(users)), out=indptr[1:])
    if np.any(np.diff(user_codes) < 0):  # rows come grouped by user from _affinity_partition
        raise AssertionError("affinity entries are not grouped by user")
    codes, values = top_affinities_from_totals(
        indptr,
        frame["code"].to_numpy(dtype=np.int64),
        frame["decayed"].to_numpy(dtype=np.float64),
        totals,
        k,
        shrinkage=shrinkage,
        backend=backend,
    )
    who, rank = np.nonzero(codes >= 0)
    return pd.DataFrame(
        {
            "user_id": pd.Series(np.asarray(users, dtype=object)[who], dtype=_STR),
            "rank": (rank + 1).astype(np.int64),
            "value": pd.Series(np.asarray(names, dtype=object)[codes[who, rank]], dtype=_STR),
            "affinity": values[who, rank],
        }
    )


@dataclass(frozen=True, eq=False)
class DaskAffinities:
    """What :func:`score_affinities` returns.

    ``frame`` is a Dask DataFrame in the long format of
    :func:`~affinity_sdk.models.affinity.affinities_table`: ``user_id``, ``rank`` (1 = best),
    ``value`` and ``affinity``, rows grouped by user, built on persisted per-partition engagement
    (computing or writing it does not re-read the events). ``values`` are the dimension's value
    names (by code, in order of first appearance in the lake), ``population_share`` their
    population share :math:`P_v` at ``now_ms``; ``categories`` and ``price_cuts`` the catalogue's
    categories and their (low|mid, mid|premium) price cut points. ``n_users``: users with at least
    one value of the dimension.
    """

    frame: Any
    dimension: str
    k: int
    now_ms: int
    n_users: int
    values: tuple[str, ...]
    population_share: NDArray[np.float64]
    categories: tuple[str, ...]
    price_cuts: NDArray[np.float64]
    config: Any
    backend: str | None

    @property
    def metadata(self) -> dict[str, str]:
        """Provenance written with :meth:`to_parquet`."""
        import msgspec

        return {
            "affinity_config": msgspec.json.encode(self.config).decode(),
            "dimension": self.dimension,
            "k": str(self.k),
            "now_ms": str(self.now_ms),
            "backend": str(self.backend),
        }

    def compute(self, **kwargs: Any) -> Any:
        """The whole table as one pandas DataFrame (it must fit on the client)."""
        return self.frame.compute(**kwargs)

    def to_parquet(self, path: str | PathLike[str], **kwargs: Any) -> None:
        """Write the table as a partitioned Parquet dataset, provenance in each file's metadata."""
        self.frame.to_parquet(fspath(path), custom_metadata=self.metadata, write_index=False, **kwargs)


def score_affinities(
    source: Source,
    config: Any = None,
    *,
    dimension: Literal["category", "brand", "price_band"],
    k: int = 3,
    now: Any = None,
    format: Format = "auto",
    npartitions: int | None = None,
    backend: str | None = "auto",
    shuffle_method: str | None = None,
    blocksize: str | int = "64MiB",
    rows_per_partition: int = 2_000_000,
    errors: Literal["raise", "skip"] = "raise",
    reader: Reader = "auto",
    **compute: Any,
) -> DaskAffinities:
    """Every user's top ``k`` values of ``dimension`` on Dask, exactly as one
    :class:`~affinity_sdk.models.affinity.AffinityModel` fed the whole lake in one batch would give them
    (:func:`~affinity_sdk.models.affinity.affinities_table`).

    Affinities are lifts against the *population*, and price bands are cut at quantiles of the
    *whole catalogue*, so one partition alone cannot compute them. Four steps:

    1. **Catalogue pass** over the input partitions (a tree reduction of small tables): the
       first appearance in the lake of every category and brand (their global codes, in the
       order a single process interns them), every product's first listed price (the
       per-category price cut points, by the model's own
       :func:`~affinity_sdk.models.affinity.catalogue_price_cuts`) and the latest event time.
    2. **Fold**: the events of the configured affinity signals and their product lines are
       shuffled by user (in the same pass over the input as step 1, and persisted until the
       catalogue is known); each partition is folded by an ``AffinityModel`` (compiled kernels)
       given the global codes and cut points, which keeps each (user, value)'s decayed engagement
       :math:`d_{uv}` at ``now`` (persisted).
    3. **Totals**: per-value sums :math:`\\sum_u d_{uv}` are reduced over partitions.
    4. **Top-k** per partition with those totals
       (:func:`~affinity_sdk.models.affinity.top_affinities_from_totals`: same formula, same kernel,
       ties to the value seen first in the lake).

    The input is read once; the shuffled signal events are held in the workers' memory from
    step 1 to step 2, then only the catalogue, one float per value and the engagement table (one
    row per (user, value) pair) are kept.

    Parameters
    ----------
    source
        Events: see :func:`read_events`.
    config
        A :class:`~affinity_sdk.config.AffinityConfig`, a
        :class:`~affinity_sdk.config.ScoringConfig` (its ``[affinity]`` section), a TOML / JSON
        path, or ``None`` (default).
    dimension
        ``"category"``, ``"brand"`` or ``"price_band"``.
    k
        Values per user (users with fewer values get fewer rows; users without product events
        none).
    now
        Scoring time (``datetime``, ISO string or epoch ms); ``None``: the latest event time in
        the dataset, the model's default (found in the catalogue pass).
    format, npartitions, backend, shuffle_method, blocksize, rows_per_partition, errors, reader
        As in :func:`score_dataset`.

    Returns
    -------
    DaskAffinities

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from affinity_sdk.models.affinity import AffinityModel, affinities_table
    >>> from affinity_sdk.sim.datasets import simulate_shop
    >>> sim = simulate_shop(40, weeks=2, horizon_weeks=1, seed=5)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = sim.write_parquet(pathlib.Path(tmp) / "events.parquet")
    ...     top = score_affinities(tmp, dimension="brand", k=2, scheduler="sync")
    ...     frame = top.compute(scheduler="sync")
    >>> list(frame.columns)
    ['user_id', 'rank', 'value', 'affinity']
    >>> single = affinities_table(AffinityModel().ingest(sim.batch), "brand", 2)
    >>> got = frame.set_index(["user_id", "rank"]).loc[list(zip(single["user_id"], single["rank"]))]
    >>> got["value"].tolist() == single["value"], bool(np.allclose(got["affinity"], single["affinity"]))
    (True, True)
    """
    dd = _require_dask()
    dask = _dask()
    from affinity_sdk._backends import resolve_backend
    from affinity_sdk._units import to_epoch_ms
    from affinity_sdk.capture.events import EVENT_TYPE_CODES
    from affinity_sdk.config import AffinityConfig
    from affinity_sdk.models.affinity import DIMENSIONS, PRICE_BANDS, catalogue_price_cuts

    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; choose one of {', '.join(DIMENSIONS)}")
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    if config is None:
        config = AffinityConfig()
    elif isinstance(config, ScoringConfig):
        config = config.affinity
    elif not isinstance(config, AffinityConfig):
        config = AffinityConfig.load(config)
    if backend not in (None, "auto"):
        resolve_backend(backend)
    delayed = dask.delayed
    events = read_events(
        source,
        format=format,
        blocksize=blocksize,
        rows_per_partition=rows_per_partition,
        errors=errors,
        reader=reader,
        detail=True,
    )

    # 1. catalogue pass over the input partitions, in lake order, in the same graph as the
    # shuffle by user of the signal events (step 2), so each input partition is read once
    signal_types = [EVENT_TYPE_CODES[name] for name in config.signal_names]
    shuffled = _by_user(events[events["event_type"].isin(signal_types)], npartitions, shuffle_method)
    parts = [delayed(_catalogue_part)(p, i) for i, p in enumerate(events.to_delayed())]
    while len(parts) > 1:
        parts = [delayed(_merge_catalogues)(*parts[i : i + 8]) for i in range(0, len(parts), 8)]
    # (its partitions as Delayed: persisting an Expression with Delayed objects warns)
    *held, root = dask.persist(*shuffled.to_delayed(), parts[0], **compute)
    shuffled = dd.from_delayed(held, meta=_lean_meta(True), verify_meta=False)
    catalogue = dask.compute(root, **compute)[0]
    categories = tuple(catalogue["categories"]["category"].tolist())
    brands = tuple(catalogue["brands"]["brand"].tolist())
    products = catalogue["products"]
    import pandas as pd

    cuts = catalogue_price_cuts(
        pd.Index(categories, dtype=object).get_indexer(products["category"].tolist()),
        products["price"].to_numpy(dtype=np.float64),
        len(categories),
        config.price_quantiles,
    )
    if now is not None:
        now_ms = to_epoch_ms(now)
    else:
        now_ms = catalogue["max_ts"] if catalogue["max_ts"] is not None else 0
    names = {"category": categories, "brand": brands, "price_band": PRICE_BANDS}[dimension]

    # 2. fold the persisted, shuffled signal events with the global codes and cut points
    shared = delayed((list(categories), list(brands), cuts), pure=True)
    engagement = shuffled.map_partitions(
        _affinity_partition, now_ms, config, backend, dimension, shared, meta=_affinity_meta()
    )
    (engagement,) = dask.persist(engagement, **compute)
    del shuffled, held  # the engagement table is all that steps 3 and 4 read

    # 3. population totals per value over all partitions
    n_values = len(names)
    sums = dask.compute(*[delayed(_affinity_totals)(p, n_values) for p in engagement.to_delayed()], **compute)
    totals = np.zeros(n_values)
    n_users = 0
    for part_totals, part_users in sums:
        totals += part_totals
        n_users += part_users
    grand = totals.sum()
    share = totals / grand if grand > 0 else np.zeros_like(totals)

    # 4. each user's top k with the global totals
    frame = engagement.map_partitions(
        _affinity_topk,
        delayed((totals, list(names)), pure=True),
        int(k),
        float(config.shrinkage),
        backend,
        meta=_topk_meta(),
    )
    assert isinstance(frame, dd.DataFrame)
    return DaskAffinities(
        frame=frame,
        dimension=dimension,
        k=int(k),
        now_ms=int(now_ms),
        n_users=n_users,
        values=tuple(names),
        population_share=share,
        categories=categories,
        price_cuts=cuts,
        config=config,
        backend=backend,
    )
