"""Columnar score results and their exports (CSV, JSON lines, Arrow, Parquet, pandas, polars).

Examples
--------
>>> import numpy as np
>>> result = ScoreResult(
...     user_ids=["a", "b"], raw_score=np.array([3.0, 0.0]), score=np.array([23.1, 0.0]),
...     tier_code=np.array([2, 0], dtype=np.int8), signal_names=("order_completed",),
...     decayed=np.array([[0.3], [0.0]]), now_ms=0, config_version="v1", config_fingerprint="f" * 16,
... )
>>> result.tier.tolist(), len(result)
(['high', 'low'], 2)
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import native
from affinity_sdk._persist import write_atomically
from affinity_sdk.errors import AffinityError

__all__ = ["ARROW_EXTRA_MESSAGE", "TIER_LABELS", "ArrowMissingError", "ScoreResult", "write_columns"]

#: What to do when Arrow / Parquet support is missing.
ARROW_EXTRA_MESSAGE: Final = "needs the [arrow] extra: pip install 'affinity_sdk[arrow]'"


class ArrowMissingError(AffinityError, ImportError):
    """Arrow / Parquet was asked for and pyarrow is not installed (an ``ImportError`` too)."""


#: Tier labels by code (0 low, 1 medium, 2 high).
TIER_LABELS: Final = np.array(["low", "medium", "high"])


@dataclass(eq=False)
class ScoreResult:
    """One row per (consenting) user: ``user_id, raw_score, score, tier`` and a decayed value per
    signal. Columns are numpy arrays; exports keep them columnar (no per-row Python objects where
    the target format allows it)."""

    user_ids: list[str]
    raw_score: NDArray[np.float64]
    score: NDArray[np.float64]
    tier_code: NDArray[np.int8]
    signal_names: tuple[str, ...]
    decayed: NDArray[np.float64]
    now_ms: int
    config_version: str
    config_fingerprint: str
    backend: str = "reference"

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def tier(self) -> NDArray[np.str_]:
        """Tier labels (``"high"``, ``"medium"``, ``"low"``)."""
        labels: NDArray[np.str_] = TIER_LABELS[self.tier_code]
        return labels

    def tier_counts(self) -> dict[str, int]:
        """Users per tier, e.g. ``{"high": 10, "medium": 30, "low": 60}``."""
        counts = np.bincount(self.tier_code, minlength=3)
        return {"high": int(counts[2]), "medium": int(counts[1]), "low": int(counts[0])}

    @property
    def metadata(self) -> dict[str, str]:
        """Provenance stored with every export."""
        return {
            "config_version": self.config_version,
            "config_fingerprint": self.config_fingerprint,
            "now_ms": str(self.now_ms),
            "backend": self.backend,
        }

    def columns(self) -> dict[str, Any]:
        """Column name → array (or list for ``user_id``), in export order."""
        cols: dict[str, Any] = {
            "user_id": self.user_ids,
            "raw_score": self.raw_score,
            "score": self.score,
            "tier": self.tier,
        }
        for i, name in enumerate(self.signal_names):
            cols[name] = self.decayed[:, i]
        return cols

    # --- exports ---------------------------------------------------------------------------
    def to_csv(self, path: str | Path | io.TextIOBase) -> None:
        """Write CSV with a header row; floats with full (repr) precision. A path is written
        atomically (a temporary file beside it, renamed over it once complete)."""
        if isinstance(path, io.TextIOBase):
            _write_csv(self.columns(), path)
            return
        columns = self.columns()
        write_atomically([(path, lambda fh: _write_csv_binary(columns, fh))])

    def to_jsonl(self, path: str | Path) -> None:
        """Write JSON lines, one object per user (atomically)."""
        columns = self.columns()
        write_atomically([(path, lambda fh: _write_jsonl(columns, fh))])

    def to_arrow(self) -> Any:
        """A ``pyarrow.Table`` (numeric columns without copies) with provenance in its metadata."""
        return _arrow_table(self.columns(), self.metadata)

    def to_parquet(self, path: str | Path) -> None:
        """Write Parquet (needs the ``[arrow]`` extra), atomically; provenance goes in the file
        metadata."""
        pq = _pyarrow_parquet()
        table = self.to_arrow()
        write_atomically([(path, lambda fh: _write_parquet(pq, table, fh))])

    def to_pandas(self) -> Any:
        """A pandas DataFrame (pandas must be installed)."""
        import pandas as pd

        return pd.DataFrame(self.columns())

    def to_polars(self) -> Any:
        """A polars DataFrame (polars must be installed)."""
        import polars as pl

        return pl.DataFrame(
            {k: (v if isinstance(v, np.ndarray) else list(v)) for k, v in self.columns().items()}
        )

    def save(self, path: str | Path, *, threads: int | None = None) -> Path:
        """Write by extension (``.csv``, ``.jsonl``, ``.parquet``); see :func:`write_columns`."""
        return write_columns(self.columns(), path, metadata=self.metadata, threads=threads)


Columns = Mapping[str, "NDArray[Any] | Sequence[Any]"]


def write_columns(
    columns: Columns, path: str | Path, *, metadata: Mapping[str, str], threads: int | None = None
) -> Path:
    """Write equal-length columns by extension: ``.csv``, ``.jsonl`` / ``.ndjson`` or ``.parquet``.

    A CSV is formatted on up to ``threads`` threads (``None``: up to four, no more than the
    cores), the same bytes for any count.

    ``metadata`` (config version, fingerprint, run time) goes into the Parquet file metadata, or
    into a ``<file>.meta.json`` beside a CSV / JSON-lines file, so every export says what made it.

    Writes are atomic: the file and its sidecar are written to temporary files beside them,
    fsynced, and renamed over the targets only once both are complete, so a failure part way
    leaves the previous file and sidecar as they were and no temporary file behind. Parquet
    without pyarrow raises :class:`ArrowMissingError` before anything is written.

    Examples
    --------
    >>> import json, pathlib, tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "top.csv"
    >>> _ = write_columns({"user_id": ["ann"], "score": [0.5]}, out, metadata={"config_version": "v1"})
    >>> out.read_text().splitlines(), json.loads(out.with_name("top.csv.meta.json").read_text())
    (['user_id,score', 'ann,0.5'], {'config_version': 'v1'})
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        pq = _pyarrow_parquet()
        table = _arrow_table(columns, metadata)
        write_atomically([(p, lambda fh: _write_parquet(pq, table, fh))])
        return p
    if suffix == ".csv":
        write: Callable[[Columns, BinaryIO], None] = partial(_write_csv_binary, threads=threads)
    elif suffix in (".jsonl", ".ndjson"):
        write = _write_jsonl
    else:
        raise ValueError(f"unsupported output format {suffix!r}: use .csv, .jsonl or .parquet")
    meta = dict(metadata)
    write_atomically(
        [
            (p, lambda fh: write(columns, fh)),
            (p.with_name(p.name + ".meta.json"), lambda fh: _write_meta(meta, fh)),
        ]
    )
    return p


