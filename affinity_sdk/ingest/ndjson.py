"""NDJSON through the compiled reader: one chunk or a whole file, streamed in fixed-size pieces.

:func:`finish_native` turns the C++ reader's columns (``_native.read_ndjson`` or
``_native.NdjsonReader.read``) into an :class:`~affinity_sdk.ingest.batch.EventBatch`: the lines the
reader flagged are decoded with msgspec, so errors and edge cases match the Struct decoders exactly,
and the reader's local string codes become codes of the caller's interners, in first-seen order.

:func:`read_ndjson_file` streams a file through it a chunk at a time (each chunk ends at a line
end), so memory holds one chunk and its columns whatever the file's size. The reader keeps its
string tables across chunks, so each distinct id is decoded to ``str`` and interned once, and a
chunk's batch has the codes, rows and line numbers that one batch of the whole file would have.
With ``threads`` above one, the next chunk is read and parsed on the other threads while the
caller works on this one; with two or more parser threads a chunk is cut at line ends, its parts
read at once and merged in order into the columns and codes one thread gives, bit for bit.

Examples
--------
>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "events.ndjson"
>>> _ = path.write_text('{"type":"app_opened","user_id":"u1","timestamp":1}\\n' * 3)
>>> names = Interners()
>>> [len(b) for b in read_ndjson_file(path, names, chunk_bytes=64)], list(names.users.names)
([1, 1, 1], ['u1'])
"""

from __future__ import annotations

import io
import mmap
import os
import stat
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import native
from affinity_sdk.capture.decode import (
    _JSON_EVENT,
    _JSON_TAG,
    BOM,
    Errors,
    UnknownTypes,
    _Collector,
    _decode_one,
    skip_bom,
)
from affinity_sdk.errors import AffinityError, BackendUnavailableError, ConfigError
from affinity_sdk.ingest.batch import EVENT_COLUMNS, ITEM_COLUMNS, EventBatch, SourcePositions
from affinity_sdk.ingest.interner import INTERNER_KINDS, Interners

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "RAMP_PIECES",
    "PageWindow",
    "finish_native",
    "iter_chunks",
    "map_chunks",
    "ndjson_batch",
    "piece_target",
    "read_ndjson_file",
    "resolve_threads",
]

#: Bytes read per chunk: large enough that per-chunk work is noise, small enough that a chunk and
#: its columns stay in a few tens of MB.
DEFAULT_CHUNK_BYTES: Final = 16 << 20

#: A chunk is cut into parts of at least this many bytes, one per thread (a smaller part is not
#: worth a thread's start; tests lower it to cut tiny inputs).
_MIN_PART_BYTES = 1 << 20
#: Chunks the worker of a streamed file may have parsed, or be parsing, ahead of the one handed out.
_AHEAD: Final = 2

_ITEM_INTERNER: Final = {"item_product": "products", "item_category": "categories", "item_brand": "brands"}
_NO_CODES: Final = np.zeros(0, dtype=np.int64)

#: Per string kind, the caller's code of each of a streaming reader's codes so far.
ReaderCodes = dict[str, NDArray[np.int64]]


def resolve_threads(threads: int | None) -> int:
    """The thread count to read with: ``threads``, or every core (``os.cpu_count()``) for ``None``.

    Raises :class:`~affinity_sdk.errors.ConfigError` for anything but ``None`` or an ``int >= 1``.

    Examples
    --------
    >>> resolve_threads(3), resolve_threads(None) == (os.cpu_count() or 1)
    (3, True)
    """
    if threads is None:
        return os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ConfigError(f"threads must be a whole number >= 1 or None (all cores), got {threads!r}")
    return int(threads)


