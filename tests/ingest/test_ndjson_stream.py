"""A file streamed through the NDJSON reader in chunks equals one batch of the whole file."""

from __future__ import annotations

import csv
import io
import mmap
import os
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from _event_strategies import events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affinity_sdk._backends import native
from affinity_sdk.cli import main
from affinity_sdk.errors import AffinityError, SchemaError
from affinity_sdk.ingest import read_ahead
from affinity_sdk.ingest.batch import EVENT_COLUMNS, ITEM_COLUMNS, EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.ingest.ndjson import (
    RAMP_PIECES,
    PageWindow,
    iter_chunks,
    map_chunks,
    piece_target,
    read_ndjson_file,
)

HAS_READER = native() is not None and hasattr(native(), "NdjsonReader")
READERS = ["python", pytest.param("native", marks=pytest.mark.skipif(not HAS_READER, reason="no _native"))]
KINDS = ("users", "products", "categories", "brands", "campaigns")


def joined(batches: list[EventBatch]) -> dict[str, Any]:
    """The batches' columns end to end (item rows renumbered), their sources and rejects."""
    out: dict[str, Any] = {}
    for name in EVENT_COLUMNS:
        out[name] = np.concatenate([getattr(b, name) for b in batches])
    offsets = np.cumsum([0] + [len(b) for b in batches[:-1]])
    out["item_event"] = np.concatenate([b.item_event + o for b, o in zip(batches, offsets, strict=True)])
    for name in ITEM_COLUMNS:
        if name != "item_event":
            out[name] = np.concatenate([getattr(b, name) for b in batches])
    out["source"] = np.concatenate([b.source.index for b in batches if b.source is not None])
    out["errors"] = [e for b in batches for e in b.rejects.errors]
    out["n_invalid"] = sum(b.rejects.n_invalid for b in batches)
    out["n_unknown"] = sum(b.rejects.n_unknown for b in batches)
    return out


def assert_stream_equals_whole(
    path: Path, chunk_bytes: int, reader: str, background: bool, **kw: Any
) -> None:
    data = path.read_bytes()
    whole_names, stream_names = Interners(), Interners()
    whole = EventBatch.from_ndjson(data, whole_names, reader=reader, **kw)  # type: ignore[arg-type]
    stream = read_ndjson_file(
        path, stream_names, chunk_bytes=chunk_bytes, reader=reader, background=background, **kw
    )  # type: ignore[arg-type]
    batches = list(stream)
    assert batches, "a file with events gives at least one batch"
    got = joined(batches)
    want = joined([whole])
    for name in (*EVENT_COLUMNS, *ITEM_COLUMNS, "source"):
        assert got[name].dtype == want[name].dtype, name
        assert got[name].tobytes() == want[name].tobytes(), name  # bitwise, NaN included
    assert (got["errors"], got["n_invalid"], got["n_unknown"]) == (
        want["errors"],
        want["n_invalid"],
        want["n_unknown"],
    )
    for kind in KINDS:
        assert getattr(stream_names, kind) == getattr(whole_names, kind), kind


mutations = st.sampled_from([b'"', b"\\", b"}", b",", b"\xff", b"\\u00e9", b"null", b"1e5"])


@pytest.mark.parametrize("reader", READERS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    evs=st.lists(events, min_size=1, max_size=14),
    edits=st.lists(st.tuples(st.integers(0, 13), st.integers(0, 400), mutations), max_size=3),
    blanks=st.lists(st.integers(0, 13), max_size=3),
    chunk_bytes=st.integers(1, 700),
    background=st.booleans(),
)
def test_chunks_equal_one_batch_of_the_file(
    tmp_path: Path,
    reader: str,
    evs: list[object],
    edits: list[tuple[int, int, bytes]],
    blanks: list[int],
    chunk_bytes: int,
    background: bool,
) -> None:
    lines = [msgspec.json.encode(e) for e in evs]
    for which, at, junk in edits:  # lines the C++ reader flags or msgspec rejects
        i = which % len(lines)
        at %= len(lines[i]) + 1
        lines[i] = lines[i][:at] + junk + lines[i][at + len(junk) :]
    for at in blanks:
        lines.insert(at % (len(lines) + 1), b"  ")
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines))
    assert_stream_equals_whole(path, chunk_bytes, reader, background, errors="collect", unknown_types="skip")


@pytest.mark.parametrize("reader", READERS)
def test_raise_names_the_line_in_the_whole_file(tmp_path: Path, reader: str) -> None:
    good = b'{"type":"app_opened","user_id":"u","timestamp":1}\n'
    path = tmp_path / "e.ndjson"
    path.write_bytes(good * 5 + b'{"type":"app_opened"}\n' + good)
    with pytest.raises(SchemaError, match=r"\(line 6\)") as info:
        list(read_ndjson_file(path, Interners(), chunk_bytes=60, reader=reader))  # type: ignore[arg-type]
    assert info.value.position == 5


