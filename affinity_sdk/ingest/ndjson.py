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

import os
from collections.abc import Iterator
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import native
from affinity_sdk.capture.decode import (
    _JSON_EVENT,
    _JSON_TAG,
    Errors,
    UnknownTypes,
    _Collector,
    _decode_one,
)
from affinity_sdk.capture.formats import skip_bom
from affinity_sdk.errors import AffinityError, BackendUnavailableError
from affinity_sdk.ingest.batch import (
    EVENT_COLUMNS,
    ITEM_COLUMNS,
    EventBatch,
    SourcePositions,
    kept_row_numbers,
)
from affinity_sdk.ingest.interner import INTERNER_KINDS, Interners
from affinity_sdk.ingest.read_ahead import (
    DEFAULT_CHUNK_BYTES,
    MIN_PART_BYTES,
    RAMP_PIECES,
    PageWindow,
    ReadAhead,
    _read_chunks,
    iter_chunks,
    map_chunks,
    piece_target,
    resolve_threads,
)

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

#: Parts of a chunk for the reader's threads are at least this long (tests lower it to cut tiny
#: inputs).
_MIN_PART_BYTES = MIN_PART_BYTES

_ITEM_INTERNER: Final = {"item_product": "products", "item_category": "categories", "item_brand": "brands"}
_NO_CODES: Final = np.zeros(0, dtype=np.int64)

#: Per string kind, the caller's code of each of a streaming reader's codes so far.
ReaderCodes = dict[str, NDArray[np.int64]]


def finish_native(
    res: dict[str, Any],
    buf: bytes | bytearray | memoryview,
    names: Interners,
    errors: Errors,
    unknown_types: UnknownTypes,
    *,
    first_line: int = 0,
    codes: ReaderCodes | None = None,
    owned: set[str] | None = None,
) -> EventBatch:
    """Finish a batch from the C++ reader's slots: decode its flagged lines with msgspec, merge,
    and intern the string tables into ``names`` in first-seen order over the whole input.

    ``first_line`` is added to the reader's line numbers. ``codes`` carries a streaming reader's
    code mapping from chunk to chunk (``res`` then lists only the names new in this chunk, and
    the reader's codes continue); it is updated in place. ``None``: a one-off read. ``owned``:
    the kinds whose interner holds exactly the streaming reader's names so far, in its order, so
    that its new names are new there too and go in unchecked (:meth:`Interner.extend_new
    <affinity_sdk.ingest.interner.Interner.extend_new>`); a kind this chunk has to intern the
    checked way (names msgspec decoded, or non-ASCII ones to normalise) is removed from it.
    """
    codes = {} if codes is None else codes
    unchecked: set[str] = set() if owned is None else owned
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
    same: set[str] = set()  # kinds whose reader codes are the codes in `names` (no remap)
    for kind in INTERNER_KINDS:
        cpp_names, cpp_first = res[kind]
        known = codes.get(kind, _NO_CODES)
        py_names = getattr(local, kind).names
        interner = getattr(names, kind)
        if not py_names:
            if kind in unchecked and (interner.normalize is None or "".join(cpp_names).isascii()):
                # An owned interner holds the reader's names in the reader's order: code i is i.
                interner.extend_new(cpp_names)
                codes[kind] = remap[kind] = _identity(len(known) + len(cpp_names))
                same.add(kind)
                continue
            new = interner.intern_many(cpp_names)
            unchecked.discard(kind)
            codes[kind] = remap[kind] = np.concatenate([known, new])
            continue
        unchecked.discard(kind)
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

    every = bool(keep.all())
    final = {k: (v if every else v[keep]) for k, v in cols.items()}
    if "users" not in same:
        final["user"] = remap["users"][final["user"]]
    if "campaigns" not in same:
        # -1 (no campaign) picks the appended -1.
        final["campaign"] = np.append(remap["campaigns"], -1)[final["campaign"]]
    final_items: dict[str, NDArray[Any]] = {
        "item_event": item_slot if every else kept_row_numbers(item_slot, keep)
    }
    for k, v in items.items():
        if k in _ITEM_INTERNER and _ITEM_INTERNER[k] not in same:
            # -1 (a category or brand not given) picks the appended -1.
            v = np.append(remap[_ITEM_INTERNER[k]], -1)[v].astype(np.int32)
        final_items[k] = v
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


_IDENTITY: list[NDArray[np.int64]] = [np.arange(0, dtype=np.int64)]


def _identity(n: int) -> NDArray[np.int64]:
    """``np.arange(n)`` as a read-only view of one kept array that grows geometrically (a stream's
    codes of an owned kind, chunk after chunk, without a copy each time)."""
    if _IDENTITY[0].shape[0] < n:
        grown = np.arange(max(n, 2 * _IDENTITY[0].shape[0]), dtype=np.int64)
        grown.flags.writeable = False
        _IDENTITY[0] = grown
    return _IDENTITY[0][:n]