def finish_native(
    res: dict[str, Any],
    buf: bytes | bytearray | memoryview,
    names: Interners,
    errors: Errors,
    unknown_types: UnknownTypes,
    *,
    first_line: int = 0,
    codes: ReaderCodes | None = None,
) -> EventBatch:
    """Finish a batch from the C++ reader's slots: decode its flagged lines with msgspec, merge,
    and intern the string tables into ``names`` in first-seen order over the whole input.

    ``first_line`` is added to the reader's line numbers. ``codes`` carries a streaming reader's
    code mapping from chunk to chunk (``res`` then lists only the names new in this chunk, and
    the reader's codes continue); it is updated in place. ``None``: a one-off read.
    """
    codes = {} if codes is None else codes
    status: NDArray[np.uint8] = res["status"]
    line: NDArray[np.int64] = res["line"] + first_line if first_line else res["line"]
    begin, end = res["begin"], res["end"]
    out = _Collector(errors, unknown_types)
    view = buf if isinstance(buf, bytes) else memoryview(buf).cast("B")
    for slot in np.flatnonzero(status).tolist():
        index = int(line[slot])
        raw = view[begin[slot] : end[slot]]
        out.add(_decode_one(raw, _JSON_EVENT.decode, _JSON_TAG.decode), index, None, f" (line {index + 1})")
    rejects = out.result().rejects
    # Slots are the non-blank lines in order, so a line index finds its slot by bisection.
    py_slots = np.searchsorted(line, np.asarray(out.positions, dtype=np.int64))
    local = Interners()
    py = EventBatch.from_events(out.events, local)

    keep = status == 0
    cols = {k: res[k] for k in EVENT_COLUMNS}
    cols["has_coupon"] = cols["has_coupon"].view(np.bool_)
    # The reader's codes: those of earlier chunks, then this chunk's new names; msgspec's after.
    n_cpp = {k: len(codes.get(k, _NO_CODES)) + len(res[k][0]) for k in INTERNER_KINDS}
    if py_slots.size:
        keep[py_slots] = True
        for k in EVENT_COLUMNS:
            cols[k][py_slots] = getattr(py, k)
        cols["user"][py_slots] += n_cpp["users"]
        campaign = cols["campaign"]
        campaign[py_slots] = np.where(py.campaign >= 0, py.campaign + n_cpp["campaigns"], -1)

    # Items: C++ rows then msgspec rows, stably ordered by slot (each event's items stay in order).
    item_slot = res["item_slot"]
    n_cpp_items = item_slot.shape[0]
    items = {k: res[k] for k in ITEM_COLUMNS if k != "item_event"}
    item_order: NDArray[np.intp] | None = None
    if py.n_items:
        item_slot = np.concatenate([item_slot, py_slots[py.item_event]])
        for k in items:
            extra = getattr(py, k)
            if k in _ITEM_INTERNER:  # -1 (not given) stays -1
                extra = np.where(extra >= 0, extra + n_cpp[_ITEM_INTERNER[k]], -1)
            items[k] = np.concatenate([items[k], extra])
        item_order = np.argsort(item_slot, kind="stable")
        item_slot = item_slot[item_order]
        for k in items:
            items[k] = items[k][item_order]

    # Reader code -> code in `names`, interning in order of first appearance in the final batch.
    remap: dict[str, NDArray[np.int64]] = {}
    for kind in INTERNER_KINDS:
        cpp_names, cpp_first = res[kind]
        known = codes.get(kind, _NO_CODES)
        py_names = getattr(local, kind).names
        interner = getattr(names, kind)
        if not py_names:
            codes[kind] = remap[kind] = np.concatenate([known, interner.intern_many(cpp_names)])
            continue
        py_codes = _py_codes(py, kind)
        valid = py_codes >= 0
        _, py_first = np.unique(py_codes[valid], return_index=True)
        py_first = np.flatnonzero(valid)[py_first]
        if kind in ("users", "campaigns"):
            py_key = py_slots[py_first]
            cpp_key = cpp_first
        else:
            assert item_order is not None
            inverse = np.empty_like(item_order)
            inverse[item_order] = np.arange(item_order.shape[0])
            py_key = inverse[n_cpp_items + py_first]
            cpp_key = inverse[cpp_first]
        all_names = [*cpp_names, *py_names]
        order = np.argsort(np.concatenate([cpp_key, py_key]), kind="stable")
        table = np.empty(len(all_names), dtype=np.int64)
        table[order] = interner.intern_many([all_names[i] for i in order.tolist()])
        codes[kind] = np.concatenate([known, table[: len(cpp_names)]])
        remap[kind] = np.concatenate([codes[kind], table[len(cpp_names) :]])

    rows = np.cumsum(keep) - 1
    every = bool(keep.all())
    final = {k: (v if every else v[keep]) for k, v in cols.items()}
    final["user"] = remap["users"][final["user"]]
    campaign = final["campaign"]
    # -1 (no campaign) picks the appended -1.
    final["campaign"] = np.append(remap["campaigns"], -1)[campaign]
    final_items: dict[str, NDArray[Any]] = {"item_event": rows[item_slot]}
    for k, v in items.items():
        # -1 (a category or brand not given) picks the appended -1.
        final_items[k] = (
            np.append(remap[_ITEM_INTERNER[k]], -1)[v].astype(np.int32) if k in _ITEM_INTERNER else v
        )
    arrays: dict[str, Any] = {k: np.ascontiguousarray(v, dtype=EVENT_COLUMNS[k]) for k, v in final.items()}
    arrays.update({k: np.ascontiguousarray(v, dtype=ITEM_COLUMNS[k]) for k, v in final_items.items()})
    source = SourcePositions(np.ascontiguousarray(line if every else line[keep], dtype=np.int64), lines=True)
    return EventBatch(**arrays, interners=names, rejects=rejects, source=source)


