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
from typing import Final, Literal, TypeAlias, overload

import msgspec

from affinity_sdk.capture import events as ev
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


_JSON_EVENT: Final = msgspec.json.Decoder(ev.Event)
_JSON_TAG: Final = msgspec.json.Decoder(_Tag)
_JSON_RAW_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])
_MSGPACK_EVENT: Final = msgspec.msgpack.Decoder(ev.Event)
_MSGPACK_TAG: Final = msgspec.msgpack.Decoder(_Tag)
_MSGPACK_RAW_LIST: Final = msgspec.msgpack.Decoder(list[msgspec.Raw])
_PATH: Final = re.compile(r" - at `\$")


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
            except (msgspec.MsgspecError, UnicodeDecodeError):  # pragma: no cover - decoded above
                return message, False
            if kind not in ev.EVENT_TYPE_CODES:
                return f"Unknown event type {kind!r} - at `$.type`", True
        return message, False
    except msgspec.DecodeError as exc:
        return str(exc), False
    except UnicodeDecodeError as exc:
        # msgspec lets invalid UTF-8 inside strings surface as Python's own error.
        return f"Invalid UTF-8 in a string ({exc.reason} at byte {exc.start})", False
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
    buf = data.encode() if isinstance(data, str) else bytes(data)
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
) -> DecodeResult:
    out = _Collector(errors, unknown_types)
    buf = data.encode() if isinstance(data, str) else bytes(data)
    if not is_array(buf):
        out.add(_decode_one(buf, decode, decode_tag), 0, None, "")
        return replace(out.result(), single=True)
    try:
        items = decode_list(buf)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        # The array itself is broken, so no event in it can be trusted: always an error.
        raise SchemaError(f"malformed array of events: {exc}", None) from None
    for index, raw in enumerate(items):
        out.add(_decode_one(memoryview(raw), decode, decode_tag), index, index, "")
    return out.result()


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
        data,
        errors,
        unknown_types,
        _JSON_EVENT.decode,
        _JSON_TAG.decode,
        _JSON_RAW_LIST.decode,
        lambda buf: buf.lstrip(b" \t\r\n")[:1] == b"[",
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
    )