def _py_codes(py: EventBatch, kind: str) -> NDArray[Any]:
    column: dict[str, NDArray[Any]] = {
        "users": py.user,
        "campaigns": py.campaign,
        "products": py.item_product,
        "categories": py.item_category,
        "brands": py.item_brand,
    }
    return column[kind]


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
    ahead: ReadAhead | None = None,
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
    (still correct). ``ahead``: this file's :class:`~affinity_sdk.ingest.read_ahead.ReadAhead`,
    started earlier and not yet read from (its pieces and threads are used; the caller closes it).
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
    if ahead is not None:
        yield from _native_batches(ahead, interners, errors, unknown_types)
        return
    module = None if reader == "python" else native()
    if module is None or not hasattr(module, "NdjsonReader"):
        if reader == "native":
            raise BackendUnavailableError("the compiled NDJSON reader (affinity_sdk._native) is missing")
        module = None
    if module is not None:
        opened = ReadAhead.open(
            path, threads=n_threads, chunk_bytes=chunk_bytes, background=background,
            min_part_bytes=_MIN_PART_BYTES,
        )  # fmt: skip
        with opened:
            yield from _native_batches(opened, interners, errors, unknown_types)
        return
    try:
        fh = open(path, "rb")  # closed by the `with` below, after the last chunk
    except OSError as exc:
        raise AffinityError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        chunks = _read_chunks(fh, chunk_bytes, path, 1)
        first_line = 0  # of the chunk, in the file
        for chunk in chunks:
            data = bytes(chunk)
            batch = EventBatch.from_ndjson(
                data, interners, errors=errors, unknown_types=unknown_types, reader="python",
                first_line=first_line,
            )  # fmt: skip
            first_line += data.count(b"\n")
            yield batch


def _native_batches(
    ahead: ReadAhead, interners: Interners, errors: Errors, unknown_types: UnknownTypes
) -> Iterator[EventBatch]:
    """The native half of :func:`read_ndjson_file`: chunk k is finished here and handed to the
    caller while ``ahead``'s worker parses the next ones, so neither side waits for the other
    whenever one chunk is slow to parse and the next slow to fold."""
    state = _Stream(ahead.reader, interners)
    first_line = 0  # of the chunk, in the file
    while True:
        parsed = ahead.next_parsed()
        if parsed is None:
            return
        res = parsed.columns
        if not state.still_valid(interners):
            state = _Stream(ahead.restart(), interners)
        if parsed.reader is not state.reader:  # parsed before the restart: again, in order
            res = state.reader.read(parsed.chunk)
        ahead.top_up()
        state.owned = state.owned_now(interners)  # finish_native drops those it interns checked
        batch = finish_native(
            res,
            parsed.chunk,
            interners,
            errors,
            unknown_types,
            first_line=first_line,
            codes=state.codes,
            owned=state.owned,
        )
        first_line += res["n_lines"]  # a chunk ends at a line end: its '\n's
        state.mark(interners)
        yield batch


class _Stream:
    """A native reader and its codes in the caller's interners, with the interners' sizes after
    the last chunk (a reader's codes stay valid only while the interners keep those names).

    ``owned``: the kinds whose interner was empty when the reader started and has since taken
    only the reader's new names, each as the next code (see :func:`finish_native`)."""

    def __init__(self, reader: Any, interners: Interners) -> None:
        self.reader = reader
        self.codes: ReaderCodes = {}
        self.sizes: dict[str, int] = {}
        self.epochs: dict[str, int] = {}
        self.owned = {kind for kind in INTERNER_KINDS if len(getattr(interners, kind)) == 0}

    def mark(self, interners: Interners) -> None:
        self.sizes = {kind: len(getattr(interners, kind)) for kind in INTERNER_KINDS}
        self.epochs = {kind: getattr(interners, kind).epoch for kind in INTERNER_KINDS}

    def owned_now(self, interners: Interners) -> set[str]:
        """The owned kinds whose interner nothing else changed since the last chunk: it holds
        one name per reader code (no more, no fewer) and no name was forgotten, aliased or
        truncated."""
        return {
            kind
            for kind in self.owned
            if len(getattr(interners, kind)) == len(self.codes.get(kind, _NO_CODES))
            and getattr(interners, kind).epoch == self.epochs.get(kind, getattr(interners, kind).epoch)
        }

    def still_valid(self, interners: Interners) -> bool:
        return all(len(getattr(interners, kind)) >= n for kind, n in self.sizes.items())
