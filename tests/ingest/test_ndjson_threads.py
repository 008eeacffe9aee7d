"""The NDJSON reader on several threads gives what one thread gives, bit for bit: the C++ columns
and string tables, the streamed batches and codes, and the scores `affinity score` writes."""

from __future__ import annotations

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
from affinity_sdk.errors import ConfigError, SchemaError
from affinity_sdk.ingest import ndjson
from affinity_sdk.ingest.batch import EVENT_COLUMNS, ITEM_COLUMNS, EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.ingest.ndjson import read_ndjson_file, resolve_threads

MODULE = native()
pytestmark = pytest.mark.skipif(
    MODULE is None or not hasattr(MODULE, "NdjsonReader"), reason="the compiled reader is not built"
)
THREADS = (1, 2, 3)
KINDS = ("users", "products", "categories", "brands", "campaigns")
mutations = st.sampled_from([b'"', b"\\", b"}", b",", b"\xff", b"\\u00e9", b"null", b"1e5", b"\n", b"\r\n"])


@pytest.fixture(autouse=True)
def tiny_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut even a few bytes into one part per thread, so small inputs take the threaded path."""
    monkeypatch.setattr(ndjson, "_MIN_PART_BYTES", 1)


def ndjson_lines(
    evs: list[object], edits: list[tuple[int, int, bytes]], blanks: list[int], newline_at_end: bool
) -> bytes:
    """Events as NDJSON with some lines broken (flagged by the C++ reader or rejected by msgspec)
    and some blank ones."""
    lines = [msgspec.json.encode(e) for e in evs]
    for which, at, junk in edits:
        i = which % len(lines)
        at %= len(lines[i]) + 1
        lines[i] = lines[i][:at] + junk + lines[i][at + len(junk) :]
    for at in blanks:
        lines.insert(at % (len(lines) + 1), b" \t")
    return b"\n".join(lines) + (b"\n" if newline_at_end else b"")


def assert_same_result(one: dict[str, Any], other: dict[str, Any]) -> None:
    assert one.keys() == other.keys()
    for key, want in one.items():
        got = other[key]
        if isinstance(want, tuple):  # (names, first position of each)
            assert list(got[0]) == list(want[0]), key
            assert got[1].tobytes() == want[1].tobytes(), key
        elif isinstance(want, np.ndarray):
            assert got.dtype == want.dtype, key
            assert got.tobytes() == want.tobytes(), key  # bitwise, NaN included
        else:
            assert got == want, key


inputs = {
    "evs": st.lists(events, min_size=1, max_size=24),
    "edits": st.lists(st.tuples(st.integers(0, 23), st.integers(0, 400), mutations), max_size=4),
    "blanks": st.lists(st.integers(0, 23), max_size=4),
    "newline_at_end": st.booleans(),
}


@settings(max_examples=60, deadline=None)
@given(**inputs)
def test_threads_give_the_columns_of_one_thread(
    evs: list[object], edits: list[tuple[int, int, bytes]], blanks: list[int], newline_at_end: bool
) -> None:
    data = ndjson_lines(evs, edits, blanks, newline_at_end)
    assert MODULE is not None
    one = MODULE.read_ndjson(data, threads=1)
    for threads in THREADS[1:]:
        assert_same_result(one, MODULE.read_ndjson(data, threads=threads, min_part_bytes=1))


@settings(max_examples=30, deadline=None)
@given(**inputs, cuts=st.lists(st.integers(0, 10_000), max_size=3))
def test_a_threaded_stream_of_chunks_matches_one_thread(
    evs: list[object],
    edits: list[tuple[int, int, bytes]],
    blanks: list[int],
    newline_at_end: bool,
    cuts: list[int],
) -> None:
    data = ndjson_lines(evs, edits, blanks, newline_at_end)
    # chunks end at line ends, as iter_chunks cuts them
    ends = sorted({data.find(b"\n", c % len(data)) + 1 for c in cuts} - {0} | {len(data)})
    chunks = [data[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True) if b > a]
    assert MODULE is not None
    readers = [MODULE.NdjsonReader(t, 1) for t in THREADS]
    assert [r.threads for r in readers] == list(THREADS)
    for chunk in chunks:
        one, *others = (r.read(chunk) for r in readers)
        for other in others:
            assert_same_result(one, other)


def batches_of(path: Path, threads: int, **kw: Any) -> tuple[list[EventBatch], Interners]:
    names = Interners()
    return list(read_ndjson_file(path, names, threads=threads, **kw)), names


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**inputs, chunk_bytes=st.integers(1, 900), background=st.booleans())
def test_file_batches_do_not_depend_on_the_thread_count(
    tmp_path: Path,
    evs: list[object],
    edits: list[tuple[int, int, bytes]],
    blanks: list[int],
    newline_at_end: bool,
    chunk_bytes: int,
    background: bool,
) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(ndjson_lines(evs, edits, blanks, newline_at_end))
    kw = {"chunk_bytes": chunk_bytes, "background": background, "errors": "collect", "unknown_types": "skip"}
    want, want_names = batches_of(path, 1, **kw)
    for threads in THREADS[1:]:
        got, names = batches_of(path, threads, **kw)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            for name in (*EVENT_COLUMNS, *ITEM_COLUMNS):
                assert getattr(g, name).tobytes() == getattr(w, name).tobytes(), name
            assert g.rejects.errors == w.rejects.errors
            assert g.rejects.n_invalid == w.rejects.n_invalid
            assert g.source is not None and w.source is not None
            assert g.source.index.tobytes() == w.source.index.tobytes()
        for kind in KINDS:
            assert getattr(names, kind) == getattr(want_names, kind), kind


def test_raise_names_the_same_line_on_any_thread_count(tmp_path: Path) -> None:
    good = b'{"type":"app_opened","user_id":"u%d","timestamp":1}\n'
    path = tmp_path / "e.ndjson"
    path.write_bytes(b"".join(good % i for i in range(40)) + b'{"type":"app_opened"}\n' + good % 0)
    for threads in THREADS:
        with pytest.raises(SchemaError, match=r"\(line 41\)") as info:
            list(read_ndjson_file(path, Interners(), threads=threads))
        assert info.value.position == 40


def test_cut_points_fall_at_line_ends_and_cover_the_input() -> None:
    assert MODULE is not None
    # a long line (a 500-character id, the most the reader takes) and a last line without '\n': the parts still cover every byte once
    line = b'{"type":"app_opened","user_id":"%s","timestamp":1}'
    data = line % (b"x" * 500) + b"\n\n" + line % b"a" + b"\n" + line % b"b"
    one = MODULE.read_ndjson(data)
    for threads in (2, 3, 8, 64):
        many = MODULE.read_ndjson(data, threads=threads, min_part_bytes=1)
        assert_same_result(one, many)
    assert one["n_lines"] == 4
    assert list(one["users"][0]) == ["x" * 500, "a", "b"]


def test_score_csv_is_identical_for_any_thread_count(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    lines = []
    for i in range(3000):
        kind = ("product_viewed", "app_opened", "order_completed")[i % 3]
        event: dict[str, Any] = {
            "type": kind,
            "user_id": f"u{rng.integers(400)}",
            "timestamp": 1_700_000_000_000 + int(rng.integers(10**10)),
        }
        product = {
            "product_id": f"p{rng.integers(50)}",
            "category": f"c{rng.integers(7)}",
            "brand": "b",
            "price": round(float(rng.random()) * 100, 2),
        }
        if kind == "product_viewed":
            event["product"] = product
        elif kind == "order_completed":
            event |= {"order_id": f"o{i}", "products": [product], "revenue": float(rng.random()) * 90}
        lines.append(msgspec.json.encode(event).decode())
        if i % 500 == 7:
            lines.append('{"type":"app_opened","timestamp":1}')  # no user_id: rejected with --errors skip
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(lines) + "\n")
    texts = []
    for threads in THREADS:
        out = tmp_path / f"scores-{threads}.csv"
        args = [
            "score", str(path), "--out", str(out), "--threads", str(threads), "--errors", "skip",
            "--now", "2026-01-01T00:00:00Z", "--quiet",
        ]  # fmt: skip
        assert main(args) == 0
        texts.append(out.read_bytes())
    assert texts[0].count(b"\n") > 300
    assert texts[1] == texts[0] and texts[2] == texts[0]


@pytest.mark.parametrize("bad", [0, -2, True, 1.5, "2"])
def test_a_bad_thread_count_is_a_config_error(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "e.ndjson"
    path.write_bytes(b'{"type":"app_opened","user_id":"u","timestamp":1}\n')
    with pytest.raises(ConfigError, match="threads must be a whole number >= 1"):
        list(read_ndjson_file(path, Interners(), threads=bad))  # type: ignore[arg-type]


def test_threads_default_to_every_core() -> None:
    import os

    assert resolve_threads(None) == (os.cpu_count() or 1)
    assert resolve_threads(np.int64(4)) == 4


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_cli_rejects_a_bad_thread_count(tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["score", str(tmp_path / "e.ndjson"), "--out", str(tmp_path / "o.csv"), "--threads", bad]
    assert main(args) == 2
    assert f"expected a whole number >= 1, got {bad!r}" in capsys.readouterr().err


line_bytes = st.binary(max_size=60) | st.sampled_from(
    [b'{"type":"app_opened","user_id":"u1","timestamp":1}', b'{"type":"app_opened","user_id":"u2"', b"\r"]
)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(line_bytes, max_size=12), threads=st.integers(2, 5))
def test_arbitrary_bytes_read_the_same_on_any_thread_count(lines: list[bytes], threads: int) -> None:
    data = b"\n".join(lines)
    assert MODULE is not None
    assert_same_result(MODULE.read_ndjson(data), MODULE.read_ndjson(data, threads=threads, min_part_bytes=1))


@settings(max_examples=30, deadline=None)
@given(**inputs, threads=st.integers(2, 4))
def test_ndjson_batch_matches_from_ndjson(
    evs: list[object],
    edits: list[tuple[int, int, bytes]],
    blanks: list[int],
    newline_at_end: bool,
    threads: int,
) -> None:
    data = b"\xef\xbb\xbf" + ndjson_lines(evs, edits, blanks, newline_at_end)  # a BOM, skipped
    want_names, names = Interners(), Interners()
    want = EventBatch.from_ndjson(data, want_names, errors="collect")
    got = ndjson.ndjson_batch(data, names, errors="collect", threads=threads)
    for name in (*EVENT_COLUMNS, *ITEM_COLUMNS):
        assert getattr(got, name).tobytes() == getattr(want, name).tobytes(), name
    assert got.rejects.errors == want.rejects.errors
    for kind in KINDS:
        assert getattr(names, kind) == getattr(want_names, kind), kind


def test_scorer_ingest_of_ndjson_bytes_scores_the_same_on_any_thread_count() -> None:
    from affinity_sdk import Scorer

    rng = np.random.default_rng(11)
    kinds = ("product_viewed", "app_opened", "email_clicked", "order_completed")
    lines = []
    for i in range(12_000):  # over 1 MiB: more than one part per thread count
        event: dict[str, Any] = {
            "type": kinds[i % 4],
            "user_id": f"u{rng.integers(300)}",
            "timestamp": 1_760_000_000_000 + int(rng.integers(10**9)),
            "event_id": f"e{rng.integers(11_000)}",  # some replays, dropped by the dedupe window
        }
        product = {"product_id": f"p{rng.integers(40)}", "category": "c", "brand": "b", "price": 9.5}
        if event["type"] == "product_viewed":
            event["product"] = product
        elif event["type"] == "order_completed":
            event |= {"order_id": f"o{i}", "products": [product], "revenue": float(rng.random()) * 50}
        lines.append(msgspec.json.encode(event))
    lines[77] = b'{"type":"order_completed","user_id":"u1"}'  # rejected
    data = b"\n".join(lines)
    results = []
    assert len(data) > 1 << 20
    for threads in THREADS:
        scorer = Scorer(threads=threads)
        assert scorer.threads == threads
        report = scorer.ingest(data, errors="collect")
        assert report.n_rejected == 1 and report.n_duplicates > 0
        results.append((report.accepted, report.n_duplicates, scorer.score("2026-01-01T00:00:00Z")))
    (accepted, dupes, want), *others = results
    for got_accepted, got_dupes, got in others:
        assert (got_accepted, got_dupes) == (accepted, dupes)
        assert got.user_ids == want.user_ids
        assert got.decayed.tobytes() == want.decayed.tobytes()
        assert got.raw_score.tobytes() == want.raw_score.tobytes()
        assert got.tier_code.tobytes() == want.tier_code.tobytes()
