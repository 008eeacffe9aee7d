"""Decode events from JSON, NDJSON and MessagePack bytes into the typed Structs.

Every decoder validates against :data:`affinity_sdk.capture.events.Event` with msgspec and reports bad
input as :class:`~affinity_sdk.errors.SchemaError` in msgspec's words plus where the event sits:
``(line N)`` for NDJSON (1-based), ``$[i]`` in the path for arrays. Batch inputs take

- ``errors="raise"`` (default): the first bad event raises;
- ``errors="skip"``: bad events are dropped but counted (``result.rejects.n_invalid``);
- ``errors="collect"``: bad events are dropped, counted, and ``result.rejects.errors`` lists
  ``(position, message)`` for each of them;

and ``unknown_types="raise"`` (an unknown ``type`` is a bad event, handled by ``errors``) or
``"skip"`` (dropped and counted in ``result.rejects.n_unknown``). Nothing is dropped silently:
``len(result) + n_invalid + n_unknown`` is always the number of events in the input.

A UTF-8 byte order mark (``EF BB BF``, as some Windows tools write) at the start of JSON or
NDJSON input is skipped (:func:`~affinity_sdk.capture.formats.skip_bom`). A key repeated in one
object is not an error: the last value wins, as in msgspec (and in the compiled NDJSON reader,
which hands such lines to msgspec); see ``docs/input.md``.

An event nested deeper than msgspec can decode (it stops at Python's recursion limit, about a
thousand levels, even inside a field that is ignored) is a bad event like any other:
``Nesting too deep ...`` at its line or index, never a ``RecursionError``.

Examples
--------
>>> data = b'{"type":"app_opened","user_id":"u1","timestamp":1700000000000}\\n\\n{"type":"nope"}\\n'
>>> result = decode_ndjson(data, errors="collect")
>>> [e.user_id for e in result], result.rejects.errors
(['u1'], [(2, "Unknown event type 'nope' - at `$.type` (line 3)")])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeAlias, overload

import msgspec

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.formats import skip_bom
from affinity_sdk.errors import SchemaError

__all__ = [
    "DecodeResult",
    "Errors",
    "Rejects",
    "UnknownTypes",
    "decode_json",
    "decode_msgpack",
    "decode_ndjson",
    "iter_lines",
]

Errors: TypeAlias = Literal["raise", "skip", "collect"]
UnknownTypes: TypeAlias = Literal["raise", "skip"]


@dataclass(frozen=True)
class Rejects:
    """What a batch decode left out, so that nothing is dropped silently.

    ``errors`` lists ``(position, message)`` per bad event (filled with ``errors="collect"``),
    ``n_invalid`` counts the bad events dropped (``"skip"`` or ``"collect"``) and ``n_unknown``
    the events of unknown ``type`` dropped with ``unknown_types="skip"``.

    Examples
    --------
    >>> Rejects().total
    0
    """

    errors: list[tuple[int, str]] = field(default_factory=list)
    n_invalid: int = 0
    n_unknown: int = 0

    @property
    def total(self) -> int:
        """Number of events left out for any reason."""
        return self.n_invalid + self.n_unknown


@dataclass(frozen=True)
class DecodeResult(Sequence[ev.Event]):
    """The decoded events (a read-only sequence) and the :class:`Rejects` report.

    Examples
    --------
    >>> result = decode_json(b'{"type":"app_opened","user_id":"u","timestamp":0}')
    >>> len(result), result[0].user_id, result.rejects.total
    (1, 'u', 0)
    """

    events: list[ev.Event]
    rejects: Rejects = field(default_factory=Rejects)
    #: Per event, its position in the input: the 0-based NDJSON line, or the index in an array.
    positions: list[int] = field(default_factory=list)
    #: The input was one event, not an array: its fields are at ``$.field`` (position 0).
    single: bool = False

    @overload
    def __getitem__(self, index: int) -> ev.Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[ev.Event]: ...
    def __getitem__(self, index: int | slice) -> ev.Event | list[ev.Event]:
        return self.events[index]

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[ev.Event]:
        return iter(self.events)


class _Tag(msgspec.Struct):
    type: str


class _Lazy:
    """A msgspec decoder built on first use: the first one over the event union works out every
    event Struct's types, ~7 ms of an import that most programs never need (the compiled reader
    decodes all but the odd NDJSON line). Two threads may both build it; either result serves."""

    __slots__ = ("_build", "_decoder")

    def __init__(self, build: Callable[[], msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]]) -> None:
        self._build = build
        self._decoder: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any] | None = None

    @property
    def decode(self) -> Callable[..., Any]:
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = self._build()
        return decoder.decode


_JSON_EVENT: Final = _Lazy(lambda: msgspec.json.Decoder(ev.Event))
_JSON_TAG: Final = _Lazy(lambda: msgspec.json.Decoder(_Tag))
_JSON_RAW_LIST: Final = _Lazy(lambda: msgspec.json.Decoder(list[msgspec.Raw]))
_MSGPACK_EVENT: Final = _Lazy(lambda: msgspec.msgpack.Decoder(ev.Event))
_MSGPACK_TAG: Final = _Lazy(lambda: msgspec.msgpack.Decoder(_Tag))
_MSGPACK_RAW_LIST: Final = _Lazy(lambda: msgspec.msgpack.Decoder(list[msgspec.Raw]))
_PATH: Final = re.compile(r" - at `\$")
#: The message of an event nested deeper than the decoder can follow.
NESTING_TOO_DEEP: Final = "Nesting too deep (maximum recursion depth exceeded while decoding)"


def _check(errors: str, unknown_types: str) -> None:
    if errors not in ("raise", "skip", "collect"):
        raise ValueError(f"errors must be 'raise', 'skip' or 'collect', not {errors!r}")
    if unknown_types not in ("raise", "skip"):
        raise ValueError(f"unknown_types must be 'raise' or 'skip', not {unknown_types!r}")


def _where(message: str, index: int | None, suffix: str) -> str:
    """Put the event's position into a msgspec message: ``$`` becomes ``$[i]`` for arrays."""
    if index is not None:
        message = _PATH.sub(f" - at `$[{index}]", message, count=1)
        if " - at `$" not in message:
            message += f" - at `$[{index}]`"
    return message + suffix