def ndjson_batch(
    data: bytes | bytearray | memoryview | str,
    interners: Interners | None = None,
    *,
    errors: Errors = "raise",
    unknown_types: UnknownTypes = "raise",
    threads: int | None = 1,
) -> EventBatch:
    """``EventBatch.from_ndjson(data, interners, ...)`` with the compiled reader parsing on
    ``threads`` threads (``None``: every core): the same batch, codes and rejects for any count.
    Without the compiled reader (or with one thread) it is ``from_ndjson`` itself.

    Examples
    --------
    >>> line = b'{"type":"app_opened","user_id":"u1","timestamp":1}\\n'
    >>> names = Interners()
    >>> len(ndjson_batch(line * 3, names, threads=2)), list(names.users.names)
    (3, ['u1'])
    """
    n_threads = resolve_threads(threads)
    module = native()
    if n_threads == 1 or module is None or not hasattr(module, "read_ndjson"):
        return EventBatch.from_ndjson(data, interners, errors=errors, unknown_types=unknown_types)
    buf = skip_bom(data.encode() if isinstance(data, str) else data)  # a BOM is part of line 1
    res = module.read_ndjson(buf, threads=n_threads, min_part_bytes=_MIN_PART_BYTES)
    return finish_native(res, buf, Interners() if interners is None else interners, errors, unknown_types)


def _py_codes(py: EventBatch, kind: str) -> NDArray[Any]:
    column: dict[str, NDArray[Any]] = {
        "users": py.user,
        "campaigns": py.campaign,
        "products": py.item_product,
        "categories": py.item_category,
        "brands": py.item_brand,
    }
    return column[kind]


