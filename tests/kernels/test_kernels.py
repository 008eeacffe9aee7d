"""Parity of the kernel backends against the numpy reference, plus their edge cases.

The reference (``affinity_sdk.kernels._reference``) is the oracle: every fast backend must give the
same state (relative 1e-9; counts and first / last seen exactly), the same cut-offs and tiers
(exactly) and the same top-k.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from affinity_sdk import kernels as K
from affinity_sdk.kernels import empty_records

RTOL = 1e-9
LANDMARK = 1_700_000_000_000
LAM = np.array([np.inf, np.log(2.0) / 1000.0, np.log(2.0) / 3.6e6, np.log(2.0) / 2.592e9, 0.0])


State = tuple[NDArray[np.float64], NDArray[np.void]]


def empty_state(n_profiles: int, n_signals: int) -> State:
    """A state's two arrays, ``(acc, records)``, for profiles with no events."""
    return np.zeros((n_profiles, n_signals)), empty_records(n_profiles, n_signals)


def copy_state(state: State) -> State:
    return state[0].copy(), state[1].copy()


def state_bytes(state: State) -> bytes:
    return state[0].tobytes() + state[1].tobytes()


def assert_records_equal(got: State, want: State) -> None:
    np.testing.assert_allclose(got[0], want[0], rtol=RTOL, atol=0.0, err_msg="acc")
    np.testing.assert_allclose(got[1]["total"], want[1]["total"], rtol=RTOL, atol=0.0, err_msg="total")
    for field in ("count", "first_ms", "last_ms"):
        np.testing.assert_array_equal(got[1][field], want[1][field], err_msg=field)


