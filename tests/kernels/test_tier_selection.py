"""Cut-offs and tiers on large, crowded inputs: the fast backends against the numpy reference.

The parity tests in ``test_kernels.py`` draw a few hundred values, which the histogram selection
of the fast backends finds in one bin. Real scores crowd together (an active base's 0-100 scores
sit within a point or two of each other near 100), and then a cut-off's bin holds thousands of
values: the C++ backend narrows such a bin by further histogram passes, and its score bins follow
a window that a sample of the scores picks. These tests draw inputs of tens of thousands of
values built to land there (clusters narrower than a bin, heavy ties, NaN, infinities, a sample
that misses) and ask for the reference's exact numbers, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from affinity_sdk import available_backends
from affinity_sdk import kernels as K

needs_cpp = pytest.mark.skipif("cpp" not in available_backends(), reason="no C++ backend built")

KINDS = ("spread", "near_100", "cluster", "ties", "zeros", "nan_inf", "sample_misses")


def crowded(kind: str, n: int, seed: int) -> NDArray[np.float64]:
    """``n`` raw scores of one shape (half point 5), shuffled unless the order is the point."""
    rng = np.random.default_rng(seed)
    if kind == "spread":
        return rng.exponential(5.0, n)
    if kind == "near_100":  # scores 95-99.9: an active base
        return rng.exponential(200.0, n) + 100.0
    if kind == "cluster":  # most values closer together than any histogram bin
        raw = rng.exponential(5.0, n)
        raw[: n * 3 // 4] = 50.0 + rng.random(n * 3 // 4) * 1e-9
    elif kind == "ties":
        raw = rng.exponential(5.0, n)
        raw[: n * 2 // 3] = rng.choice([3.0, 7.5], n * 2 // 3)
    elif kind == "zeros":  # no activity (0), negative (-> 0), -0.0 and a few real scores
        raw = rng.exponential(5.0, n)
        raw[: n * 7 // 10] = rng.choice([0.0, -0.0, -2.0, 5e-324], n * 7 // 10)
    elif kind == "nan_inf":
        raw = rng.exponential(5.0, n)
        raw[: n // 4] = rng.choice([np.nan, -np.nan, np.inf, 1e300, -np.inf], n // 4)
    else:
        # Every 4th value tiny, the rest large: a strided sample sees mostly one or the other
        # depending on its stride, so the window it picks can miss the cut-offs.
        raw = rng.exponential(500.0, n) + 50.0
        raw[::4] = rng.random(raw[::4].shape[0]) * 1e-3
        return raw
    rng.shuffle(raw)
    return raw


def assert_same_tiers(got: tuple[NDArray, ...], want: tuple[NDArray, ...]) -> None:
    scores, tiers, cuts = got
    assert scores.tobytes() == want[0].tobytes()
    np.testing.assert_array_equal(cuts, want[2])  # equal values (-0.0 == 0.0), NaN where NaN
    assert tiers.tobytes() == want[1].tobytes()


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(5_000, 40_000),
    seed=st.integers(0, 2**32 - 1),
    fractions=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
    margins=st.sampled_from([(0.0, 0.0), (0.5, 1.5), (-1.0, 3.0)]),
    with_previous=st.booleans(),
)
def test_score_tiers_on_crowded_scores(
    fast_backend: str,
    kind: str,
    n: int,
    seed: int,
    fractions: tuple[float, float],
    margins: tuple[float, float],
    with_previous: bool,
) -> None:
    raw = crowded(kind, n, seed)
    q, m = np.array(fractions), np.array(margins)
    previous = np.random.default_rng(seed + 1).integers(-1, 3, n).astype(np.int8) if with_previous else None
    want = K.score_tiers(raw, 5.0, q, m, previous, backend="reference")
    assert_same_tiers(K.score_tiers(raw, 5.0, q, m, previous, backend=fast_backend), want)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(5_000, 40_000),
    seed=st.integers(0, 2**32 - 1),
    fractions=st.lists(st.floats(-0.1, 1.1), min_size=1, max_size=9),
)
def test_quantile_cutoffs_on_crowded_values(
    fast_backend: str, kind: str, n: int, seed: int, fractions: list[float]
) -> None:
    values = crowded(kind, n, seed)
    q = np.array(fractions)
    want = K.quantile_cutoffs(values, q, backend="reference")
    np.testing.assert_array_equal(K.quantile_cutoffs(values, q, backend=fast_backend), want)


@pytest.mark.parametrize("kind", KINDS)
def test_score_tiers_without_previous_is_everyone_entering(backend: str, kind: str) -> None:
    """``previous=None`` means no profile was in a tier: the same as all -1, whatever the margins."""
    raw = crowded(kind, 30_000, 7)
    q, m = np.array([0.6, 0.9]), np.array([2.0, 4.0])
    none = K.score_tiers(raw, 5.0, q, m, None, backend=backend)
    fresh = K.score_tiers(raw, 5.0, q, m, np.full(raw.shape[0], -1, dtype=np.int8), backend=backend)
    assert_same_tiers(none, fresh)
    # and the tiers are those of the plain rule: >= the cut-off (and > 0) to be in a tier
    scores, tiers, cuts = none
    with np.errstate(invalid="ignore"):
        plain = np.where(scores > 0, (scores >= cuts[0]).astype(np.int8) + (scores >= cuts[1]), 0)
    np.testing.assert_array_equal(tiers, plain)


@pytest.mark.parametrize("n", [0, 1, 2, 4097])
def test_score_tiers_tiny_and_uniform_inputs(backend: str, n: int) -> None:
    q = np.array([0.6, 0.9])
    for raw in (np.full(n, 3.0), np.zeros(n), np.full(n, np.nan), np.arange(float(n))):
        want = K.score_tiers(raw, 5.0, q, backend="reference")
        assert_same_tiers(K.score_tiers(raw, 5.0, q, backend=backend), want)


def test_score_tiers_rejects_a_previous_of_the_wrong_length(fast_backend: str) -> None:
    with pytest.raises(ValueError, match="previous"):
        K.score_tiers(
            np.ones(4), 5.0, np.array([0.6, 0.9]), None, np.zeros(3, dtype=np.int8), backend=fast_backend
        )


@needs_cpp
@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(262_144, 700_000),  # 2 to 5 ranges of at least 2^17 profiles
    seed=st.integers(0, 2**32 - 1),
    fractions=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
    with_previous=st.booleans(),
)
def test_score_tiers_the_same_for_any_thread_count(
    kind: str, n: int, seed: int, fractions: tuple[float, float], with_previous: bool
) -> None:
    raw = crowded(kind, n, seed)
    q, m = np.array(fractions), np.array([0.5, 1.5])
    previous = np.random.default_rng(seed + 1).integers(-1, 3, n).astype(np.int8) if with_previous else None
    want = K.score_tiers(raw, 5.0, q, m, previous, backend="reference")
    for threads in (1, 2, 3, 8):
        got = K.score_tiers(raw, 5.0, q, m, previous, threads=threads, backend="cpp")
        assert_same_tiers(got, want)


@needs_cpp
def test_score_tiers_rejects_no_threads() -> None:
    from affinity_sdk.errors import AffinityError

    with pytest.raises(AffinityError, match="threads must be >= 1"):
        K.score_tiers(np.zeros(3), 5.0, np.array([0.6, 0.9]), threads=0, backend="cpp")
