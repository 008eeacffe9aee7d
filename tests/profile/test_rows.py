"""Row buffers growing geometrically, and empty records written as words: the same bytes as the
plain numpy assignments they replace, whatever the dtype."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from affinity_sdk.kernels._layout import STATE_DTYPE, empty_records, reset_records
from affinity_sdk.profile.rows import FAST_GROWTH_ROWS, MIN_CAPACITY, ensure_capacity


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