@pytest.mark.skipif(not HAS_READER, reason="no _native")
def test_interners_that_shrink_between_chunks_restart_the_reader(tmp_path: Path) -> None:
    lines = [
        b'{"type":"app_opened","user_id":"%s","timestamp":1}' % u for u in (b"a", b"b", b"c", b"a", b"b")
    ]
    path = tmp_path / "e.ndjson"
    path.write_bytes(b"\n".join(lines))
    names = Interners()
    users = []
    for batch in read_ndjson_file(path, names, chunk_bytes=len(lines[0]) + 1, reader="native"):
        users.append(names.users.names[int(batch.user[0])])
        if len(users) == 2:
            names.users.truncate(0)  # e.g. a rolled-back ingest took back what was interned
    assert users == ["a", "b", "c", "a", "b"]


@pytest.mark.skipif(not HAS_READER, reason="no _native")
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=14),
    st.lists(st.integers(0, 14), max_size=3),
)
def test_a_restart_with_chunks_parsed_ahead_reads_them_again_in_order(
    tmp_path: Path, users: list[str], cuts: list[int]
) -> None:
    # The worker parses chunks ahead of the one handed out; when the interners shrink, those it
    # parsed with the old reader are read again by the new one, in file order, before it reads
    # any further (else its codes would follow another first-seen order).
    lines = [b'{"type":"app_opened","user_id":"u-%s","timestamp":1}' % u.encode() for u in users]
    path = tmp_path / "e.ndjson"
    path.write_bytes(b"\n".join(lines))
    names = Interners()
    seen = []
    for k, batch in enumerate(
        read_ndjson_file(path, names, chunk_bytes=len(lines[0]) + 1, reader="native", threads=2)
    ):
        seen.append(names.users.names[int(batch.user[0])])
        if k in cuts:
            names.users.truncate(0)  # e.g. a rolled-back ingest took back what was interned
    assert seen == [f"u-{u}" for u in users]


def test_iter_chunks_keeps_every_byte_and_grows_for_long_lines() -> None:
    data = b"x" * 50 + b"\n" + b"yy\n\n" + b"z" * 20
    chunks = [bytes(c) for c in iter_chunks(io.BytesIO(data), 8)]
    # the buffer doubles to 64 bytes for the 51-byte line, then cuts at its last line end
    assert chunks == [data[:55], data[55:]]
    assert [bytes(c) for c in iter_chunks(io.BytesIO(b"a\nb\nc"), 2)] == [b"a\n", b"b\n", b"c"]


def test_iter_chunks_with_two_buffers_keeps_the_last_piece_intact() -> None:
    data = b"".join(b"line %d\n" % i for i in range(50))
    pieces = iter_chunks(io.BytesIO(data), 16, buffers=2)
    seen = []
    previous = next(pieces)
    for piece in pieces:  # the piece before is still readable while the next one is filled
        seen.append(bytes(previous))
        previous = piece
    seen.append(bytes(previous))
    assert b"".join(seen) == data and all(p.endswith(b"\n") for p in seen)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30), st.integers(1, 64))
def test_map_chunks_cuts_at_line_ends_and_keeps_every_byte(
    tmp_path: Path, lines: list[bytes], size: int
) -> None:
    data = b"\n".join(lines)
    path = tmp_path / "m.ndjson"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        pieces = map_chunks(fh, size)
        if not data:
            assert pieces is None  # an empty file has nothing to map: iter_chunks reads it
            return
        assert pieces is not None
        got = list(pieces)  # held past the end (and past the dropped pages): still readable
    assert b"".join(got) == data
    for piece in got[:-1]:
        # a piece ends at a line end, and is longer than `size` only as one whole line
        assert bytes(piece).endswith(b"\n")
        assert len(piece) <= size or bytes(piece).count(b"\n") == 1
    # and it ends at the last line end that fits, where one does
    at = 0
    for piece in got[:-1]:
        assert len(piece) == (data.rfind(b"\n", at, at + size) + 1 or at + len(piece)) - at
        at += len(piece)
    assert len(data) - at == len(got[-1])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), min_size=1, max_size=60),
    st.integers(1, 64),
)
def test_ramped_pieces_aim_at_piece_target(tmp_path: Path, lines: list[bytes], size: int) -> None:
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "r.ndjson"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        pieces = map_chunks(fh, size, ramp=True)
        assert pieces is not None
        got = [bytes(p) for p in pieces]
    assert b"".join(got) == data
    at = 0
    ramped = len(data) > RAMP_PIECES * size  # a smaller file keeps its plain cuts
    for k, piece in enumerate(got[:-1]):
        target = piece_target(k, len(data) - at, size) if ramped else size
        assert piece.endswith(b"\n")
        # the last line end within the target, or one whole line longer than it
        assert len(piece) == (data.rfind(b"\n", at, at + target) + 1 or at + len(piece)) - at
        at += len(piece)
    assert len(data) - at == len(got[-1])


