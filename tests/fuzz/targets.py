"""Fuzz target bodies: one per decoder / loader, each calling the public entry point on arbitrary
bytes and letting only the documented exception through (anything else is a finding).

They take plain ``bytes`` so that ``run.py`` can drive them with atheris (coverage-guided) and
``tests/test_reliability.py`` with hypothesis; neither tool is imported here.

=====================  ==========================================================  ================
target                 entry point                                                 documented error
=====================  ==========================================================  ================
``json``               ``decode_json(data, errors=...)``                            ``SchemaError``
``ndjson``             ``decode_ndjson`` and ``EventBatch.from_ndjson`` (C++ reader)  ``SchemaError``
``msgpack``            ``decode_msgpack(data, errors=...)``                         ``SchemaError``
``segment``            the Segment / RudderStack adapter (``affinity_sdk.capture.segment_adapter``)  ``SchemaError``
``config``             ``ScoringConfig.from_toml`` / ``from_json``                  ``ConfigError``
``state``              ``Scorer.load`` on a file holding the bytes                  ``StateError``
``scorer``             ``Scorer.ingest(data, errors="skip")``, then ``score()``     ``SchemaError``
=====================  ==========================================================  ================
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from datetime import datetime
from typing import Final

import msgspec
import numpy as np

from affinity_sdk import ConfigError, EventBatch, SchemaError, Scorer, ScoringConfig, StateError
from affinity_sdk._backends import native
from affinity_sdk.capture.decode import DecodeResult, decode_json, decode_msgpack, decode_ndjson
from affinity_sdk.capture.segment_adapter import from_segment

_MODES: Final = ("raise", "skip", "collect")
_SCRATCH: Final = tempfile.mkdtemp(prefix="affinity-fuzz-")


def _mode(data: bytes) -> str:
    return _MODES[data[0] % 3] if data else "raise"


def _check_accounting(result: DecodeResult, n_input: int | None, mode: str) -> None:
    """Every input event is either decoded or counted as rejected, in input order."""
    if n_input is not None:
        assert len(result) + result.rejects.total == n_input, "decoder lost or invented an event"
    assert len(result.positions) == len(result), "an event without its input position"
    assert result.positions == sorted(set(result.positions)), "positions out of order or repeated"
    assert all(0 <= p < (n_input if n_input is not None else math.inf) for p in result.positions)
    if mode == "raise":
        assert result.rejects.total == 0, "errors='raise' dropped an event instead of raising"
    if mode == "skip":
        assert not result.rejects.errors, "errors='skip' collected error messages"
    for event in result:
        assert isinstance(event.user_id, str) and isinstance(event.timestamp, (int, datetime))


#: A UTF-8 byte order mark: the decoders skip one at the very start of their input.
_BOM = b"\xef\xbb\xbf"


def _json_items(data: bytes) -> int | None:
    """How many events a JSON document holds (1 for a single object), ``None`` if unknown."""
    data = data.removeprefix(_BOM)
    if data.lstrip(b" \t\r\n")[:1] != b"[":
        return 1
    try:
        return len(msgspec.json.decode(data, type=list[msgspec.Raw]))
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError):
        return None  # too deep for msgspec: the decoder splits it itself


def fuzz_json(data: bytes) -> None:
    mode = _mode(data)
    try:
        result = decode_json(data, errors=mode)  # type: ignore[arg-type]
    except SchemaError:
        return
    n_input = _json_items(data)
    opening = data.removeprefix(_BOM).lstrip(b" \t\r\n")[:1]
    assert result.single == (opening != b"["), "array / single event mix-up"
    _check_accounting(result, n_input, mode)


def fuzz_ndjson(data: bytes) -> None:
    mode = _mode(data)
    try:
        result = decode_ndjson(data, errors=mode)  # type: ignore[arg-type]
    except SchemaError:
        result = None
    lines = sum(1 for line in data.removeprefix(_BOM).split(b"\n") if line.strip(b" \t\r"))
    if result is not None:
        assert len(result) + result.rejects.total == lines, "NDJSON decoder lost an event"
    # The C++ reader must agree with msgspec line for line.
    try:
        batch = EventBatch.from_ndjson(data, errors="collect")
    except SchemaError:  # pragma: no cover - collect never raises per line
        return
    if result is not None and mode != "raise":
        assert len(batch) == len(result), "native and msgspec NDJSON readers disagree"
    # Without item names (a signals-only store), on two parts: the same slots, no item codes.
    module = native()
    if module is not None and hasattr(module, "NdjsonReader"):
        full = module.read_ndjson(data, threads=1, min_part_bytes=1 << 20)
        lean = module.NdjsonReader(2, 1, item_names=False).read(data)
        for key in ("status", "user", "ts_ms", "item_slot", "item_price"):
            assert lean[key].tobytes() == full[key].tobytes(), f"item_names=False changed {key}"
        assert (lean["item_product"] == -1).all() and not lean["products"][0], "item names interned"


def fuzz_msgpack(data: bytes) -> None:
    try:
        decode_msgpack(data, errors=_mode(data))  # type: ignore[arg-type]
    except SchemaError:
        return


def fuzz_segment(data: bytes) -> None:
    # Imported directly, not guarded: a renamed or broken adapter must fail the target loudly
    # rather than turn it into a no-op.
    mode = _mode(data)
    try:
        result = from_segment(data, errors=mode)  # type: ignore[arg-type]
    except SchemaError:
        return
    _check_accounting(result, None, mode)


def fuzz_config(data: bytes) -> None:
    for parse in (ScoringConfig.from_toml, ScoringConfig.from_json):
        try:
            cfg = parse(data)
        except ConfigError:
            continue
        assert all(math.isfinite(w) for w in cfg.weights)
        assert all(h >= 0 for h in cfg.half_lives_s)


def fuzz_state(data: bytes) -> None:
    path = os.path.join(_SCRATCH, f"state-{os.getpid()}.afs")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        scorer = Scorer.load(path, backend="reference")
    except StateError:
        return
    # A file that loads must be usable: scoring gives finite numbers.
    assert np.isfinite(scorer.score().raw_score).all()


_SCORER: Scorer | None = None


def fuzz_scorer(data: bytes) -> None:
    global _SCORER
    if _SCORER is None:
        _SCORER = Scorer(backend="reference")
    fmt = ("ndjson", "json", "msgpack")[data[0] % 3] if data else "ndjson"
    try:
        _SCORER.ingest(data, format=fmt, errors="skip")  # type: ignore[arg-type]
    except SchemaError:
        return  # a malformed JSON / MessagePack array cannot be split into events
    result = _SCORER.score()
    assert np.isfinite(result.raw_score).all() and np.isfinite(result.decayed).all()


TARGETS: Final[dict[str, Callable[[bytes], None]]] = {
    "json": fuzz_json,
    "ndjson": fuzz_ndjson,
    "msgpack": fuzz_msgpack,
    "segment": fuzz_segment,
    "config": fuzz_config,
    "state": fuzz_state,
    "scorer": fuzz_scorer,
}
