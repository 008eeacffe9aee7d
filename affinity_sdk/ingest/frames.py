"""DataFrames in: pandas, polars and Arrow tables as event batches.

A frame holds one row per event in the layout of
:meth:`EventBatch.from_arrow <affinity_sdk.ingest.batch.EventBatch.from_arrow>` (``type``,
``user_id``, ``timestamp``, optional ``channel``, ``revenue``, ``products``, ...); ``columns``
maps those names to the frame's own where they differ. pandas frames are converted with
:meth:`pyarrow.Table.from_pandas` and polars frames with ``DataFrame.to_arrow()`` (zero-copy
where their buffers allow), only the columns the layout reads, then decoded by the Arrow path,
so a frame costs what an Arrow table costs plus that conversion. A frame is recognised by the
module of its type: pandas and polars are never imported here.

An integer ``user_id`` column (ids from a database) is read as the ids' decimal text, as in the
order log; any other non-string id column is a :class:`~affinity_sdk.errors.SchemaError`.

Examples
--------
>>> import polars as pl
>>> df = pl.DataFrame({"type": ["app_opened"], "user_id": [42], "timestamp": [1_700_000_000_000]})
>>> frame_kind(df), frame_batch(df).interners.users.names
('polars', ('42',))
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from affinity_sdk.errors import ConfigError, SchemaError
from affinity_sdk.ingest.arrow import _ARROW_COLUMNS, _pyarrow
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import Interners

__all__ = ["FrameKind", "frame_batch", "frame_kind", "frame_table"]

FrameKind = Literal["pandas", "polars", "arrow"]
_PATH: Final = re.compile(r"`\$(?:\[\d+\])?\.([A-Za-z_]+)")


def frame_kind(data: object) -> FrameKind | None:
    """``"pandas"``, ``"polars"`` or ``"arrow"`` for a DataFrame / Table / RecordBatch of that
    library, else ``None``; decided by the module of ``data``'s type, importing nothing.

    Examples
    --------
    >>> import pyarrow as pa
    >>> frame_kind(pa.table({"a": [1]})), frame_kind([1, 2])
    ('arrow', None)
    """
    cls = type(data)
    module = cls.__module__.partition(".")[0]
    if module == "pandas" and cls.__name__ == "DataFrame":
        return "pandas"
    if module == "polars" and cls.__name__ == "DataFrame":
        return "polars"
    if module == "pyarrow" and cls.__name__ in ("Table", "RecordBatch"):
        return "arrow"
    return None


def _check_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    mapping = dict(columns or {})
    for key, source in mapping.items():
        if key not in _ARROW_COLUMNS:
            raise ConfigError(f"unknown event column {key!r} in columns=: use {', '.join(_ARROW_COLUMNS)}")
        if not isinstance(source, str):
            raise ConfigError(f"columns={{{key!r}: ...}} must name a frame column (got {source!r})")
    sources = list(mapping.values())
    twice = next((s for s in sources if sources.count(s) > 1), None)
    if twice is not None:
        raise ConfigError(f"frame column {twice!r} is mapped twice in columns=")
    return mapping


def frame_table(frame: Any, columns: Mapping[str, str] | None = None) -> Any:
    """``frame`` as a pyarrow Table holding only the event columns, under the layout's names.

    Raises :class:`~affinity_sdk.errors.ConfigError` for a bad mapping and
    :class:`~affinity_sdk.errors.SchemaError` naming a required column that is missing or a
    column pyarrow cannot convert (e.g. mixed types in a pandas ``object`` column).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"who": ["a"], "type": ["app_opened"], "timestamp": [0], "note": ["x"]})
    >>> frame_table(df, {"user_id": "who"}).column_names
    ['user_id', 'type', 'timestamp']
    """
    kind = frame_kind(frame)
    if kind is None:
        raise SchemaError(
            f"Expected a pandas or polars DataFrame or a pyarrow Table, got `{type(frame).__name__}`", None
        )
    mapping = _check_columns(columns)
    renamed = {source: key for key, source in mapping.items()}
    # The frame column each layout name is read from: a mapped one, else the column of that name
    # (unless that column is itself mapped to another name).
    present = [str(name) for name in frame.columns] if kind != "arrow" else list(frame.schema.names)
    pick: dict[str, str] = {}
    for name in present:
        key = renamed.get(name, name if name not in mapping else None)
        if key in _ARROW_COLUMNS and (key not in pick or name in renamed):
            pick[key] = name
    for key in ("type", "user_id", "timestamp"):
        if key not in pick:
            _missing(key, mapping, present)
    for key, source in mapping.items():
        if source not in present:
            _missing(key, mapping, present)
    sources = list(pick.values())
    table = _to_arrow(frame, kind, sources)
    table = table.rename_columns([renamed.get(name, name) for name in table.column_names])
    return _ids_as_text(table, renamed)


def _missing(key: str, mapping: Mapping[str, str], present: list[str]) -> None:
    shown = ", ".join(repr(p) for p in present[:20]) + (", ..." if len(present) > 20 else "")
    if key in mapping:
        raise SchemaError(
            f"the frame has no column {mapping[key]!r} (mapped to `{key}`): its columns are {shown}", None
        )
    raise SchemaError(
        f"the frame has no column `{key}` (required): its columns are {shown}; map another with "
        f"columns={{{key!r}: 'its_name'}}",
        None,
    )


def _to_arrow(frame: Any, kind: FrameKind, sources: list[str]) -> Any:
    pa = _pyarrow()
    if kind == "arrow":
        table = frame.select(sources)
        return pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
    if kind == "polars":
        return frame.select(sources).to_arrow()
    try:
        return pa.Table.from_pandas(frame, columns=sources, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        for name in sources:  # find the column that failed, to name it
            try:
                pa.Array.from_pandas(frame[name])
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(
                    f"Expected one type per column, got {exc} - in frame column {name!r}", None
                ) from None
        raise


def _ids_as_text(table: Any, renamed: Mapping[str, str]) -> Any:
    """An integer ``user_id`` column as its decimal text (other id types fail in the Arrow path)."""
    pa = _pyarrow()
    if "user_id" in table.column_names and pa.types.is_integer(table.schema.field("user_id").type):
        at = table.column_names.index("user_id")
        table = table.set_column(at, "user_id", table.column(at).cast(pa.string()))
    return table


def frame_batch(
    frame: Any, interners: Interners | None = None, columns: Mapping[str, str] | None = None
) -> EventBatch:
    """:meth:`EventBatch.from_frame <affinity_sdk.ingest.batch.EventBatch.from_frame>`: errors
    about a mapped column also name the frame's column.

    Examples
    --------
    >>> import pyarrow as pa
    >>> t = pa.table({"type": ["app_opened"], "who": ["u"], "timestamp": [1.5]})
    >>> frame_batch(t, columns={"user_id": "who"})
    Traceback (most recent call last):
    ...
    affinity_sdk.errors.SchemaError: Expected `int | datetime`, got `double` - at `$.timestamp`
    """
    mapping = _check_columns(columns)
    table = frame_table(frame, mapping)
    try:
        return EventBatch.from_arrow(table, interners)
    except SchemaError as exc:
        found = _PATH.search(str(exc))
        if found is None or found.group(1) not in mapping:
            raise
        source = mapping[found.group(1)]
        raise SchemaError(f"{exc} (frame column {source!r})", exc.position) from None
