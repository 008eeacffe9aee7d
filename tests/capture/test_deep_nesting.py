"""Input nested deeper than msgspec can follow (about a thousand levels, Python's recursion limit)
is a located bad event, never a ``RecursionError``: ``errors="skip"`` / ``"collect"`` drop just
that event and keep the others; a config file is a ConfigError, a state file a StateError."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import msgspec
import numpy as np
import pytest

from affinity_sdk import Scorer
from affinity_sdk._persist import FORMAT_VERSION, MAGIC, read_container, write_container
from affinity_sdk.capture.decode import NESTING_TOO_DEEP, decode_json, decode_msgpack, decode_ndjson
from affinity_sdk.cli import main
from affinity_sdk.config import AffinityConfig, ScoringConfig
from affinity_sdk.errors import ConfigError, SchemaError, StateError
from affinity_sdk.ingest.batch import EventBatch

DEPTH = 1_000
T0 = 1_767_225_600_000
GOOD = {"type": "app_opened", "user_id": "ann", "timestamp": T0}
GOOD_LINE = msgspec.json.encode(GOOD)
# A valid event whose ignored field holds 1,000 nested arrays: a ~2 KB line.
DEEP_LINE = (
    msgspec.json.encode({**GOOD, "user_id": "deep"})[:-1] + b',"junk":' + b"[" * DEPTH + b"]" * DEPTH + b"}"
)
LATE_LINE = msgspec.json.encode({**GOOD, "user_id": "bob", "timestamp": T0 + 1})
NDJSON = GOOD_LINE + b"\n" + DEEP_LINE + b"\n" + LATE_LINE + b"\n"


def test_the_deep_line_really_is_too_deep_for_msgspec() -> None:
    assert 2_000 <= len(DEEP_LINE) <= 2_200
    with pytest.raises(RecursionError):
        msgspec.json.decode(DEEP_LINE)


def test_ndjson_decoder_skips_just_the_deep_line() -> None:
    result = decode_ndjson(NDJSON, errors="collect")
    assert [e.user_id for e in result] == ["ann", "bob"]
    assert result.rejects.errors == [(1, f"{NESTING_TOO_DEEP} (line 2)")]
    assert decode_ndjson(NDJSON, errors="skip").rejects.n_invalid == 1
    with pytest.raises(SchemaError, match=r"^Nesting too deep .*\(line 2\)$") as info:
        decode_ndjson(NDJSON)
    assert info.value.position == 1


@pytest.mark.parametrize("reader", ["python", "native", "auto"])
def test_event_batch_from_ndjson_skips_just_the_deep_line(reader: str) -> None:
    if reader == "native":
        pytest.importorskip("affinity_sdk._native")
    batch = EventBatch.from_ndjson(NDJSON, errors="collect", reader=reader)  # type: ignore[arg-type]
    assert len(batch) == 2
    assert batch.rejects.errors == [(1, f"{NESTING_TOO_DEEP} (line 2)")]


@pytest.mark.parametrize("errors", ["skip", "collect"])
def test_scorer_ingest_keeps_the_good_lines(errors: str) -> None:
    scorer = Scorer(backend="reference")
    report = scorer.ingest(NDJSON, errors=errors)  # type: ignore[arg-type]
    assert report.accepted == 2 and report.n_rejected == 1
    assert sorted(scorer.score().user_ids) == ["ann", "bob"]
    if errors == "collect":
        assert report.rejected == [(1, f"{NESTING_TOO_DEEP} (line 2)")]


def test_scorer_ingest_raise_names_the_line_and_ingests_nothing() -> None:
    scorer = Scorer(backend="reference")
    with pytest.raises(SchemaError, match=r"\(line 2\)"):
        scorer.ingest(NDJSON)
    assert scorer.events_ingested == 0


def test_json_array_and_single_event() -> None:
    data = b"[" + GOOD_LINE + b", " + DEEP_LINE + b" ,\n" + LATE_LINE + b"]"
    result = decode_json(data, errors="collect")
    assert [e.user_id for e in result] == ["ann", "bob"]
    assert result.positions == [0, 2]
    assert result.rejects.errors == [(1, f"{NESTING_TOO_DEEP} - at `$[1]`")]
    with pytest.raises(SchemaError, match=r"Nesting too deep"):
        decode_json(DEEP_LINE)
    assert decode_json(DEEP_LINE, errors="skip").rejects.n_invalid == 1
    # an element that is itself 1,000 arrays deep: the array is split without recursion
    result = decode_json(b"[" + GOOD_LINE + b"," + b"[" * DEPTH + b"]" * DEPTH + b"]", errors="collect")
    # (msgspec rejects it as "not an object" at its first bracket, before it recurses)
    assert len(result) == 1 and [p for p, _ in result.rejects.errors] == [1]
    assert result.rejects.errors[0][1].endswith(" - at `$[1]`")
    scorer = Scorer(backend="reference")
    report = scorer.ingest(data, format="json", errors="skip")
    assert report.accepted == 2 and report.n_rejected == 1


@pytest.mark.parametrize(
    "broken",
    [
        b"[" + DEEP_LINE,  # never closed
        b"[" + DEEP_LINE + b"]]",  # closed twice
        b"[" + DEEP_LINE + b",]",  # a trailing comma
        b"[" + DEEP_LINE + b"} ",  # the wrong bracket
        b'["' + DEEP_LINE + b"]",  # a string never closed
    ],
)
def test_a_broken_deep_array_is_still_a_malformed_array(broken: bytes) -> None:
    with pytest.raises(SchemaError, match=r"^malformed array of events"):
        decode_json(broken, errors="collect")


def _msgpack_deep() -> bytes:
    """A MessagePack event map with a 1,000-deep array in an extra field."""
    head = msgspec.msgpack.encode({**GOOD, "user_id": "deep", "junk": None})
    assert head.endswith(b"\xc0")
    return head[:-1] + b"\x91" * DEPTH + b"\xc0"


def test_msgpack_array_and_single_event() -> None:
    good = msgspec.msgpack.encode(GOOD)
    late = msgspec.msgpack.encode({**GOOD, "user_id": "bob"})
    deep = _msgpack_deep()
    with pytest.raises(RecursionError):
        msgspec.msgpack.decode(deep)
    for header in (b"\x93", b"\xdc\x00\x03", b"\xdd\x00\x00\x00\x03"):  # fixarray, array16, array32
        result = decode_msgpack(header + good + deep + late, errors="collect")
        assert [e.user_id for e in result] == ["ann", "bob"]
        assert result.rejects.errors == [(1, f"{NESTING_TOO_DEEP} - at `$[1]`")]
    result = decode_msgpack(deep, errors="collect")
    assert len(result) == 0 and result.rejects.errors == [(0, NESTING_TOO_DEEP)]
    for broken in (b"\x94" + good + deep + late, b"\x92" + good + deep + late, b"\x93" + good + deep[:-1]):
        with pytest.raises(SchemaError, match=r"^malformed array of events"):
            decode_msgpack(broken, errors="collect")
    scorer = Scorer(backend="reference")
    report = scorer.ingest(b"\x93" + good + deep + late, format="msgpack", errors="collect")
    assert report.accepted == 2 and report.rejected == [(1, f"{NESTING_TOO_DEEP} - at `$[1]`")]


def test_config_loader_turns_deep_nesting_into_config_error(tmp_path: Path) -> None:
    signals = '[signals.app_opened]\nweight = 1.0\nhalf_life = "1d"\n'
    toml = signals + "[extra]\nx = " + "[" * DEPTH + "]" * DEPTH + "\n"
    with pytest.raises(ConfigError, match=r"c\.toml: invalid TOML: nesting too deep"):
        ScoringConfig.from_toml(toml, source="c.toml")
    (tmp_path / "c.json").write_bytes(b'{"extra": ' + b"[" * DEPTH + b"]" * DEPTH + b"}")
    with pytest.raises(ConfigError, match="invalid JSON: nesting too deep"):
        AffinityConfig.load(tmp_path / "c.json")  # its file type ignores unknown keys
    (tmp_path / "c.toml").write_text(toml)
    with pytest.raises(ConfigError, match="nesting too deep"):
        ScoringConfig.load(tmp_path / "c.toml")


def test_state_header_nested_too_deep_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "x.afs"
    write_container(path, "demo", {"n": 1}, {"a": np.arange(3)})
    # The same container with a header value 1,000 arrays deep, checksum and all.
    meta = msgspec.msgpack.encode({"kind": "demo", "header": {"n": None}, "arrays": []})
    meta = meta.replace(b"\xa1n\xc0", b"\xa1n" + b"\x91" * DEPTH + b"\xc0")
    body = struct.pack("<8sIQ", MAGIC, FORMAT_VERSION, len(meta)) + meta
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(StateError, match="malformed header: nesting too deep"):
        read_container(path, "demo")


def test_cli_skips_the_deep_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(NDJSON)
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(events), "--errors", "skip", "--out", str(out)]) == 0
    assert {msgspec.json.decode(line)["user_id"] for line in out.read_bytes().splitlines()} == {"ann", "bob"}
    assert "rejected 1 bad events" in capsys.readouterr().err
    assert main(["score", str(events), "--errors", "collect", "--out", str(out)]) == 0
    assert f"line 2: {NESTING_TOO_DEEP} (line 2)" in capsys.readouterr().err
    assert main(["score", str(events), "--out", str(tmp_path / "other.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"affinity: error: {NESTING_TOO_DEEP} (line 2)"]
    config = tmp_path / "deep.toml"
    config.write_text(
        '[signals.app_opened]\nweight = 1.0\nhalf_life = "1d"\n[x]\ny = ' + "[" * DEPTH + "]" * DEPTH
    )
    assert main(["score", str(events), "--errors", "skip", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("invalid TOML: nesting too deep")