def test_piece_target_ramps_up_and_down() -> None:
    chunk = 16 << 20
    assert [piece_target(k, 10 * chunk, chunk) for k in range(5)] == [
        chunk // 8,
        chunk // 4,
        chunk // 2,
        chunk,
        chunk,
    ]
    # never more than half of what is left, never under an eighth of a chunk
    assert piece_target(9, chunk, chunk) == chunk // 2
    assert piece_target(9, chunk // 10, chunk) == chunk // 8
    assert piece_target(0, 10, 1) == 1


def test_map_chunks_leaves_what_it_cannot_map_to_iter_chunks(tmp_path: Path) -> None:
    assert map_chunks(io.BytesIO(b"a\n")) is None
    read, write = os.pipe()
    with open(read, "rb") as fh, open(write, "wb"):
        assert map_chunks(fh) is None
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    assert list(read_ndjson_file(empty, Interners())) == []
    with pytest.raises(ValueError, match="chunk_bytes"):
        map_chunks(io.BytesIO(b""), 0)


def test_a_missing_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(AffinityError, match="cannot read"):
        list(read_ndjson_file(tmp_path / "missing.ndjson", Interners()))


def test_cli_score_streams_in_chunks_with_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Many chunks: rejects, set-aside counts and every user's row as with one chunk."""
    rng = np.random.default_rng(5)
    lines = []
    for i in range(400):
        ts = 1_767_000_000_000 + int(rng.integers(0, 10**9))
        kind = ["product_viewed", "app_opened", "email_clicked"][i % 3]
        product = (
            ',"product":{"product_id":"p1","category":"c","brand":"b","price":2.5}' if i % 3 == 0 else ""
        )
        lines.append(f'{{"type":"{kind}","user_id":"u{rng.integers(0, 40)}","timestamp":{ts}{product}}}')
    lines[17] = '{"type":"app_opened","user_id":""}'  # bad: rejected with --errors collect
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(lines) + "\n")
    argv = ["score", str(path), "--errors", "collect", "--now", "2026-01-06T00:00:00Z", "--out"]

    def run(out: Path) -> tuple[str, list[list[str]]]:
        assert main([*argv, str(out)]) == 0
        err = capsys.readouterr().err
        with open(out, newline="") as fh:
            return err, list(csv.reader(fh))

    one_err, one_rows = run(tmp_path / "one.csv")
    monkeypatch.setattr(read_ahead, "DEFAULT_CHUNK_BYTES", 1000)
    many_err, many_rows = run(tmp_path / "many.csv")
    assert "line 18" in one_err and "set aside" in one_err
    assert many_err == one_err
    assert [r[0] for r in many_rows] == [r[0] for r in one_rows]  # same users, same order
    for a, b in zip(many_rows[1:], one_rows[1:], strict=True):
        assert a[3] == b[3]  # tier
        assert [float(x) for x in a[1:3] + a[4:]] == pytest.approx(
            [float(x) for x in b[1:3] + b[4:]], rel=1e-12
        )


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), min_size=1, max_size=60),
    st.integers(1, 64),
    st.booleans(),
    st.booleans(),
)
def test_page_window_names_the_next_piece_and_changes_no_piece(
    tmp_path: Path, lines: list[bytes], size: int, ramp: bool, slide: bool
) -> None:
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "a.ndjson"
    path.write_bytes(data)
    window = PageWindow()
    with open(path, "rb") as fh:
        pieces = map_chunks(fh, size, ramp=ramp, window=window)
        assert pieces is not None
        got: list[bytes] = []
        offered: list[tuple[int, int, int]] = []
        for piece in pieces:
            got.append(bytes(piece))
            offered.append((*window._next, window._drop_to))
            if slide:  # as the waiting thread does, between pieces
                window.slide()
                assert window._dropped_to == window._drop_to
                window.slide()  # a second call maps and drops nothing more
    window.slide()  # after the map is closed: nothing, and no error
    assert b"".join(got) == data
    starts = [0, *np.cumsum([len(p) for p in got]).tolist()]
    page = mmap.PAGESIZE
    for k, (start, size_ahead, drop_to) in enumerate(offered):
        assert start == starts[k + 1]  # the piece after the one handed out
        assert size_ahead >= 1
        assert drop_to == (starts[k - 2] // page * page if k >= 2 else 0)  # two pieces behind
    if not slide and len(got) >= 4:  # nobody slides: the reading thread drops, a piece later
        assert window._dropped_to == starts[len(got) - 4] // page * page


def test_page_window_stops_populating_where_the_system_cannot() -> None:
    calls: list[int] = []

    class NoPopulate:
        def __len__(self) -> int:
            return 1 << 20

        def madvise(self, advice: int, *args: int) -> None:
            calls.append(advice)
            if advice != mmap.MADV_DONTNEED:
                raise OSError(22, "Invalid argument")  # a kernel before 5.14

    window = PageWindow()
    mapped = NoPopulate()
    window._offer(mapped, 0, 1 << 16, 0)  # type: ignore[arg-type]
    window.slide()
    window._offer(mapped, 1 << 16, 1 << 16, 1 << 12)  # type: ignore[arg-type]
    window.slide()  # drops, but asks no more to populate
    assert calls == [22, mmap.MADV_DONTNEED]
