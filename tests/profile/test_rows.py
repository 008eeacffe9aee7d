"""Row buffers growing geometrically (copied, or in address space reserved ahead), and empty
records written as words: the same bytes as the plain numpy assignments they replace, whatever
the dtype."""

from __future__ import annotations

import mmap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affinity_sdk.kernels._layout import STATE_DTYPE, empty_records, reset_records
from affinity_sdk.profile import rows
from affinity_sdk.profile.rows import FAST_GROWTH_ROWS, MIN_CAPACITY, ensure_capacity, ensure_zeroed_capacity


def _random_records(rng: np.random.Generator, n: int, n_signals: int) -> np.ndarray:
    records = np.empty((n, n_signals), dtype=STATE_DTYPE)
    records.view(np.uint8)[...] = rng.integers(0, 256, records.view(np.uint8).shape, dtype=np.uint8)
    return records


@given(st.integers(0, 40), st.integers(1, 5), st.integers(0, 3000), st.integers(0, 2**32 - 1))
def test_structured_growth_copies_the_live_rows_bit_for_bit(
    n_live: int, n_signals: int, need: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    buffer = _random_records(rng, n_live, n_signals)
    grown = ensure_capacity(buffer, n_live, need, lambda size: empty_records(size, n_signals))
    if need <= n_live:
        assert grown is buffer
        return
    assert grown.shape[0] >= max(need, 2 * n_live, MIN_CAPACITY)
    assert grown[:n_live].tobytes() == buffer.tobytes()
    assert grown[n_live:].tobytes() == empty_records(grown.shape[0] - n_live, n_signals).tobytes()


def test_plain_growth_keeps_values_and_fills_with_make() -> None:
    buffer = np.arange(6.0).reshape(3, 2)
    grown = ensure_capacity(buffer, 2, 5, lambda size: np.full((size, 2), -1.0))
    assert grown[:2].tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert (grown[2:] == -1.0).all()


@given(st.integers(0, 50), st.integers(1, 9), st.integers(0, 50), st.integers(0, 2**32 - 1))
def test_reset_records_equals_assigning_an_empty_record(
    n: int, n_signals: int, start: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ours = _random_records(rng, n, n_signals)
    theirs = ours.copy()
    reset_records(ours[start:])
    theirs[start:] = empty_records(1, n_signals)
    assert ours.tobytes() == theirs.tobytes()


def test_reset_records_refuses_what_it_cannot_write_as_words() -> None:
    records = empty_records(4, 2)
    for bad in (records[:, :1], np.zeros(3)):
        with pytest.raises(ValueError, match="C-contiguous STATE_DTYPE"):
            reset_records(bad)


def test_small_buffers_grow_4x_and_large_ones_2x() -> None:
    small = np.zeros(MIN_CAPACITY, dtype=np.uint8)
    assert ensure_capacity(small, MIN_CAPACITY, MIN_CAPACITY + 1, np.zeros).shape[0] == 4 * MIN_CAPACITY
    large = np.zeros(FAST_GROWTH_ROWS, dtype=np.uint8)
    grown = ensure_capacity(large, 5, FAST_GROWTH_ROWS + 1, lambda size: np.zeros(size, dtype=np.uint8))
    assert grown.shape[0] == 2 * FAST_GROWTH_ROWS
    # a need beyond the factor is met exactly
    assert ensure_capacity(small, 0, 10 * MIN_CAPACITY, np.zeros).shape[0] == 10 * MIN_CAPACITY


@pytest.fixture
def small_reservations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reservations from 4 KiB buffers on, of 64 KiB at least: a few rows cross their ends."""
    monkeypatch.setattr(rows, "RESERVE_FROM_BYTES", 4096)
    monkeypatch.setattr(rows, "_RESERVE_MIN_BYTES", 1 << 16)


@pytest.mark.parametrize("reserve", [True, False])
@settings(max_examples=40, deadline=None)
@given(needs=st.lists(st.integers(0, 20_000), max_size=8), seed=st.integers(0, 2**32 - 1))
def test_zeroed_growth_keeps_the_live_rows_and_zeros_the_rest(
    reserve: bool, needs: list[int], seed: int
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rows, "RESERVE_FROM_BYTES", 4096)
        patch.setattr(rows, "_RESERVE_MIN_BYTES", 1 << 16)
        if not reserve:
            patch.setattr(rows, "_FLAGS", None)  # as on a system without reservations
        _grow_and_check(needs, np.random.default_rng(seed))


def _grow_and_check(needs: list[int], rng: np.random.Generator) -> None:
    for dtype, row_shape in ((np.float64, (3,)), (STATE_DTYPE, (2,)), (np.int64, ())):
        buffer = np.zeros((0, *row_shape), dtype=dtype)
        live = np.zeros((0, *row_shape), dtype=dtype)
        for need in needs:
            before = buffer
            buffer = ensure_zeroed_capacity(buffer, live.shape[0], need)
            assert buffer.dtype == dtype and buffer.shape[1:] == row_shape
            assert buffer.shape[0] >= need
            if need <= before.shape[0]:
                assert buffer is before
            assert buffer[: live.shape[0]].tobytes() == live.tobytes()
            assert not buffer[live.shape[0] :].view(np.uint8).any()
            if need > live.shape[0]:  # the new rows go live, with random bytes
                fresh = buffer[live.shape[0] : need]
                fresh.view(np.uint8)[...] = rng.integers(0, 256, fresh.view(np.uint8).shape, dtype=np.uint8)
                live = buffer[:need].copy()


def test_a_reserved_buffer_grows_in_place(small_reservations: None) -> None:
    if rows._FLAGS is None:
        pytest.skip("no address-space reservations on this system")
    # 1024 rows of 32 bytes: a reservation of 16x, 16384 rows
    buffer = ensure_zeroed_capacity(np.zeros((0, 4)), 0, 1000)
    buffer[:10] = 7.0
    grown = ensure_zeroed_capacity(buffer, 10, 1500)
    assert grown.ctypes.data == buffer.ctypes.data  # same memory: no copy
    assert grown.shape[0] == 4096 and (grown[:10] == 7.0).all() and not grown[10:].any()
    grown[0, 0] = 1.0
    assert buffer[0, 0] == 1.0  # the older, shorter buffer is a view of the same rows
    full = ensure_zeroed_capacity(grown, 10, 16384)
    assert full.ctypes.data == grown.ctypes.data and full.shape[0] == 16384
    # past the reservation it moves, with its rows
    beyond = ensure_zeroed_capacity(full, 10, 16385)
    assert beyond.ctypes.data != full.ctypes.data and beyond[:10].tolist() == full[:10].tolist()


def test_only_its_own_reservations_are_grown_into(small_reservations: None) -> None:
    # A buffer at the start of some other mapping (here an anonymous one) is copied, never widened
    # over bytes that are not its own.
    other = np.frombuffer(mmap.mmap(-1, 1 << 20), dtype=np.uint8)
    other[:] = 9
    buffer = other[: 2000 * 8].view(np.float64)
    grown = ensure_zeroed_capacity(buffer, 2000, 2001)
    assert grown.ctypes.data != other.ctypes.data
    assert (grown[:2000] == buffer).all() and not grown[2000:].any()
