"""Struct-level decoders: exact error strings, errors= modes, junk never escapes as another error."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk.capture import events as ev
from affinity_sdk.capture.decode import decode_json, decode_msgpack, decode_ndjson
from affinity_sdk.capture.segment_adapter import from_segment
from affinity_sdk.errors import SchemaError
from affinity_sdk.ingest.batch import EventBatch

GOOD = b'{"type":"app_opened","user_id":"u","timestamp":1700000000000}'
BAD_PRICE = (
    b'{"type":"product_viewed","user_id":"u","timestamp":1,'
    b'"product":{"product_id":"p","category":"c","brand":"b","price":-1}}'
)


def test_ndjson_error_names_line_and_field() -> None:
    data = GOOD + b"\n\n" + BAD_PRICE + b"\n"
    with pytest.raises(SchemaError) as info:
        decode_ndjson(data)
    assert str(info.value) == "Expected `float` >= 0.0 - at `$.product.price` (line 3)"
    assert info.value.position == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"type":"nope","user_id":"u","timestamp":1}', "Unknown event type 'nope' - at `$.type` (line 1)"),
        (b'{"user_id":"u","timestamp":1}', "Object missing required field `type` (line 1)"),
        (b'{"type":"app_opened","timestamp":1}', "Object missing required field `user_id` (line 1)"),
        (
            b'{"type":"app_opened","user_id":"u","timestamp":1.5}',
            "Expected `int | datetime`, got `float` - at `$.timestamp` (line 1)",
        ),
        (
            b'{"type":"app_opened","user_id":"u","timestamp":"2024-01-01T00:00:00"}',
            "Expected `datetime` with a timezone component - at `$.timestamp` (line 1)",
        ),
        (
            b'{"type":"app_opened","user_id":"u","timestamp":1,"channel":"fax"}',
            "Invalid enum value 'fax' - at `$.channel` (line 1)",
        ),
        (b'{"type":"app_opened","user_id":"u","timestamp":1', "Input data was truncated (line 1)"),
        (
            b'{"type":"app_opened","user_id":"u","timestamp":"0001-01-01T00:00:00Z"}',
            "Timestamp -62135596800000 ms is outside 1900-01-01 .. 2200-01-01 - at `$.timestamp` (line 1)",
        ),
    ],
)
def test_exact_messages(line: bytes, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        decode_ndjson(line)
    assert str(info.value) == message
    # The batch reader (native or not) reports the very same text.
    with pytest.raises(SchemaError) as batch_info:
        EventBatch.from_ndjson(line)
    assert str(batch_info.value) == message


def test_modes_skip_collect_and_unknown_types() -> None:
    unknown = b'{"type":"signed_up","user_id":"u","timestamp":1}'
    data = b"\n".join([GOOD, BAD_PRICE, unknown, GOOD])
    with pytest.raises(SchemaError):
        decode_ndjson(data, unknown_types="skip")
    skipped = decode_ndjson(data, errors="skip", unknown_types="skip")
    assert len(skipped) == 2 and skipped.rejects.n_invalid == 1 and skipped.rejects.n_unknown == 1
    assert skipped.rejects.errors == []
    collected = decode_ndjson(data, errors="collect")
    assert len(collected) == 2
    assert collected.rejects.errors == [
        (1, "Expected `float` >= 0.0 - at `$.product.price` (line 2)"),
        (2, "Unknown event type 'signed_up' - at `$.type` (line 3)"),
    ]
    with pytest.raises(ValueError, match="errors must be"):
        decode_ndjson(data, errors="ignore")  # type: ignore[arg-type]


def test_arrays_put_the_index_in_the_path() -> None:
    data = b"[" + GOOD + b"," + BAD_PRICE + b"]"
    result = decode_json(data, errors="collect")
    assert result.rejects.errors == [(1, "Expected `float` >= 0.0 - at `$[1].product.price`")]
    packed = msgspec.msgpack.encode([msgspec.json.decode(GOOD), msgspec.json.decode(BAD_PRICE)])
    assert decode_msgpack(packed, errors="collect").rejects.errors == result.rejects.errors
    with pytest.raises(SchemaError, match="truncated"):
        decode_json(b"[" + GOOD, errors="collect")


def test_invalid_utf8_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="Invalid UTF-8"):
        decode_ndjson(b'{"type":"app_opened","user_id":"\xff","timestamp":1}')


def _only_schema_errors(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except SchemaError:
        pass


junk = st.binary(max_size=200) | st.sampled_from([GOOD, BAD_PRICE]).flatmap(
    lambda base: st.tuples(st.integers(0, len(base)), st.binary(max_size=4)).map(
        lambda cut: base[: cut[0]] + cut[1] + base[cut[0] + len(cut[1]) :]
    )
)


@settings(max_examples=200, deadline=None)
@given(junk)
def test_junk_never_raises_anything_else(data: bytes) -> None:
    for mode in ("raise", "skip", "collect"):
        _only_schema_errors(lambda: decode_ndjson(data, errors=mode))  # type: ignore[arg-type]  # noqa: B023
        _only_schema_errors(lambda: decode_json(data, errors=mode))  # type: ignore[arg-type]  # noqa: B023
        _only_schema_errors(lambda: decode_msgpack(data, errors=mode))  # type: ignore[arg-type]  # noqa: B023
        _only_schema_errors(lambda: from_segment(data, errors=mode))  # type: ignore[arg-type]  # noqa: B023
        _only_schema_errors(lambda: EventBatch.from_ndjson(data, errors=mode))  # type: ignore[arg-type]  # noqa: B023


def test_no_event_is_dropped_silently() -> None:
    lines = [GOOD, BAD_PRICE, b'{"type":"x","user_id":"u","timestamp":1}', b"garbage", GOOD]
    result = decode_ndjson(b"\n".join(lines), errors="skip", unknown_types="skip")
    assert len(result) + result.rejects.total == len(lines)
    assert isinstance(result[0], ev.AppOpened)


def test_decoders_are_built_on_first_use_not_at_import() -> None:
    # Building the first decoder over the event union costs milliseconds that a program whose
    # lines all go through the compiled reader never needs.
    program = (
        "import affinity_sdk.cli, affinity_sdk.capture.decode as d;"
        "print(d._JSON_EVENT._decoder is None, d._MSGPACK_EVENT._decoder is None);"
        'd.decode_ndjson(b\'{"type":"app_opened","user_id":"u","timestamp":1}\');'
        "print(d._JSON_EVENT._decoder is None)"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "False"]
