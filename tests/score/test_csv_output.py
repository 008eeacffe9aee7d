"""The compiled CSV formatter writes exactly the text of ``csv.writer`` (the Python path)."""

from __future__ import annotations

import csv
import io
import math
import os
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


@pytest.mark.parametrize("threads", [1, 2])
def test_each_block_written_to_a_file_is_sent_to_disk_at_once(
    tmp_path: Any, monkeypatch: Any, threads: int
) -> None:
    """Every block of a CSV file is handed to start_writeback after it is written (so the fsync
    of the atomic write has little left); the file holds the same text."""
    module = native()
    if not hasattr(module, "start_writeback"):
        pytest.skip("an extension built before start_writeback")
    calls: list[tuple[int, int]] = []

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(module, name)

        def start_writeback(self, fd: int) -> None:
            calls.append((fd, os.fstat(fd).st_size))
            module.start_writeback(fd)

    monkeypatch.setattr(results, "native", lambda: Spy())
    monkeypatch.setattr(results, "_CSV_ROWS_PER_WRITE", 7)
    columns = {"user_id": [f"u{i}" for i in range(50)], "n": np.arange(50)}
    out = tmp_path / "synced.csv"
    write_columns(columns, out, metadata={}, threads=threads)
    assert out.read_bytes() == python_csv(columns)
    assert len(calls) == 8  # one per block of 7 rows
    sizes = [size for _, size in calls]
    assert sizes == sorted(sizes) and sizes[-1] == len(python_csv(columns))  # each after its write


def test_start_writeback_takes_any_descriptor_and_a_bad_one_quietly() -> None:
    module = native()
    if not hasattr(module, "start_writeback"):
        pytest.skip("an extension built before start_writeback")
    read, write = os.pipe()
    try:
        module.start_writeback(write)  # not a file: the kernel refuses, nothing is raised
    finally:
        os.close(read)
        os.close(write)
    module.start_writeback(-1)


def native_matches_csv_writer(columns: dict[str, Any]) -> None:
    """The compiled path takes ``columns`` and writes csv.writer's bytes for them."""
    assert native_csv(columns) == python_csv(columns)


FLOATS = st.one_of(
    st.floats(),  # every finite double, ±inf and nan
    st.floats(allow_subnormal=True, min_value=-2.3e-308, max_value=2.3e-308),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, sys.float_info.max, 1e16, 1e-5, 9007199254740993.0]),
    st.integers(-(2**60), 2**60).map(float),  # integer-valued floats
    st.builds(lambda m, e: m * 10.0**e, st.integers(1, 99999), st.integers(-30, 30)),  # short decimals
)


@settings(max_examples=200, deadline=None)
@given(st.lists(FLOATS, max_size=60))
def test_floats_match_repr(values: list[float]) -> None:
    array = np.array(values, dtype=np.float64)
    native_matches_csv_writer({"x": array, "neg": -array, "as_list": values})


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40), st.lists(st.booleans(), max_size=40))
def test_ints_and_bools_match_str(ints: list[int], flags: list[bool]) -> None:
    n = min(len(ints), len(flags))
    native_matches_csv_writer(
        {"i": np.array(ints[:n], dtype=np.int64), "u": (np.array(ints[:n], dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32),
         "b": np.array(flags[:n], dtype=bool), "as_list": ints[:n]}
    )  # fmt: skip


TEXT = st.text(
    alphabet=st.sampled_from([",", '"', "\r", "\n", " ", "a", "Z", "é", "€", "😀", "\t", "'"]), max_size=10
)


@settings(max_examples=150, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=30))
def test_strings_quoted_like_csv_writer_from_lists_and_numpy_arrays(texts: list[str]) -> None:
    array = np.array(texts)  # a numpy str array goes to the formatter as it stands
    assert results._native_csv_column(array) is not None
    native_matches_csv_writer(
        {"s": texts, "a": array, "big_endian": array.astype(array.dtype.newbyteorder(">"))}
    )
    native_matches_csv_writer({"only": array})  # one column: an empty value is written ""


def test_random_bit_patterns_over_every_exponent_match_repr() -> None:
    rng = np.random.default_rng(20261207)
    bits = rng.integers(0, 2**64, size=20_000, dtype=np.uint64)
    exponents = np.repeat(np.arange(2048, dtype=np.uint64), 10) << np.uint64(52)
    mantissas = rng.integers(0, 2**52, size=exponents.size, dtype=np.uint64)
    powers_of_two = np.ldexp(1.0, np.arange(-1074, 1024))  # the uneven gap below a power of two
    values = np.concatenate(
        [bits.view(np.float64), (exponents | mantissas).view(np.float64), powers_of_two,
         np.nextafter(powers_of_two, 0.0), np.nextafter(powers_of_two, np.inf)]
    )  # fmt: skip
    native_matches_csv_writer({"x": values})


def test_columns_of_a_matrix_and_reversed_or_odd_strided_views_are_read_in_place() -> None:
    rng = np.random.default_rng(5)
    matrix = rng.exponential(1.0, size=(50, 4))
    matrix[rng.random(matrix.shape) < 0.5] = 0.0
    packed = np.zeros(50, dtype=[("pad", "u1"), ("x", "f8"), ("n", "i8")])  # 17-byte strides
    packed["x"], packed["n"] = matrix[:, 0], np.arange(50) - 25
    columns = {"a": matrix[:, 1], "b": matrix[::-1, 2], "c": matrix[::2, 3].repeat(2), "x": packed["x"],
               "n": packed["n"], "f32": matrix[:, 0].astype(np.float32)}  # fmt: skip
    native_matches_csv_writer(columns)


@pytest.mark.parametrize(
    "values",
    [np.array(["ok", "a\x00b"]), np.array(["\x00x"]), np.array(["ok", "\ud800"])],
    ids=["inner-nul", "leading-nul", "surrogate"],
)
def test_str_arrays_with_inner_nuls_or_surrogates_go_to_csv_writer(values: Any) -> None:
    assert results._native_csv_column(values) is None


def test_a_str_array_with_trailing_nuls_is_written_as_tolist_gives_it() -> None:
    values = np.array(["ab", "c"], dtype="<U4")
    values.view(np.uint32)[4:6] = [ord("c"), 0]  # "c" padded: numpy drops trailing NULs anyway
    native_matches_csv_writer({"s": values, "empty": np.array(["", ""])})


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([(3, ("a",))], "a str column must be a list or a numpy str array"),
        ([(4, ["a"])], "a str column must be a list or a numpy str array"),
        ([(4, np.array(["a"]).astype(">U1"))], "contiguous native-order numpy str array"),
        ([(4, np.array(["a\x00b"]))], "a NUL, a surrogate or no code point"),
        ([(0, np.zeros(2))], "a column has another length or type"),
        ([(1, np.array([0.5]))], "a column has another length or type"),  # no cast that loses values
    ],
)
def test_the_formatter_refuses_columns_it_cannot_write_exactly(columns: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        native().csv_rows(columns, 1, 0, 1)
