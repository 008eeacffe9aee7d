"""An NDJSON file cut into pieces at line ends and parsed ahead of its caller by the compiled reader.

:func:`map_chunks` (a memory map, ramped piece sizes) and :func:`iter_chunks` (reused buffers, for
pipes) cut a file; :class:`ReadAhead` parses the pieces with ``_native.NdjsonReader`` on a worker
thread while the caller folds earlier ones (:func:`~affinity_sdk.ingest.ndjson.read_ndjson_file`
turns what it hands out into batches). Neither numpy nor the decoders are imported here, so the
``affinity`` command starts reading a file before the rest of the package has loaded, and finds
the first pieces parsed when it is ready to fold them.

Examples
--------
>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "events.ndjson"
>>> _ = path.write_text('{"type":"app_opened","user_id":"u1","timestamp":1}\\n' * 3)
>>> with open(path, "rb") as fh:
...     [bytes(piece).count(b"\\n") for piece in map_chunks(fh, 64) or []]
[1, 1, 1]
"""

from __future__ import annotations

import io
import mmap
import numbers
import os
import stat
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Final, NamedTuple

from affinity_sdk._backends import native
from affinity_sdk.capture.formats import BOM
from affinity_sdk.errors import AffinityError, BackendUnavailableError, ConfigError

__all__ = [
    "AHEAD",
    "DEFAULT_CHUNK_BYTES",
    "MIN_PART_BYTES",
    "RAMP_PIECES",
    "PageWindow",
    "Parsed",
    "ReadAhead",
    "iter_chunks",
    "map_chunks",
    "piece_target",
    "resolve_threads",
]

#: Bytes read per chunk: large enough that per-chunk work is noise, small enough that a chunk and
#: its columns stay in a few tens of MB.
DEFAULT_CHUNK_BYTES: Final = 16 << 20


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
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ConfigError(f"threads must be a whole number >= 1 or None (all cores), got {threads!r}")
    return int(threads)


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


def _read_chunks(
    fh: io.BufferedIOBase,
    chunk_bytes: int | None,
    path: str | os.PathLike[str],
    buffers: int,
    window: PageWindow | None = None,
) -> Generator[memoryview, None, None]:
    """The pieces of ``fh`` (of about ``chunk_bytes``, default :data:`DEFAULT_CHUNK_BYTES`): ramped
    views of a memory map where the file can be mapped, else ``buffers`` reused buffers; a leading
    byte order mark skipped; a read error as :class:`~affinity_sdk.errors.AffinityError`."""
    if chunk_bytes is None:
        chunk_bytes = DEFAULT_CHUNK_BYTES
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


#: A chunk is cut into parts of at least this many bytes, one per parser thread (a smaller part is
#: not worth a thread's start).
MIN_PART_BYTES: Final = 1 << 20
#: Pieces the worker of a :class:`ReadAhead` may have parsed, or be parsing, ahead of the one
#: handed out (once the first has been).
AHEAD: Final = 2


class Parsed(NamedTuple):
    """A piece of the file, the reader's columns for it, and the reader that parsed it."""

    chunk: memoryview
    columns: dict[str, Any]
    reader: Any