def _decode_one(
    raw: bytes | memoryview,
    decode: Callable[[bytes | memoryview], ev.Event],
    decode_tag: Callable[[bytes | memoryview], _Tag],
) -> ev.Event | tuple[str, bool]:
    """The event, or ``(message, is_unknown_type)``. Never raises for bad input.

    Beyond the schema, the timestamp must lie in 1900-01-01 .. 2200-01-01 (datetimes can reach
    further than the integer bounds), so that every decoded event also fits an EventBatch.
    """
    try:
        event = decode(raw)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message.startswith("Invalid value ") and message.endswith(" - at `$.type`"):
            try:
                kind = decode_tag(raw).type
            except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):  # pragma: no cover
                return message, False
            if kind not in ev.EVENT_TYPE_CODES:
                return f"Unknown event type {kind!r} - at `$.type`", True
        return message, False
    except msgspec.DecodeError as exc:
        return str(exc), False
    except UnicodeDecodeError as exc:
        # msgspec lets invalid UTF-8 inside strings surface as Python's own error.
        return f"Invalid UTF-8 in a string ({exc.reason} at byte {exc.start})", False
    except RecursionError:
        # msgspec gives up past Python's recursion limit, even inside an ignored field.
        return NESTING_TOO_DEEP, False
    ts = ev.timestamp_ms(event)
    if not ev.MIN_TS_MS <= ts <= ev.MAX_TS_MS:
        return f"Timestamp {ts} ms is outside 1900-01-01 .. 2200-01-01 - at `$.timestamp`", False
    return event