def iter_chunks(
    fh: io.BufferedIOBase, chunk_bytes: int = DEFAULT_CHUNK_BYTES, *, buffers: int = 1
) -> Iterator[memoryview]:
    """Pieces of ``fh`` that end at a line end (the last one at the end of the file). A piece is
    a view of one of ``buffers`` reused buffers, valid until ``buffers`` more pieces are asked for
    (so with two, one piece can be filled while the caller works on the one before); a line
    longer than ``chunk_bytes`` grows the buffer.

    Examples
    --------
    >>> import io
    >>> [bytes(c) for c in iter_chunks(io.BytesIO(b"a\\nbb\\nccc\\n\\nd"), 4)]
    [b'a\\n', b'bb\\n', b'ccc\\n', b'\\nd']
    """
    if chunk_bytes < 1 or buffers < 1:
        raise ValueError(f"chunk_bytes and buffers must be >= 1 (got {chunk_bytes}, {buffers})")
    pool = [bytearray(chunk_bytes) for _ in range(buffers)]
    turn = 0
    carry = b""  # the start of a line the last piece cut off
    while True:
        buf = pool[turn]
        while len(buf) <= len(carry):
            buf = pool[turn] = bytearray(2 * len(buf))  # a new buffer: old views stay valid
        buf[: len(carry)] = carry  # same-size slice assignment: allowed while views exist
        filled = len(carry)
        while True:
            with memoryview(buf) as free:
                n = fh.readinto(free[filled:])
            filled += n
            if n == 0 or (filled == len(buf) and buf.rfind(b"\n", 0, filled) >= 0):
                break
            if filled == len(buf):  # no line end in a full buffer: the line is longer than it
                buf = pool[turn] = buf + bytearray(len(buf))
        if filled == 0:
            return
        cut = filled if n == 0 else buf.rfind(b"\n", 0, filled) + 1
        carry = bytes(buf[cut:filled])
        yield memoryview(buf)[:cut]
        turn = (turn + 1) % buffers


