"""Reading an event lake into Dask: any source (Parquet, NDJSON, a Dask DataFrame) becomes a lazy
frame in the *lean* layout, one row per event (with ``detail``, also one per product line), that
travels through the shuffle by user; :func:`batch_from_lean` turns a partition of it back into an
:class:`~affinity_sdk.ingest.batch.EventBatch` inside a worker.

Decoding goes through :meth:`EventBatch.from_arrow <affinity_sdk.ingest.batch.EventBatch.from_arrow>`
and :meth:`EventBatch.from_ndjson <affinity_sdk.ingest.batch.EventBatch.from_ndjson>`, so every rule
matches single-process ingestion.

Examples
--------
>>> import tempfile, pathlib
>>> from affinity_sdk.sim.shop import simulate_shop
>>> sim = simulate_shop(10, weeks=1, horizon_weeks=1, seed=1)
>>> with tempfile.TemporaryDirectory() as tmp:
...     _ = sim.write_parquet(pathlib.Path(tmp) / "events.parquet")
...     lean = read_events(tmp).compute(scheduler="sync")
>>> batch = batch_from_lean(lean)
>>> users = sorted(batch.interners.users.names)
>>> len(batch) == len(sim.batch), users == sorted(sim.batch.interners.users.names)
(True, True)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from os import fspath
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import Interner, Interners
from affinity_sdk.ingest.parquet import _CORE_COLUMNS
from affinity_sdk.scale._common import STR, Format, Reader, Source, dask_module, empty_frame, require_dask

__all__ = [
    "EVENT_COLUMNS",
    "FLAT_COLUMNS",
    "batch_from_lean",
    "drop_opted_out",
    "infer_format",
    "lean_meta",
    "parquet_parts",
    "read_events",
]

#: Columns of the lean event frame that travels through the shuffle (what a Scorer folds).
EVENT_COLUMNS: Final = ("user_id", "event_type", "ts_ms", "revenue", "consent", "event_id")
_NDJSON_SUFFIXES: Final = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz")
#: Columns of the flat layout that a Scorer needs: what every store reads from Parquet.
FLAT_COLUMNS: Final = _CORE_COLUMNS
#: Every column of the :meth:`EventBatch.from_arrow` layout (for models that use product lines).
_DETAIL_COLUMNS: Final = (
    *FLAT_COLUMNS,
    "channel",
    "discount",
    "coupon",
    "has_coupon",
    "campaign_id",
)


# --------------------------------------------------------------------------------------------
# reading: any source -> lean event frame (one row per event)
# --------------------------------------------------------------------------------------------
def lean_meta(detail: bool = False) -> Any:
    """An empty lean frame (the ``meta`` of the Dask frames built from it)."""
    if detail:
        return _lean_from_batch(EventBatch.empty(), detail, 0)
    return empty_frame(
        {
            "user_id": STR,
            "event_type": np.uint8,
            "ts_ms": np.int64,
            "revenue": np.float64,
            "consent": np.int8,
            "event_id": np.uint64,
        }
    )


def _lean_from_arrow(table: Any, detail: bool = False, part: int = 0) -> Any:
    """The lean frame from a flat event table, decoded by
    :meth:`EventBatch.from_arrow <affinity_sdk.ingest.batch.EventBatch.from_arrow>` (the layout and
    rules a single-process ``Scorer`` sees, e.g. revenue = price × quantity when missing)."""
    wanted = [c for c in (_DETAIL_COLUMNS if detail else FLAT_COLUMNS) if c in table.column_names]
    return _lean_from_batch(EventBatch.from_arrow(table.select(wanted)), detail, part)


def _lean_from_pandas(frame: Any, detail: bool = False, partition_info: Any = None) -> Any:
    import pandas as pd
    import pyarrow as pa

    wanted = [c for c in (_DETAIL_COLUMNS if detail else FLAT_COLUMNS) if c in frame.columns]
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
        columns = [c for c in (_DETAIL_COLUMNS if detail else FLAT_COLUMNS) if c in file.schema_arrow.names]
        # Event keys stay unique across the row groups of one task: 2**24 row groups a task.
        frames = [
            _lean_from_arrow(file.read_row_group(g, columns=columns), detail, (part << 24) + i)
            for i, g in enumerate(row_groups)
        ]
    if not frames:
        return lean_meta(detail)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def parquet_parts(paths: list[str], rows_per_partition: int) -> list[tuple[str, list[int], Any]]:
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
    return pd.Series(pd.array(values, dtype=STR))


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


def infer_format(paths: list[str]) -> Literal["parquet", "ndjson"]:
    """``"ndjson"`` when the first path is an NDJSON file (by its suffix) or a folder of only
    NDJSON files, else ``"parquet"``.

    Examples
    --------
    >>> infer_format(["events/2026-01.ndjson.gz"]), infer_format(["lake/part-0.parquet"])
    ('ndjson', 'parquet')
    """
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
        where absent), ``consent`` (int8: 1 granted, 0 revoked, -1 not a consent event, >= 2 a
        decision on one medium: :func:`~affinity_sdk.profile.channel_consent.encode_consent`) and
        ``event_id`` (uint64 FNV-1a hash, 0 = none).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from affinity_sdk.sim.shop import simulate_shop
    >>> sim = simulate_shop(10, weeks=1, horizon_weeks=1, seed=1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = sim.write_ndjson(pathlib.Path(tmp) / "events.ndjson")
    ...     events = read_events(pathlib.Path(tmp) / "events.ndjson").compute(scheduler="sync")
    >>> len(events) == len(sim.batch), list(events.columns)
    (True, ['user_id', 'event_type', 'ts_ms', 'revenue', 'consent', 'event_id'])
    """
    dd = require_dask()
    delayed = dask_module().delayed

    if isinstance(source, dd.DataFrame):
        return source.map_partitions(_lean_from_pandas, detail, meta=lean_meta(detail))
    many: Sequence[Any] = source if isinstance(source, list | tuple) else [source]
    paths = [fspath(p) for p in many]
    if not paths:
        raise ValueError("no input paths given")
    kind = infer_format(paths) if format == "auto" else format
    if kind == "parquet":
        parts = [
            delayed(_read_parquet_part)(*task, detail, i)
            for i, task in enumerate(parquet_parts(paths, rows_per_partition))
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
    return dd.from_delayed(parts, meta=lean_meta(detail), verify_meta=False)


# --------------------------------------------------------------------------------------------
# in the workers: lean frame -> EventBatch
# --------------------------------------------------------------------------------------------
def drop_opted_out(frame: Any) -> Any:
    """``frame`` (a lean frame holding *whole users*, e.g. a partition after the shuffle by user)
    without the rows of its opted-out users: those whose latest global consent decision is a
    revocation (:func:`~affinity_sdk.profile.flags.latest_consent`: on equal times a revocation
    wins), as the profile store decides. A decision on one medium (``consent`` >= 2) hides no one.
    Only the consent rows are read; a frame without any is returned as is.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"user_id": list("aaabbc"), "ts_ms": [1, 2, 5, 2, 2, 4],
    ...                       "consent": [-1, 0, 1, 1, 0, 2]})
    >>> drop_opted_out(frame)["user_id"].tolist()  # b granted and revoked at once: opted out
    ['a', 'a', 'a', 'c']
    """
    import pandas as pd

    from affinity_sdk.profile.flags import latest_consent

    consent = frame["consent"].to_numpy(dtype=np.int8)
    rows = (consent == 0) | (consent == 1)  # global decisions only
    if "kind" in frame.columns:  # product lines repeat their event's columns: count events only
        rows &= frame["kind"].to_numpy() == 0
    if not rows.any():
        return frame
    codes, names = pd.factorize(frame["user_id"][rows], sort=False)
    users, _, opted_out = latest_consent(
        codes.astype(np.int64), frame["ts_ms"].to_numpy(dtype=np.int64)[rows], consent[rows]
    )
    if not opted_out.any():
        return frame
    return frame[~frame["user_id"].isin(names[users[opted_out]])]


def batch_from_lean(frame: Any) -> EventBatch:
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