def _as_lists(columns: Columns) -> dict[str, list[Any]]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in columns.items()}


class _CsvText(io.TextIOWrapper):
    """The UTF-8 text layer, without newline translation, that :func:`_write_csv_binary` puts
    over a binary file: rows may go straight to its buffer in the same bytes."""


def _write_csv(columns: Columns, fh: Any, threads: int | None = None) -> None:
    """CSV into a text file: the compiled formatter when the extension has it, ``fh`` is a
    :class:`_CsvText` (the rows go to its binary buffer) and every column is one it handles (the
    same text, see ``csrc/csv_format.hpp``); else ``csv.writer``."""
    writer = csv.writer(fh)
    writer.writerow(list(columns))
    module = native()
    direct = isinstance(fh, _CsvText)
    native_columns = _native_csv_columns(columns) if module is not None and direct else None
    if module is None or native_columns is None:
        writer.writerows(zip(*_as_lists(columns).values(), strict=True))
        return
    fh.flush()
    n = len(next(iter(columns.values()), []))
    blocks = [(begin, min(n, begin + _CSV_ROWS_PER_WRITE)) for begin in range(0, n, _CSV_ROWS_PER_WRITE)]
    workers = min(len(blocks), threads or os.cpu_count() or 1, _CSV_THREADS)
    write = _writing_back(fh.buffer, module)
    if workers <= 1:
        for begin, end in blocks:
            write(module.csv_rows(native_columns, n, begin, end))
        return
    # The formatter releases the GIL: blocks are formatted on threads, a few ahead of the one
    # being written, and written in order (the same bytes as one thread).
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="affinity-csv") as pool:
        pending: deque[Future[bytes]] = deque()
        for begin, end in blocks:
            pending.append(pool.submit(module.csv_rows, native_columns, n, begin, end))
            if len(pending) > workers:
                write(pending.popleft().result())
        while pending:
            write(pending.popleft().result())


def _writing_back(buffer: BinaryIO, module: Any) -> Callable[[bytes], object]:
    """``buffer.write``, and where ``buffer`` is a file on Linux, each write's pages sent to disk
    at once (``_native.start_writeback``, without waiting): the fsync that ends an atomic write
    then finds little left, instead of ~25 ms for a 40 MB CSV on the development machine."""
    start = getattr(module, "start_writeback", None)
    try:
        fd = buffer.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        start = None
    if start is None:
        return buffer.write

    def write(data: bytes) -> object:
        written = buffer.write(data)
        buffer.flush()
        start(fd)
        return written

    return write