class _Collector:
    """Applies the ``errors`` / ``unknown_types`` policy to one decode at a time."""

    def __init__(self, errors: Errors, unknown_types: UnknownTypes) -> None:
        _check(errors, unknown_types)
        self.errors = errors
        self.unknown_types = unknown_types
        self.events: list[ev.Event] = []
        self.positions: list[int] = []
        self.messages: list[tuple[int, str]] = []
        self.n_invalid = 0
        self.n_unknown = 0

    def add(
        self, outcome: ev.Event | tuple[str, bool], position: int, index: int | None, suffix: str
    ) -> None:
        if not isinstance(outcome, tuple):
            self.events.append(outcome)
            self.positions.append(position)
            return
        message, unknown = outcome
        if unknown and self.unknown_types == "skip":
            self.n_unknown += 1
            return
        self.reject(_where(message, index, suffix), position)

    def reject(self, message: str, position: int) -> None:
        if self.errors == "raise":
            raise SchemaError(message, position)
        self.n_invalid += 1
        if self.errors == "collect":
            self.messages.append((position, message))

    def result(self) -> DecodeResult:
        return DecodeResult(
            self.events, Rejects(self.messages, self.n_invalid, self.n_unknown), self.positions
        )


def iter_lines(data: bytes | bytearray | memoryview | str) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of NDJSON ``data`` as ``(line_index, line)``, 0-based.

    Examples
    --------
    >>> list(iter_lines(b'{}\\n  \\n{"a":1}'))
    [(0, b'{}'), (2, b'{"a":1}')]
    """
    buf = bytes(skip_bom(data.encode() if isinstance(data, str) else data))
    for index, line in enumerate(buf.split(b"\n")):
        if line.strip(b" \t\r"):
            yield index, line


def decode_ndjson(
    data: bytes | bytearray | memoryview | str,
    *,
    errors: Errors = "raise",
    unknown_types: UnknownTypes = "raise",
) -> DecodeResult:
    """Decode newline-delimited JSON, one event per line, blank lines skipped.

    A bad line's message ends with ``(line N)`` (1-based) and its ``position`` is ``N - 1``.

    Examples
    --------
    >>> data = b'{"type":"email_opened","user_id":"u","timestamp":0,"campaign_id":"c1"}\\n'
    >>> decode_ndjson(data)[0].campaign_id
    'c1'
    >>> bad = data + b'{"type":"app_opened","user_id":"u","timestamp":"yesterday"}\\n'
    >>> decode_ndjson(bad)
    Traceback (most recent call last):
    ...
    affinity_sdk.errors.SchemaError: Invalid RFC3339 encoded datetime - at `$.timestamp` (line 2)
    """
    out = _Collector(errors, unknown_types)
    for index, line in iter_lines(data):
        out.add(_decode_one(line, _JSON_EVENT.decode, _JSON_TAG.decode), index, None, f" (line {index + 1})")
    return out.result()


def _decode_document(
    data: bytes | bytearray | memoryview | str,
    errors: Errors,
    unknown_types: UnknownTypes,
    decode: Callable[[bytes | memoryview], ev.Event],
    decode_tag: Callable[[bytes | memoryview], _Tag],
    decode_list: Callable[[bytes | memoryview], list[msgspec.Raw]],
    is_array: Callable[[bytes], bool],
    split: Callable[[bytes], list[memoryview] | None],
) -> DecodeResult:
    out = _Collector(errors, unknown_types)
    buf = data.encode() if isinstance(data, str) else bytes(data)
    if not is_array(buf):
        out.add(_decode_one(buf, decode, decode_tag), 0, None, "")
        return replace(out.result(), single=True)
    items: list[memoryview] | None
    try:
        items = [memoryview(raw) for raw in decode_list(buf)]
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        # The array itself is broken, so no event in it can be trusted: always an error.
        raise SchemaError(f"malformed array of events: {exc}", None) from None
    except RecursionError:
        # msgspec recurses even to skip an element: split the array without recursion, so
        # only the too-deep elements are bad events.
        items = split(buf)
        if items is None:
            raise SchemaError(f"malformed array of events: {NESTING_TOO_DEEP.lower()}", None) from None
    for index, raw in enumerate(items):
        out.add(_decode_one(raw, decode, decode_tag), index, index, "")
    return out.result()


_JSON_TOKENS: Final = re.compile(rb'["\[\]{},]')
_JSON_STRING_END: Final = re.compile(rb'["\\]')
_JSON_SPACE: Final = b" \t\r\n"


def _split_json_array(buf: bytes) -> list[memoryview] | None:
    """The elements of a JSON array as byte slices, found without recursion (brackets matched
    outside strings); ``None`` if the brackets do not frame one array. The elements themselves
    are not validated: each is decoded on its own afterwards."""
    start = len(buf) - len(buf.lstrip(_JSON_SPACE))
    if buf[start : start + 1] != b"[":
        return None
    view = memoryview(buf)
    items: list[memoryview] = []
    open_brackets = bytearray()  # a stack of the closing bracket each open one expects
    item_start = start + 1
    pos = start
    while True:
        token = _JSON_TOKENS.search(buf, pos)
        if token is None:
            return None
        pos = token.end()
        char = buf[token.start()]
        if char == 0x22:  # '"': jump past the closing quote, skipping escaped characters
            while True:
                end = _JSON_STRING_END.search(buf, pos)
                if end is None:
                    return None
                pos = end.end() + (buf[end.start()] == 0x5C)  # a backslash skips one more
                if buf[end.start()] == 0x22:
                    break
        elif char in b"[{":
            open_brackets.append(char + 2)  # "[" + 2 == "]", "{" + 2 == "}"
        elif char in b"]}":
            if not open_brackets or open_brackets.pop() != char:
                return None
            if not open_brackets:
                last = view[item_start : token.start()]
                if bytes(last).strip(_JSON_SPACE):
                    items.append(last)
                elif items:  # a trailing comma: `[1, ]`
                    return None
                break
        elif len(open_brackets) == 1:  # a comma between elements
            item = view[item_start : token.start()]
            if not bytes(item).strip(_JSON_SPACE):
                return None
            items.append(item)
            item_start = token.end()
    if buf[pos:].strip(_JSON_SPACE):
        return None
    return items


#: MessagePack header byte -> (header size, size of a length field, items that follow per
#: length unit); fixed-size types have no length field. Built once.
_MP_FIXED: Final = {
    0xC0: 1, 0xC2: 1, 0xC3: 1,  # nil, false, true
    0xCA: 5, 0xCB: 9,  # float32, float64
    0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,  # uint8..64
    0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9,  # int8..64
    0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18,  # fixext 1..16
}  # fmt: skip
#: bin / str / ext with a length field: (length field size, extra header bytes after it).
_MP_SIZED: Final = {
    0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0),  # bin 8/16/32
    0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),  # ext 8/16/32 (plus the type byte)
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),  # str 8/16/32
}  # fmt: skip
#: array / map with a count field: (count field size, items per count).
_MP_CONTAINERS: Final = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}


def _msgpack_header(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(bytes from ``pos`` to the first nested item or the next value, items nested) of the
    MessagePack value at ``pos``; ``None`` if it is truncated or the byte is never used."""
    if pos >= len(buf):
        return None
    byte = buf[pos]
    if byte <= 0x7F or byte >= 0xE0:  # positive / negative fixint
        return 1, 0
    if byte <= 0x8F:  # fixmap
        return 1, 2 * (byte & 0x0F)
    if byte <= 0x9F:  # fixarray
        return 1, byte & 0x0F
    if byte <= 0xBF:  # fixstr
        return 1 + (byte & 0x1F), 0
    if byte in _MP_FIXED:
        return _MP_FIXED[byte], 0
    if byte in _MP_SIZED:
        width, extra = _MP_SIZED[byte]
        if pos + 1 + width > len(buf):
            return None
        return 1 + width + extra + int.from_bytes(buf[pos + 1 : pos + 1 + width], "big"), 0
    if byte in _MP_CONTAINERS:
        width, per = _MP_CONTAINERS[byte]
        if pos + 1 + width > len(buf):
            return None
        return 1 + width, per * int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
    return None  # 0xC1: never used