def map_chunks(
    fh: io.BufferedIOBase,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    *,
    ramp: bool = False,
    window: PageWindow | None = None,
) -> Iterator[memoryview] | None:
    """The pieces :func:`iter_chunks` cuts (each ending at a line end, a longer line whole), as
    views of a read-only memory map of ``fh``: nothing is copied into a buffer, which saves the
    reading thread about a tenth of its time. Pages more than two pieces behind are dropped from
    the map as it goes (they stay in the page cache), so resident memory does not grow with the
    file. ``None`` where ``fh`` is not a non-empty regular file that can be mapped (a pipe, a
    ``BytesIO``): read it with :func:`iter_chunks`. A piece stays readable until the iterator
    ends.

    With ``ramp``, a file of more than :data:`RAMP_PIECES` pieces is cut into pieces of
    :func:`piece_target` bytes instead: small at the start and at the end of the file, so a
    pipeline that reads piece k + 1 while piece k is folded starts folding sooner and has little
    left to fold once the last piece is read. (Smaller files keep their cuts: where batches end
    changes the last bits of the decayed sums, and there the pipeline saves nothing.)

    With ``window``, another thread may map the next piece's pages and drop those behind
    meanwhile (:class:`PageWindow`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "e.ndjson"
    >>> _ = path.write_bytes(b"a\\nbb\\nccc\\n\\nd")
    >>> with open(path, "rb") as fh:
    ...     [bytes(c) for c in map_chunks(fh, 4) or []]
    [b'a\\n', b'bb\\n', b'ccc\\n', b'\\nd']
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1 (got {chunk_bytes})")
    try:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return None
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return _mapped_pieces(mapped, chunk_bytes, ramp, window)


def piece_target(index: int, remaining: int, chunk_bytes: int) -> int:
    """The size piece ``index`` of a ramped :func:`map_chunks` aims at, ``remaining`` bytes before
    the end of the file: ``chunk_bytes`` / 8, / 4, / 2 for the first three pieces, then
    ``chunk_bytes``, but never more than half of what remains (nor less than ``chunk_bytes`` / 8).

    Examples
    --------
    >>> [piece_target(k, 100, 16) for k in range(5)], piece_target(9, 20, 16), piece_target(9, 3, 16)
    ([2, 4, 8, 16, 16], 10, 2)
    """
    smallest = max(1, chunk_bytes // 8)
    return max(smallest, min(chunk_bytes >> max(0, 3 - index), remaining // 2))


#: A ramped :func:`map_chunks` ramps files of more than this many pieces of ``chunk_bytes``.
RAMP_PIECES: Final = 4


#: ``madvise`` advice that maps a range's pages in one call (Linux 5.14+; absent from ``mmap`` before
#: Python 3.13).
_MADV_POPULATE_READ: Final = 22


class PageWindow:
    """The resident pages of a memory-mapped file read piece by piece (:func:`map_chunks`), moved
    on by a thread other than the one reading the pieces: :meth:`slide` maps the next piece's pages
    and drops those more than two pieces behind, so a thread that would wait for the reader takes
    that kernel work off it (about a tenth of its time on a file in the page cache). Pages the
    sliding thread has not dropped a piece later, the reading thread drops itself.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "e.ndjson"
    >>> _ = path.write_bytes(b"a\\nbb\\nccc\\n")
    >>> window = PageWindow()
    >>> with open(path, "rb") as fh:
    ...     pieces = map_chunks(fh, 3, window=window)
    ...     first = bytes(next(pieces))
    ...     window.slide()  # maps the next piece's pages (where the system can)
    ...     rest = [bytes(p) for p in pieces]
    >>> first, rest
    (b'a\\n', [b'bb\\n', b'ccc\\n'])
    """

    def __init__(self) -> None:
        self._mapped: mmap.mmap | None = None
        self._next = (0, 0)  # the next piece's start and (about) its size
        self._mapped_to = 0  # pages below this offset were mapped already
        self._drop_to = 0  # pages below this offset may be dropped ...
        self._dropped_to = 0  # ... and below this one they were
        self._no_populate = False

    def _offer(self, mapped: mmap.mmap | None, start: int, size: int, drop_to: int) -> None:
        """Set by the pieces' iterator: the next piece starts at ``start``, about ``size`` long,
        and the pages below ``drop_to`` are no longer read."""
        self._mapped = mapped
        self._next = (start, size)
        self._drop_to = drop_to

    def _drop(self, mapped: mmap.mmap, to: int) -> None:
        """Drop the pages below ``to`` (they stay in the page cache)."""
        begin = self._dropped_to
        if to > begin:
            self._dropped_to = to
            mapped.madvise(mmap.MADV_DONTNEED, begin, to - begin)

    def slide(self) -> None:
        """Drop the pages behind and map the next piece's pages, each once; nothing where the
        system cannot (or the map is closed)."""
        mapped = self._mapped
        if mapped is None:
            return
        start, size = self._next
        begin = max(start, self._mapped_to) // mmap.PAGESIZE * mmap.PAGESIZE
        end = start + size
        try:
            self._drop(mapped, self._drop_to)
            if end > begin and not self._no_populate:
                mapped.madvise(_MADV_POPULATE_READ, begin, min(end, len(mapped)) - begin)
                self._mapped_to = end
        except OSError:  # no MADV_POPULATE_READ before Linux 5.14 (or on another system)
            self._no_populate = True
        except ValueError:  # the map was closed meanwhile
            pass


def _mapped_pieces(
    mapped: mmap.mmap, chunk_bytes: int, ramp: bool = False, window: PageWindow | None = None
) -> Iterator[memoryview]:
    size = len(mapped)
    ramp = ramp and size > RAMP_PIECES * chunk_bytes
    can_advise = hasattr(mapped, "madvise")
    if can_advise and hasattr(mmap, "MADV_SEQUENTIAL"):
        mapped.madvise(mmap.MADV_SEQUENTIAL)
    drop = can_advise and hasattr(mmap, "MADV_DONTNEED")
    window = window if drop else None
    # Pages two pieces behind are dropped here, or with a window (which the other thread slides),
    # those three behind if it has not.
    dropper, lag = (window, 4) if window is not None else (PageWindow(), 3)
    view = memoryview(mapped)
    starts: list[int] = []
    try:
        start = 0
        while start < size:
            end = size
            target = piece_target(len(starts), size - start, chunk_bytes) if ramp else chunk_bytes
            if size - start > target:
                end = mapped.rfind(b"\n", start, start + target) + 1
                if end == 0:  # a line longer than a piece: the whole line
                    end = mapped.find(b"\n", start + target) + 1 or size
            if window is not None:
                after = piece_target(len(starts) + 1, size - end, chunk_bytes) if ramp else chunk_bytes
                behind = starts[-2] if len(starts) > 1 else 0
                window._offer(mapped, end, after, behind // mmap.PAGESIZE * mmap.PAGESIZE)
            yield view[start:end]
            starts.append(start)
            if drop and len(starts) >= lag:
                dropper._drop(mapped, starts[-lag] // mmap.PAGESIZE * mmap.PAGESIZE)
            start = end
    finally:
        if window is not None:
            window._offer(None, 0, 0, 0)
        view.release()
        try:
            mapped.close()
        except BufferError:  # a caller still holds a piece: the map closes when it lets go
            pass


def read_ndjson_file(
    path: str | os.PathLike[str],
    interners: Interners,
    *,
    errors: Errors = "raise",
    unknown_types: UnknownTypes = "raise",
    chunk_bytes: int | None = None,
    reader: Literal["auto", "native", "python"] = "auto",
    background: bool = True,
    threads: int | None = None,
) -> Iterator[EventBatch]:
    """The events of an NDJSON file as batches of about ``chunk_bytes`` each (default
    :data:`DEFAULT_CHUNK_BYTES`; smaller at the start and end of a mapped file of more than
    :data:`RAMP_PIECES` of them, see :func:`map_chunks`), in ``interners``.

    Together the batches equal ``EventBatch.from_ndjson(whole_file, interners, ...)``: the same
    rows in order, the same codes, rejects at the same lines, and ``errors="raise"`` raising at the
    first bad line. A leading UTF-8 byte order mark is skipped. Memory holds a few chunks at a
    time (the one handed out and, in the background, up to two parsed ahead). With the compiled
    reader the work is spread over ``threads`` threads (default: every core, see
    :func:`resolve_threads`), the batches and codes being the same whatever the count: with
    ``threads=1`` everything runs on the calling thread; with more and ``background=True`` the next
    chunks are read and parsed (the parser releases the GIL) on the other ``threads - 1``, cut at
    line ends, while the caller works on this one; with ``background=False`` the calling thread
    waits while ``threads`` threads parse each chunk. ``interners``
    must only grow while the file is read (as they do when each batch is ingested into a store
    that owns them; a name forgotten meanwhile would keep its old code here); if they shrink below
    what this reader interned (a rolled-back ingest), the reader starts its string tables afresh
    (still correct).
    A file that cannot be read raises :class:`~affinity_sdk.errors.AffinityError`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "e.ndjson"
    >>> _ = path.write_text('{"type":"app_opened","user_id":"a","timestamp":1}\\n{"type":"x"}\\n')
    >>> [b.rejects.errors for b in read_ndjson_file(path, Interners(), errors="collect", chunk_bytes=60)]
    [[], [(1, "Unknown event type 'x' - at `$.type` (line 2)")]]
    """
    n_threads = resolve_threads(threads)
    module = None if reader == "python" else native()
    if module is None or not hasattr(module, "NdjsonReader"):
        if reader == "native":
            raise BackendUnavailableError("the compiled NDJSON reader (affinity_sdk._native) is missing")
        module = None
    try:
        fh = open(path, "rb")  # closed by the `with` below, after the last chunk
    except OSError as exc:
        raise AffinityError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        size = DEFAULT_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        behind = module is not None and background and n_threads > 1
        window = PageWindow() if behind else None
        chunks = _read_chunks(fh, size, path, 1 if module is None else 2, window)
        if module is not None:
            # In the background the calling thread folds while the others parse: threads in all.
            parsers = n_threads - 1 if behind else n_threads
            yield from _native_batches(
                module, chunks, interners, errors, unknown_types, behind, parsers, window
            )
            return
        first_line = 0  # of the chunk, in the file
        for chunk in chunks:
            data = bytes(chunk)
            batch = EventBatch.from_ndjson(
                data, interners, errors=errors, unknown_types=unknown_types, reader="python",
                first_line=first_line,
            )  # fmt: skip
            first_line += data.count(b"\n")
            yield batch


_Parsed = tuple[memoryview, dict[str, Any]]


def _native_batches(
    module: Any,
    chunks: Iterator[memoryview],
    interners: Interners,
    errors: Errors,
    unknown_types: UnknownTypes,
    background: bool,
    threads: int,
    window: PageWindow | None = None,
) -> Iterator[EventBatch]:
    """The native half of :func:`read_ndjson_file`: the worker reads and parses up to
    :data:`_AHEAD` chunks ahead while chunk k is finished here and handed to the caller, so neither
    side waits for the other whenever one chunk is slow to parse and the next slow to fold; before
    waiting for the worker, this thread slides ``window`` (maps the pages of the next chunk and
    drops old ones), which the worker would otherwise do."""
    state = _Stream(module.NdjsonReader(threads, _MIN_PART_BYTES))
    first_line = 0  # of the chunk, in the file

    def parse(reader: Any) -> _Parsed | None:
        chunk = next(chunks, None)
        return None if chunk is None else (chunk, reader.read(chunk))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="affinity-ndjson") as pool:
        pending: deque[tuple[Future[_Parsed | None], Any]] = deque()  # with the reader it uses

        def top_up() -> None:
            # Only with the current reader: after a restart, the chunks parsed ahead by the old one
            # are read again here, in order, before the new one reads anything further.
            while background and len(pending) < _AHEAD and all(r is state.reader for _, r in pending):
                pending.append((pool.submit(parse, state.reader), state.reader))

        top_up()
        while True:
            if background:
                future, used = pending.popleft()
                if window is not None and not future.done():
                    window.slide()
                item = future.result()
            else:
                used, item = state.reader, parse(state.reader)
            if item is None:
                return
            chunk, res = item
            if not state.still_valid(interners):
                state = _Stream(module.NdjsonReader(threads, _MIN_PART_BYTES))
            if used is not state.reader:  # parsed before the restart: again, in order
                res = state.reader.read(chunk)
            top_up()
            batch = finish_native(
                res, chunk, interners, errors, unknown_types, first_line=first_line, codes=state.codes
            )
            first_line += res["n_lines"]  # a chunk ends at a line end: its '\n's
            state.mark(interners)
            yield batch


def _read_chunks(
    fh: io.BufferedIOBase,
    chunk_bytes: int,
    path: str | os.PathLike[str],
    buffers: int,
    window: PageWindow | None = None,
) -> Iterator[memoryview]:
    try:
        chunks = map_chunks(fh, chunk_bytes, ramp=True, window=window) or iter_chunks(
            fh, chunk_bytes, buffers=buffers
        )
        first = next(chunks, None)
        if first is None:
            return
        yield first[3:] if bytes(first[:3]) == BOM else first  # a BOM is part of line 1: skip it
        yield from chunks
    except OSError as exc:
        raise AffinityError(f"cannot read {path}: {exc.strerror or exc}") from None


class _Stream:
    """A native reader and its codes in the caller's interners, with the interners' sizes after
    the last chunk (a reader's codes stay valid only while the interners keep those names)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.codes: ReaderCodes = {}
        self.sizes: dict[str, int] = {}

    def mark(self, interners: Interners) -> None:
        self.sizes = {kind: len(getattr(interners, kind)) for kind in INTERNER_KINDS}

    def still_valid(self, interners: Interners) -> bool:
        return all(len(getattr(interners, kind)) >= n for kind, n in self.sizes.items())