def random_events(
    rng: np.random.Generator, n: int, n_profiles: int, n_signals: int, spread_ms: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    users = rng.integers(0, n_profiles, n)
    signals = rng.integers(0, n_signals, n)
    ts = LANDMARK - rng.integers(-spread_ms // 10, spread_ms, n)
    values = rng.random(n) * 100.0
    return users, signals, ts, values


@pytest.mark.parametrize(
    ("n", "n_profiles", "n_signals"),
    [
        (0, 3, 2),
        (1, 1, 1),
        (500, 7, 3),
        (20_000, 5_000, 8),
        (100_000, 40_000, 8),
        (90_000, 60_000, 5),
        (70_000, 100_000, 8),  # big enough to partition, but under one event per 8 cells: direct
    ],
    ids=["empty", "single", "small", "direct", "partitioned", "partitioned-odd-signals", "sparse"],
)
def test_accumulate_matches_reference(fast_backend: str, n: int, n_profiles: int, n_signals: int) -> None:
    rng = np.random.default_rng(n + n_profiles)
    lam = np.log(2.0) / (rng.uniform(1.0, 1e6, n_signals) * 1000.0)
    users, signals, ts, values = random_events(rng, n, n_profiles, n_signals, 40 * 86_400_000)
    want = empty_state(n_profiles, n_signals)
    got = empty_state(n_profiles, n_signals)
    K.accumulate(*want, users, signals, ts, values, LANDMARK, lam, backend="reference")
    K.accumulate(*got, users, signals, ts, values, LANDMARK, lam, backend=fast_backend)
    assert_records_equal(got, want)
    assert int(got[1]["count"].sum()) == n


def test_accumulate_partitioned_far_times_and_slices(
    fast_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch big enough to be partitioned, with times too far from the landmark to pack (the
    # kernels fall back to applying events directly) and several slices (packed 40,000 events at a
    # time instead of 2**24, so the multi-slice path runs at test size).
    from functools import partial

    from affinity_sdk._backends import native
    from affinity_sdk.kernels import _numba

    monkeypatch.setattr(_numba, "_SLICE", 40_000)
    module = native()
    if module is not None:
        monkeypatch.setattr(module, "accumulate", partial(module.accumulate, max_slice=40_000))
    rng = np.random.default_rng(7)
    n, n_profiles, n_signals = 100_000, 40_000, 8
    lam = np.full(n_signals, 1e-12)
    for far in (None, 0, 1, 99_999):  # None: every slice packed; 99_999: the second slice on, direct
        users, signals, ts, values = random_events(rng, n, n_profiles, n_signals, 40 * 86_400_000)
        if far is not None:
            ts[far] = LANDMARK + (1 << 60)
            ts[far // 2] = LANDMARK - (1 << 59)
        want = empty_state(n_profiles, n_signals)
        got = empty_state(n_profiles, n_signals)
        K.accumulate(*want, users, signals, ts, values, LANDMARK, lam, backend="reference")
        K.accumulate(*got, users, signals, ts, values, LANDMARK, lam, backend=fast_backend)
        assert_records_equal(got, want)
    before = state_bytes(got)
    for at, field, code in ((99_999, signals, n_signals), (50_000, users, -3), (0, users, n_profiles)):
        bad = field.copy()
        bad[at] = code
        args = (bad, signals) if field is users else (users, bad)
        with pytest.raises(ValueError, match=f"event {at} has profile"):
            K.accumulate(*got, *args, ts, values, LANDMARK, lam, backend=fast_backend)
        assert state_bytes(got) == before


def test_accumulate_exponent_edges(fast_backend: str) -> None:
    # Exponents across the whole float64 range: overflow to inf, subnormal results, exact 0 at t == L
    # with λ = inf and λ = 0, and the borders of the vectorised exp's range.
    exponents = np.concatenate(
        [np.linspace(-760.0, 720.0, 4001), [-745.2, -745.1, -708.0, -707.99, 708.0, 708.01, 709.8, 0.0]]
    )
    n = exponents.shape[0]
    lam = np.array([1e-3, np.inf, 0.0])
    ts = LANDMARK + np.round(exponents / 1e-3).astype(np.int64)
    users = np.arange(n, dtype=np.int64)
    for signal in range(3):
        signals = np.full(n, signal, dtype=np.int64)
        want = empty_state(n, 3)
        got = empty_state(n, 3)
        K.accumulate(*want, users, signals, ts, np.ones(n), LANDMARK, lam, backend="reference")
        K.accumulate(*got, users, signals, ts, np.ones(n), LANDMARK, lam, backend=fast_backend)
        assert_records_equal(got, want)


def test_accumulate_rejects_bad_codes_without_changing_state(backend: str) -> None:
    state = empty_state(4, 2)
    before = state_bytes(state)
    one = np.ones(3)
    args = (np.array([0, 1, 2]), np.array([0, 1, 2]), np.full(3, LANDMARK), one, LANDMARK, np.zeros(2))
    with pytest.raises(ValueError, match="event 2 has profile 2 / signal 2 outside the state's 4 x 2"):
        K.accumulate(*state, *args, backend=backend)
    with pytest.raises(ValueError, match="event 0 has profile -1"):
        K.accumulate(*state, np.array([-1]), np.array([0]), np.array([LANDMARK]), one[:1], LANDMARK,
                     np.zeros(2), backend=backend)  # fmt: skip
    assert state_bytes(state) == before


def test_fast_backends_reject_wrong_dtype_and_layout(fast_backend: str) -> None:
    acc, records = empty_state(4, 2)
    ok = (np.array([0]), np.array([0]), np.array([LANDMARK]), np.ones(1), LANDMARK, np.zeros(2))
    with pytest.raises(ValueError, match="users"):
        K.accumulate(acc, records, np.array([0], dtype=np.int32), *ok[1:], backend=fast_backend)
    with pytest.raises(ValueError, match="records"):
        K.accumulate(acc[:, :1], records[:, :1], *ok[:-1], np.zeros(1), backend=fast_backend)
    with pytest.raises(ValueError, match="records"):
        K.accumulate(acc, np.zeros((4, 2)), *ok, backend=fast_backend)
    with pytest.raises(ValueError, match="acc"):
        K.accumulate(acc[:3], records, *ok, backend=fast_backend)
    with pytest.raises(ValueError, match="acc"):
        K.accumulate(acc.astype(np.float32), records, *ok, backend=fast_backend)
    with pytest.raises(ValueError, match="length"):
        K.accumulate(acc, records, np.array([0, 1]), *ok[1:], backend=fast_backend)
    frozen_acc, frozen_records = empty_state(4, 2)
    frozen_records.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        K.accumulate(acc, frozen_records, *ok, backend=fast_backend)
    frozen_acc.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        K.accumulate(frozen_acc, records, *ok, backend=fast_backend)


def filled(rng: np.random.Generator, n_profiles: int, n_signals: int) -> State:
    state = empty_state(n_profiles, n_signals)
    users, signals, ts, values = random_events(rng, 4 * n_profiles, n_profiles, n_signals, 10**9)
    K.accumulate(*state, users, signals, ts, values, LANDMARK, np.full(n_signals, 1e-9), backend="reference")
    return state


def test_rebase_merge_decayed_raw_scores(fast_backend: str) -> None:
    rng = np.random.default_rng(7)
    a, b = filled(rng, 300, 5), filled(rng, 300, 5)
    factors = rng.uniform(0.0, 2.0, 5)
    for name in ("reference", fast_backend):
        got_a = copy_state(a)
        K.rebase(got_a[0], factors, backend=name)
        K.merge(*got_a, *b, backend=name)
        if name == "reference":
            want_a = got_a
        else:
            assert_records_equal(got_a, want_a)
    want_d = K.decayed(a[0], factors, backend="reference")
    np.testing.assert_allclose(K.decayed(a[0], factors, backend=fast_backend), want_d, rtol=RTOL)
    want_r = K.raw_scores(a[0], factors, backend="reference")
    np.testing.assert_allclose(K.raw_scores(a[0], factors, backend=fast_backend), want_r, rtol=RTOL)


@pytest.mark.parametrize("n_profiles", [0, 1, 9, 200_003])  # the last: up to 6 threads
def test_raw_scores_bit_identical_for_any_thread_count(fast_backend: str, n_profiles: int) -> None:
    rng = np.random.default_rng(n_profiles)
    acc = rng.standard_normal((n_profiles, 8)) * rng.uniform(0.0, 1e6, (n_profiles, 1))
    coefs = rng.uniform(-2.0, 2.0, 8)
    one = K.raw_scores(acc, coefs, backend=fast_backend)
    want = K.raw_scores(acc, coefs, backend="reference")
    np.testing.assert_allclose(one, want, rtol=RTOL, atol=1e-6)
    for threads in (2, 3, 7, 64):
        out = np.full(n_profiles, np.nan)
        K.raw_scores(acc, coefs, out, threads=threads, backend=fast_backend)
        assert out.tobytes() == one.tobytes(), threads


def test_raw_scores_rejects_no_threads(backend: str) -> None:
    from affinity_sdk.errors import AffinityError

    with pytest.raises(AffinityError, match="threads must be >= 1"):
        K.raw_scores(np.zeros((2, 2)), np.ones(2), threads=0, backend=backend)


values_strategy = st.lists(
    st.one_of(
        st.integers(-3, 40).map(float),
        st.floats(-1e6, 1e300, allow_nan=False),
        st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324]),
    ),
    max_size=300,
)
fraction_strategy = st.lists(st.floats(-0.5, 1.5, allow_nan=False), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(values=values_strategy, fractions=fraction_strategy)
def test_quantile_cutoffs_match_reference(
    fast_backend: str, values: list[float], fractions: list[float]
) -> None:
    v = np.array(values, dtype=np.float64)
    q = np.array(fractions, dtype=np.float64)
    want = K.quantile_cutoffs(v, q, backend="reference")
    np.testing.assert_array_equal(K.quantile_cutoffs(v, q, backend=fast_backend), want)


def test_quantile_cutoffs_large_with_ties(fast_backend: str) -> None:
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.random(200_000) * 100.0, np.zeros(50_000), np.full(10_000, 97.5)])
    rng.shuffle(v)
    q = np.array([0.0, 0.2, 0.6, 0.9, 0.99, 0.999999, 1.0])
    want = K.quantile_cutoffs(v, q, backend="reference")
    np.testing.assert_array_equal(K.quantile_cutoffs(v, q, backend=fast_backend), want)


@settings(max_examples=60, deadline=None)
@given(
    raw=st.lists(
        st.one_of(st.integers(-2, 30).map(float), st.floats(-10.0, 1e12, allow_nan=False)), max_size=200
    ),
    half_point=st.sampled_from([0.5, 1.0, 7.0, 1e9]),
    fractions=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
    margins=st.tuples(st.floats(0.0, 20.0), st.floats(0.0, 20.0)),
    seed=st.integers(0, 2**32 - 1),
)
def test_score_tiers_identical_across_backends(
    fast_backend: str,
    raw: list[float],
    half_point: float,
    fractions: tuple[float, float],
    margins: tuple[float, float],
    seed: int,
) -> None:
    r = np.array(raw, dtype=np.float64)
    previous = np.random.default_rng(seed).integers(-1, 3, r.shape[0]).astype(np.int8)
    q, m = np.array(sorted(fractions)), np.array(margins)
    want = K.score_tiers(r, half_point, q, m, previous, backend="reference")
    got = K.score_tiers(r, half_point, q, m, previous, backend=fast_backend)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(
        K.scores_100(r, half_point, backend=fast_backend), K.scores_100(r, half_point, backend="reference")
    )


def test_assign_tiers_hysteresis_and_low_rule(backend: str) -> None:
    values = np.array([0.0, 5.0, 5.0, 5.0, 9.0, 9.0, -1.0, np.nan])
    previous = np.array([2, -1, 1, 2, 0, 2, 2, 2], dtype=np.int8)
    tiers = K.assign_tiers(values, np.array([6.0, 10.0]), np.array([4.0, 8.0]), previous, backend=backend)
    # 0 never leaves Low; 5 enters nothing but keeps Medium (>= 4) and drops High -> Medium;
    # 9 enters Medium, keeps High (>= 8); negatives and NaN are Low.
    assert tiers.tolist() == [0, 0, 1, 1, 1, 2, 0, 0]


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(0, 12), st.integers(0, 9)),
    k=st.integers(0, 11),
    seed=st.integers(0, 2**32 - 1),
)
def test_topk_rows_and_csr_match_reference(
    fast_backend: str, shape: tuple[int, int], k: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    matrix = rng.integers(-3, 4, shape).astype(np.float64)
    matrix[rng.random(shape) < 0.1] = np.nan
    for g, w in zip(
        K.topk_rows(matrix, k, backend=fast_backend), K.topk_rows(matrix, k, backend="reference"), strict=True
    ):
        np.testing.assert_array_equal(g, w)
    lengths = rng.integers(0, 8, shape[0])
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = rng.permutation(max(int(indptr[-1]), 1) * 3)[: indptr[-1]].astype(np.int64)
    data = rng.integers(-2, 3, indptr[-1]).astype(np.float64)
    for g, w in zip(
        K.topk_csr(indptr, indices, data, k, backend=fast_backend),
        K.topk_csr(indptr, indices, data, k, backend="reference"),
        strict=True,
    ):
        np.testing.assert_array_equal(g, w)


def test_topk_csr_rejects_bad_indptr(fast_backend: str) -> None:
    with pytest.raises(ValueError, match="indptr"):
        K.topk_csr(np.array([0, 2, 1]), np.array([0]), np.array([1.0]), 1, backend=fast_backend)


def test_decay_factors_zero_and_inf_half_life() -> None:
    lam = LAM
    assert K.decay_factors(lam, 0).tolist() == [1.0] * 5
    f = K.decay_factors(lam, 1000)
    assert f[0] == 0.0 and f[-1] == 1.0 and f[1] == pytest.approx(0.5)


def cpp_module() -> Any:
    """The compiled extension, or skip the test."""
    from affinity_sdk._backends import native

    module = native()
    if module is None:
        pytest.skip("the C++ extension is not built")
    return module


def test_cpp_accumulate_any_block_size() -> None:
    # The C++ partition at block sizes from one profile per block up: the same state as the reference.
    module = cpp_module()
    rng = np.random.default_rng(11)
    n_profiles, n_signals = 30_000, 8
    lam = np.log(2.0) / (rng.uniform(1.0, 1e6, n_signals) * 1000.0)
    users, signals, ts, values = random_events(rng, 100_000, n_profiles, n_signals, 40 * 86_400_000)
    want = empty_state(n_profiles, n_signals)
    K.accumulate(*want, users, signals, ts, values, LANDMARK, lam, backend="reference")
    for block_bytes in (1, 4096, 100_000, 1 << 20):
        got = empty_state(n_profiles, n_signals)
        module.accumulate(*got, users, signals, ts, values, LANDMARK, lam, block_bytes=block_bytes)
        assert_records_equal(got, want)
    with pytest.raises(ValueError, match="block_bytes must be >= 1"):
        module.accumulate(*got, users, signals, ts, values, LANDMARK, lam, block_bytes=0)


def test_cpp_accumulate_scratch_kept_between_calls_and_threads() -> None:
    # The partition's scratch is kept between calls (one caller at a time; others allocate their
    # own): batches of growing and shrinking size, a release between them and four threads at once
    # all give the reference's state.
    from concurrent.futures import ThreadPoolExecutor

    module = cpp_module()
    rng = np.random.default_rng(12)
    n_profiles, n_signals = 40_000, 8
    lam = np.log(2.0) / (rng.uniform(1.0, 1e6, n_signals) * 1000.0)
    batches = [
        random_events(rng, n, n_profiles, n_signals, 40 * 86_400_000) for n in (70_000, 150_000, 80_000)
    ]

    def fold(
        events: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]],
    ) -> State:
        state = empty_state(n_profiles, n_signals)
        module.accumulate(*state, *events, LANDMARK, lam)
        return state

    wants = []
    for events in batches:
        want = empty_state(n_profiles, n_signals)
        K.accumulate(*want, *events, LANDMARK, lam, backend="reference")
        wants.append(want)
    for i, events in enumerate(batches):
        assert_records_equal(fold(events), wants[i])
    module.release_accumulate_scratch()
    assert_records_equal(fold(batches[1]), wants[1])
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(fold, [batches[i % 3] for i in range(8)]))
    for i, state in enumerate(got):
        assert state_bytes(state) == state_bytes(got[i % 3])
        assert_records_equal(state, wants[i % 3])