def _msgpack_skip(buf: bytes, pos: int) -> int | None:
    """The end of the MessagePack value at ``pos``, found without recursion; ``None`` if broken."""
    pending = 1
    while pending:
        header = _msgpack_header(buf, pos)
        if header is None:
            return None
        size, nested = header
        pos += size
        pending += nested - 1
        if pos > len(buf) or pending > len(buf) - pos:  # each pending item takes >= 1 byte
            return None
    return pos


def _split_msgpack_array(buf: bytes) -> list[memoryview] | None:
    """The elements of a MessagePack array as byte slices, found without recursion; ``None`` if
    ``buf`` is not exactly one well-framed array."""
    header = _msgpack_header(buf, 0)
    if header is None or not _msgpack_is_array(buf):
        return None
    pos, count = header
    view = memoryview(buf)
    items: list[memoryview] = []
    for _ in range(count):
        end = _msgpack_skip(buf, pos)
        if end is None:
            return None
        items.append(view[pos:end])
        pos = end
    return items if pos == len(buf) else None


def decode_json(
    data: bytes | bytearray | memoryview | str,
    *,
    errors: Errors = "raise",
    unknown_types: UnknownTypes = "raise",
) -> DecodeResult:
    """Decode one JSON event (an object) or a JSON array of events.

    In an array, a bad event's path starts with its index (``$[3].product.price``) and its
    ``position`` is that index. A malformed array (broken JSON around the events) always
    raises, whatever ``errors`` says, because no event in it can be located.

    Examples
    --------
    >>> raw = b'[{"type":"app_opened","user_id":"a","timestamp":0},{"type":"app_opened","timestamp":0}]'
    >>> result = decode_json(raw, errors="collect")
    >>> len(result), result.rejects.errors
    (1, [(1, 'Object missing required field `user_id` - at `$[1]`')])
    """
    return _decode_document(
        skip_bom(data.encode() if isinstance(data, str) else data),
        errors,
        unknown_types,
        _JSON_EVENT.decode,
        _JSON_TAG.decode,
        _JSON_RAW_LIST.decode,
        lambda buf: buf.lstrip(b" \t\r\n")[:1] == b"[",
        _split_json_array,
    )


def _msgpack_is_array(buf: bytes) -> bool:
    # fixarray 0x90-0x9f, array16 0xdc, array32 0xdd
    return bool(buf) and (0x90 <= buf[0] <= 0x9F or buf[0] in (0xDC, 0xDD))


def decode_msgpack(
    data: bytes | bytearray | memoryview,
    *,
    errors: Errors = "raise",
    unknown_types: UnknownTypes = "raise",
) -> DecodeResult:
    """Decode one MessagePack event (a map) or an array of events.

    Timestamps may be integers (epoch ms), RFC 3339 strings or MessagePack timestamp extensions.

    Examples
    --------
    >>> event = ev.AppOpened(user_id="u", timestamp=1_700_000_000_000)
    >>> decode_msgpack(msgspec.msgpack.encode([event, event]))[:] == [event, event]
    True
    """
    return _decode_document(
        data,
        errors,
        unknown_types,
        _MSGPACK_EVENT.decode,
        _MSGPACK_TAG.decode,
        _MSGPACK_RAW_LIST.decode,
        _msgpack_is_array,
        _split_msgpack_array,
    )