class ReadAhead:
    """An NDJSON file read and parsed by the compiled reader ahead of its caller.

    :meth:`open` starts it: a worker thread cuts the file into pieces (:func:`map_chunks`, ramped)
    and parses them with a ``_native.NdjsonReader`` of ``threads - 1`` parser threads, while the
    caller works on the pieces before; :meth:`next_parsed` hands them out in order (``None`` at the
    end of the file). Until the first is taken the worker may run ``early`` pieces ahead (so a
    program that starts reading first and loads the rest of itself meanwhile finds them parsed),
    then :data:`AHEAD`. With ``background=False`` or one thread there is no worker: each piece is
    parsed when asked for, on the calling thread (with ``threads`` parser threads).

    The reader keeps its string tables from piece to piece; :meth:`restart` starts a new one (for
    a caller whose interners were rolled back); pieces the old one parsed ahead still name it in
    :attr:`Parsed.reader`. :meth:`close` (or the ``with`` block's end) stops the worker and closes
    the file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "e.ndjson"
    >>> _ = path.write_text('{"type":"app_opened","user_id":"a","timestamp":1}\\n' * 3)
    >>> with ReadAhead.open(path, threads=2, chunk_bytes=60) as ahead:
    ...     [len(parsed.columns["user"]) for parsed in iter(ahead.next_parsed, None)]
    [1, 1, 1]
    """

    def __init__(
        self,
        module: Any,
        fh: io.BufferedIOBase,
        path: str | os.PathLike[str],
        threads: int,
        chunk_bytes: int | None,
        background: bool,
        early: int,
        min_part_bytes: int,
        item_names: bool = True,
    ) -> None:
        behind = background and threads > 1
        self.window = PageWindow() if behind else None
        self._fh = fh
        self._chunks = _read_chunks(fh, chunk_bytes, path, 2, self.window)
        self._module = module
        self._parsers = threads - 1 if behind else threads  # in the background the caller folds
        self._min_part_bytes = min_part_bytes
        self._item_names = item_names
        self.reader: Any = self._new_reader()
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="affinity-ndjson") if behind else None
        )
        self._pending: deque[tuple[Future[Parsed | None], Any]] = deque()  # with the reader each uses
        self._limit = max(AHEAD, early)
        self.top_up()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        chunk_bytes: int | None = None,
        background: bool = True,
        early: int = AHEAD,
        min_part_bytes: int = MIN_PART_BYTES,
        item_names: bool = True,
    ) -> ReadAhead:
        """Start reading ``path`` (pieces of about ``chunk_bytes``, default
        :data:`DEFAULT_CHUNK_BYTES`) on ``threads`` threads (``None``: every core). With
        ``item_names=False`` the item rows keep their prices, discounts and quantities but not
        their product, category and brand (codes -1): for a caller whose views read none of them
        (the scored signals), which saves the reader interning them. Raises
        :class:`~affinity_sdk.errors.BackendUnavailableError` without the compiled reader and
        :class:`~affinity_sdk.errors.AffinityError` for a file that cannot be read."""
        n_threads = resolve_threads(threads)
        module = native()
        if module is None or not hasattr(module, "NdjsonReader"):
            raise BackendUnavailableError("the compiled NDJSON reader (affinity_sdk._native) is missing")
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise AffinityError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            return cls(
                module, fh, path, n_threads, chunk_bytes, background, early, min_part_bytes, item_names
            )
        except BaseException:
            fh.close()
            raise

    def _new_reader(self) -> Any:
        return self._module.NdjsonReader(self._parsers, self._min_part_bytes, item_names=self._item_names)

    def _parse(self, reader: Any) -> Parsed | None:
        chunk = next(self._chunks, None)
        return None if chunk is None else Parsed(chunk, reader.read(chunk), reader)

    def top_up(self) -> None:
        """Give the worker pieces to parse up to the limit, only with the current reader: after a
        :meth:`restart`, the pieces the old one parsed ahead are handed out (to be read again) before
        the new one reads further."""
        while (
            self._pool is not None
            and len(self._pending) < self._limit
            and all(r is self.reader for _, r in self._pending)
        ):
            self._pending.append((self._pool.submit(self._parse, self.reader), self.reader))

    def next_parsed(self) -> Parsed | None:
        """The next piece, parsed (``None`` after the last). Before waiting for the worker, the
        calling thread slides the page window (maps the next piece's pages, drops old ones), which
        the worker would otherwise do."""
        if self._pool is None:
            return self._parse(self.reader)
        self._limit = AHEAD
        if not self._pending:
            self.top_up()
        future, _ = self._pending.popleft()
        if self.window is not None and not future.done():
            self.window.slide()
        return future.result()

    def restart(self) -> Any:
        """A new reader, with empty string tables, for the pieces parsed from now on; returns it."""
        self.reader = self._new_reader()
        return self.reader

    def close(self) -> None:
        """Stop the worker (a piece being parsed is finished first) and close the file."""
        if self._pool is not None:
            for future, _ in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)
            self._pending.clear()
        self._chunks.close()
        self._fh.close()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
