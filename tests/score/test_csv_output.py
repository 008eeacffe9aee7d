"""The compiled CSV formatter writes exactly the text of ``csv.writer`` (the Python path)."""

from __future__ import annotations

import csv
import io
import math
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk._backends import native
from affinity_sdk.score import results
from affinity_sdk.score.results import write_columns

pytestmark = pytest.mark.skipif(
    native() is None or not hasattr(native(), "csv_rows"), reason="needs the compiled extension"
)


@pytest.mark.parametrize(("encoding", "newline"), [("latin-1", ""), ("utf-8", "\r\n"), ("utf-8", None)])
def test_a_text_file_opened_by_the_caller_gets_csv_writer_text(
    tmp_path: Any, encoding: str, newline: str | None
) -> None:
    """The caller's encoding and newline translation apply, exactly as to csv.writer's text."""
    raw = np.array([0.5, 1e-7])
    result = results.ScoreResult(
        user_ids=["é", "b"], raw_score=raw, score=raw, tier_code=np.zeros(2, dtype=np.int8),
        signal_names=(), decayed=np.zeros((2, 0)), now_ms=0, config_version="v", config_fingerprint="f",
    )  # fmt: skip
    ours, theirs = tmp_path / "ours.csv", tmp_path / "theirs.csv"
    with open(ours, "w", encoding=encoding, newline=newline) as fh:
        result.to_csv(fh)
    with open(theirs, "w", encoding=encoding, newline=newline) as fh:
        text = python_csv(result.columns()).decode("utf-8")
        fh.write(text)  # csv.writer's text through the same text layer
    assert ours.read_bytes() == theirs.read_bytes()


def python_csv(columns: dict[str, Any]) -> bytes:
    """What ``csv.writer`` writes for ``columns`` (the reference)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(list(columns))
    lists = [v.tolist() if isinstance(v, np.ndarray) else list(v) for v in columns.values()]
    writer.writerows(zip(*lists, strict=True))
    return text.getvalue().encode("utf-8")


def native_csv(columns: dict[str, Any]) -> bytes:
    assert results._native_csv_columns(columns) is not None  # the compiled path is the one tested
    out = io.BytesIO()
    results._write_csv_binary(columns, out)
    return out.getvalue()


EDGE_FLOATS = [
    0.0, -0.0, 1.0, -1.5, 0.1, 0.1 + 0.2, 1e-4, 1e-5, 9.999e-5, 1e15, 1e16, 123456789012345.6,
    1234567890123456.7, 1e22, 1.5e300, 5e-324, 2.2250738585072014e-308, sys.float_info.max,
    float("inf"), float("-inf"), float("nan"), 100.0, 25.009355342526668,
]  # fmt: skip


def test_edge_floats_ints_bools_and_strings_match_csv_writer() -> None:
    n = len(EDGE_FLOATS)
    columns = {
        "user_id": [f"u{i}" for i in range(n - 6)] + ["a,b", 'say "hi"', "line\nbreak", "cr\r", "", "é ü 😀"],
        "value": np.array(EDGE_FLOATS),
        # float32 widens exactly, as ``tolist`` does (values beyond its range clipped first)
        "small": np.array(
            [x if not math.isfinite(x) else max(min(x, 1e30), -1e30) for x in EDGE_FLOATS], dtype=np.float32
        ),
        "rank": np.arange(-3, n - 3, dtype=np.int32),
        "big": np.array([2**63 - 1, -(2**63), *range(n - 2)], dtype=np.int64),
        "flag": np.arange(n) % 2 == 0,
        "tier": np.array(["low", "medium", "high"] * (n // 3) + ["low"] * (n % 3)),
        "floats": [float(x) for x in EDGE_FLOATS],
    }
    assert native_csv(columns) == python_csv(columns)


def test_a_lone_empty_string_is_quoted_like_csv_writer() -> None:
    columns = {"user_id": ["", "x", ""]}
    assert native_csv(columns) == python_csv(columns)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=8),
            st.integers(-(2**63), 2**63 - 1),
        ),
        max_size=40,
    )
)
def test_random_rows_match_csv_writer(rows: list[tuple[float, str, int]]) -> None:
    columns = {
        "x": np.array([r[0] for r in rows], dtype=np.float64),
        "s": [r[1] for r in rows],
        "i": np.array([r[2] for r in rows], dtype=np.int64),
    }
    if results._native_csv_columns(columns) is None:  # a NUL in a string: csv.writer's own path
        assert any("\x00" in r[1] for r in rows)
        return
    assert native_csv(columns) == python_csv(columns)


def test_columns_it_cannot_format_exactly_go_to_csv_writer(tmp_path: Any) -> None:
    mixed = {"v": [1, 0.5, "x"]}
    assert results._native_csv_columns(mixed) is None
    out = tmp_path / "mixed.csv"
    write_columns(mixed, out, metadata={})
    assert out.read_bytes() == python_csv(mixed)


def test_many_rows_are_written_in_pieces_with_the_same_text(tmp_path: Any) -> None:
    n = results._CSV_ROWS_PER_WRITE + 123
    rng = np.random.default_rng(3)
    columns = {"user_id": [f"user-{i}" for i in range(n)], "score": rng.exponential(5.0, n)}
    out = tmp_path / "big.csv"
    write_columns(columns, out, metadata={})
    assert out.read_bytes() == python_csv(columns)


@pytest.mark.parametrize("threads", [None, 1, 3])
def test_blocks_formatted_on_threads_are_written_in_order(
    tmp_path: Any, monkeypatch: Any, threads: Any
) -> None:
    monkeypatch.setattr(results, "_CSV_ROWS_PER_WRITE", 7)  # 143 blocks over the thread pool
    n = 1000
    rng = np.random.default_rng(4)
    columns = {"user_id": [f"u{i}" for i in range(n)], "raw": rng.normal(size=n), "n": np.arange(n)}
    out = tmp_path / "blocks.csv"
    write_columns(columns, out, metadata={}, threads=threads)
    assert out.read_bytes() == python_csv(columns)


def test_one_thread_formats_on_the_calling_thread(tmp_path: Any, monkeypatch: Any) -> None:
    def no_pool(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("threads=1 must not start a thread pool")

    monkeypatch.setattr(results, "_CSV_ROWS_PER_WRITE", 7)
    monkeypatch.setattr(results, "ThreadPoolExecutor", no_pool)
    columns = {"user_id": [f"u{i}" for i in range(100)], "n": np.arange(100)}
    out = tmp_path / "one.csv"
    write_columns(columns, out, metadata={}, threads=1)
    assert out.read_bytes() == python_csv(columns)
