"""Parquet lakes: a file, a folder (sub-folders included) or a list of files, read row group by
row group into :class:`~affinity_sdk.ingest.batch.EventBatch` es coded in one set of interners,
reading only the columns the store's views use and string columns as dictionaries.

:meth:`EventBatch.from_parquet <affinity_sdk.ingest.batch.EventBatch.from_parquet>` reads a folder
or a list through :func:`read_parquet`; the CLI folds :func:`iter_parquet`'s batches one at a time.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, Final, TypeVar

from affinity_sdk.errors import SchemaError
from affinity_sdk.ingest.arrow import _ARROW_COLUMNS, _parquet_read_plan, _pyarrow
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import Interners

__all__ = ["iter_parquet", "parquet_columns", "parquet_files", "read_parquet"]

#: The top-level columns every store reads (``products``: revenue = price × quantity when absent).
_CORE_COLUMNS: Final = (
    "type",
    "user_id",
    "timestamp",
    "event_id",
    "revenue",
    "granted",
    "medium",
    "products",
)
#: What each view of the profile store reads beyond :data:`_CORE_COLUMNS`.
_VIEW_COLUMNS: Final = {
    "signals": (),
    "affinity": ("discount", "coupon", "has_coupon"),
    "propensity": ("channel", "discount", "coupon", "has_coupon", "campaign_id"),
    "products": (),
    "engagement": ("channel",),
}


def parquet_files(source: Any) -> list[str]:
    """The Parquet files of ``source`` in reading order: a file; a folder's ``*.parquet`` files
    (sub-folders included, e.g. Hive partitions) sorted by path; or a list of either, in order.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b.parquet", "a.parquet", "notes.txt"):
    ...     _ = (root / name).write_bytes(b"")
    >>> [pathlib.Path(p).name for p in parquet_files(root)]
    ['a.parquet', 'b.parquet']
    """
    import os
    from pathlib import Path

    many = list(source) if isinstance(source, list | tuple) else [source]
    files: list[str] = []
    for item in many:
        path = Path(os.fspath(item))
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".parquet")
            if not found:
                raise SchemaError(f"no .parquet files in the folder {path}", None)
            files += [str(p) for p in found]
        else:
            files.append(str(path))
    if not files:
        raise SchemaError("no Parquet files given", None)
    return files


def parquet_columns(views: Any = None) -> tuple[str, ...]:
    """The top-level columns a store keeping ``views`` reads (``None``: every column).

    Examples
    --------
    >>> parquet_columns(("signals",))
    ('type', 'user_id', 'timestamp', 'event_id', 'revenue', 'granted', 'medium', 'products')
    >>> "channel" in parquet_columns(("signals", "engagement"))
    True
    """
    if views is None:
        return _ARROW_COLUMNS
    unknown = [v for v in views if v not in _VIEW_COLUMNS]
    if unknown:
        raise ValueError(f"unknown views {unknown}: choose among {list(_VIEW_COLUMNS)}")
    wanted = set(_CORE_COLUMNS).union(*(_VIEW_COLUMNS[v] for v in views))
    return tuple(c for c in _ARROW_COLUMNS if c in wanted)


def iter_parquet(
    source: Any,
    interners: Interners | None = None,
    *,
    views: Any = None,
    read_ahead: bool = True,
    **read_options: Any,
) -> Iterator[EventBatch]:
    """Batches of a Parquet file, folder or list of files, one per row group, all coded in one
    set of ``interners``: what :meth:`EventBatch.from_parquet
    <affinity_sdk.ingest.batch.EventBatch.from_parquet>` concatenates, and what a store can fold
    one at a time, so memory holds a row group's Arrow table or two, not the lake's.

    Only the columns the ``views`` read are read (:func:`parquet_columns`), and string columns
    are read as dictionaries: each row group's distinct values are interned once, not each row,
    and a dictionary shared by row groups (pyarrow writes a dictionary column's in every one)
    only for the values no earlier row group used. With ``read_ahead`` a worker thread reads
    the next row group while the caller works on this one (pyarrow decodes without holding
    the GIL). A :class:`~affinity_sdk.errors.SchemaError` names the file and row group and its
    position counts rows from the start of the lake. ``read_options`` go to
    :class:`pyarrow.parquet.ParquetFile` (``columns``, ``read_dictionary``: instead of the plan).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(2):
    ...     EventBatch.from_ndjson(
    ...         b'{"type":"app_opened","user_id":"u%d","timestamp":5}' % i).to_parquet(root / f"{i}.parquet")
    >>> [b.user.tolist() for b in iter_parquet(root)]  # one set of interners: u1 is code 1
    [[0], [1]]
    """
    names = interners if interners is not None else Interners()
    groups = _row_groups(parquet_files(source), parquet_columns(views), dict(read_options))
    offset = 0
    for path, group, table in _read_ahead(groups) if read_ahead else groups:
        try:
            yield EventBatch.from_arrow(table, names)
        except SchemaError as exc:
            where = None if exc.position is None else offset + exc.position
            raise SchemaError(f"{path} (row group {group}): {exc}", where) from None
        offset += table.num_rows


def _row_groups(
    files: list[str], wanted: tuple[str, ...], options: dict[str, Any]
) -> Iterator[tuple[str, int, Any]]:
    """``(path, row group, Arrow table)`` of each row group of ``files`` in order, read as
    :func:`iter_parquet` says."""
    pq = _pyarrow("parquet")
    columns = options.pop("columns", None)
    dictionary = options.pop("read_dictionary", None)
    for path in files:
        with pq.ParquetFile(path, **options) as file:
            plan = _parquet_read_plan(file.schema)
        file_columns = columns if columns is not None else [c for c in plan["columns"] if c in wanted]
        read_dictionary = dictionary if dictionary is not None else plan["read_dictionary"]
        with pq.ParquetFile(path, read_dictionary=read_dictionary, **options) as file:
            for group in range(file.num_row_groups):
                yield path, group, file.read_row_group(group, columns=file_columns)


_T = TypeVar("_T")


def _read_ahead(items: Iterator[_T]) -> Iterator[_T]:
    """``items`` in order, each one made in a worker thread while the caller works on the one
    before; the worker's errors are raised where the item would have been."""
    from concurrent.futures import ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="affinity-read-ahead") as pool:
        pending = pool.submit(next, items)
        try:
            while True:
                try:
                    item = pending.result()
                except StopIteration:
                    return
                pending = pool.submit(next, items)
                yield item
        finally:
            wait([pending])  # the worker is never left inside `items` (e.g. a file being closed)
            if isinstance(items, Generator):
                items.close()


def read_parquet(
    source: Any, interners: Interners | None = None, *, views: Any = None, **read_options: Any
) -> EventBatch:
    """One batch of a Parquet file, folder or list of files (:func:`iter_parquet`'s batches
    concatenated: the batch :meth:`EventBatch.from_arrow
    <affinity_sdk.ingest.batch.EventBatch.from_arrow>` makes of the files' rows in order).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(2):
    ...     EventBatch.from_ndjson(
    ...         b'{"type":"app_opened","user_id":"u%d","timestamp":5}' % i).to_parquet(root / f"{i}.parquet")
    >>> read_parquet(root).interners.users.names
    ('u0', 'u1')
    """
    from affinity_sdk.ingest.batch import concat_batches

    names = interners if interners is not None else Interners()
    return concat_batches(list(iter_parquet(source, names, views=views, **read_options)), names)