def _write_csv_binary(columns: Columns, fh: BinaryIO, threads: int | None = None) -> None:
    text = _CsvText(fh, encoding="utf-8", newline="", write_through=True)
    try:
        _write_csv(columns, text, threads)
        text.flush()
    finally:
        text.detach()  # the caller closes ``fh``


#: Rows formatted per call of the compiled CSV formatter: bounds the text held in memory at once,
#: and small enough that the blocks of a few hundred thousand rows spread evenly over the threads.
_CSV_ROWS_PER_WRITE: Final = 16_384
#: Threads formatting CSV blocks at most (at most ``_CSV_THREADS + 1`` blocks held at once).
_CSV_THREADS: Final = 4
_FLOAT, _INT, _BOOL, _STR, _STR_ARRAY = 0, 1, 2, 3, 4


def _native_csv_columns(columns: Columns) -> list[tuple[int, Any]] | None:
    """``(kind, data)`` per column for ``_native.csv_rows``, or ``None`` when a column holds values
    it does not format exactly like ``csv.writer`` (then the Python writer runs)."""
    out: list[tuple[int, Any]] = []
    n = len(next(iter(columns.values()), []))
    for values in columns.values():
        if len(values) != n:
            return None
        column = _native_csv_column(values)
        if column is None:
            return None
        out.append(column)
    return out


def _native_csv_column(values: NDArray[Any] | Sequence[Any]) -> tuple[int, Any] | None:
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            return None
        kind = values.dtype.kind
        # Strided float64 / int64 views (a signal column of the decayed matrix) are read in place.
        if kind == "f":  # float16 / float32 widen exactly, as ``tolist`` does
            return _FLOAT, np.asarray(values, dtype=np.float64)
        if kind == "i" or (kind == "u" and values.dtype.itemsize <= 4):
            return _INT, np.asarray(values, dtype=np.int64)
        if kind == "b":
            return _BOOL, np.ascontiguousarray(values).view(np.uint8)
        if kind == "U":  # UTF-8 encoded by the formatter: no ``str`` object per value
            values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))
            width = values.dtype.itemsize // 4
            if width and len(values):
                code = values.view(np.uint32).reshape(len(values), width)
                # ``tolist`` drops trailing NULs; one before another character goes to csv.writer
                # (see below), as does a code point UTF-8 cannot encode.
                if np.any((code[:, :-1] == 0) & (code[:, 1:] != 0)):
                    return None
                if code.max() >= 0xD800 and np.any((code >= 0xD800) & ((code <= 0xDFFF) | (code > 0x10FFFF))):
                    return None
            return _STR_ARRAY, values
        if kind != "O":
            return None
        values = values.tolist()
    items = values if isinstance(values, list) else list(values)
    try:
        joined = "".join(items)  # a TypeError unless every value is a str: one C loop, no Python one
    except TypeError:
        joined = None
    if joined is not None:
        # csv.writer's handling of NUL has changed across Python versions: leave it to csv.writer.
        return None if "\x00" in joined else (_STR, items)
    if all(type(v) is float for v in items):
        return _FLOAT, np.array(items, dtype=np.float64)
    if all(type(v) is int for v in items) and all(-(2**63) <= v < 2**63 for v in items):
        return _INT, np.array(items, dtype=np.int64)
    return None


def _write_jsonl(columns: Columns, fh: BinaryIO) -> None:
    lists = _as_lists(columns)
    n = len(next(iter(lists.values()), []))
    encoder = msgspec.json.Encoder()
    for i in range(n):
        fh.write(encoder.encode({k: v[i] for k, v in lists.items()}))
        fh.write(b"\n")


def _write_meta(metadata: Mapping[str, str], fh: BinaryIO) -> None:
    fh.write((json.dumps(dict(metadata), indent=2) + "\n").encode())


def _write_parquet(pq: Any, table: Any, fh: BinaryIO) -> None:
    pq.write_table(table, fh)


def _arrow_table(columns: Columns, metadata: Mapping[str, str]) -> Any:
    pa = _pyarrow()
    table = pa.table({k: pa.array(v) for k, v in columns.items()})
    return table.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise ArrowMissingError(f"Arrow / Parquet export {ARROW_EXTRA_MESSAGE}") from exc
    return pyarrow


def _pyarrow_parquet() -> Any:
    _pyarrow()
    try:
        import pyarrow.parquet
    except ImportError as exc:
        raise ArrowMissingError(f"Parquet export {ARROW_EXTRA_MESSAGE}") from exc
    return pyarrow.parquet
