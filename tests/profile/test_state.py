"""DecayState properties on every backend: split / merged / reordered input gives the same state.

Floating-point sums are compared with relative tolerance 1e-9 (and an absolute floor of 1e-290 so
values at the bottom of float64's range, where one path underflows to 0 and another to a
subnormal, do not count as mismatches); counts and first / last seen are compared exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from affinity_sdk import DecayState
from affinity_sdk.kernels import REBASE_EXPONENT

T0 = 1_700_000_000_000
HALF_LIVES = {
    "mixed": [0.0, 1.0, 3600.0],
    "huge": [1e12, float("inf"), 86400.0],
    "tiny": [1e-3, 0.5, 30.0],
}

Events = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]


@st.composite
def event_batches(draw: st.DrawFn, max_events: int = 60) -> Events:
    n = draw(st.integers(0, max_events))
    spread = draw(st.sampled_from([0, 5, 10_000, 3_600_000, 40 * 86_400_000]))
    one_profile = draw(st.booleans())
    users = [0 if one_profile else draw(st.integers(0, 6)) for _ in range(n)]
    signals = [draw(st.integers(0, 2)) for _ in range(n)]
    ts = [T0 + draw(st.integers(0, spread)) for _ in range(n)]
    values = [draw(st.sampled_from([0.0, 1.0, 2.5, 1e6])) for _ in range(n)]
    return (
        np.array(users, dtype=np.int64),
        np.array(signals, dtype=np.int64),
        np.array(ts, dtype=np.int64),
        np.array(values, dtype=np.float64),
    )


def take(events: Events, index: NDArray[np.intp]) -> Events:
    u, s, t, v = events
    return u[index], s[index], t[index], v[index]


def build(half_lives: list[float], backend: str, *batches: Events) -> DecayState:
    state = DecayState(half_lives, backend=backend)
    for batch in batches:
        state.add(*batch)
    return state


def assert_same_decayed(a: DecayState, b: DecayState, now_ms: int) -> None:
    """Same profiles, counts, first / last seen, totals, and decayed values at ``now_ms``."""
    assert a.n_profiles == b.n_profiles
    ra, rb = a.records, b.records
    for field in ("count", "first_ms", "last_ms"):
        np.testing.assert_array_equal(ra[field], rb[field], err_msg=field)
    np.testing.assert_allclose(ra["total"], rb["total"], rtol=1e-9, atol=1e-290)
    if a.landmark_ms is not None:
        np.testing.assert_allclose(a.decayed(now_ms), b.decayed(now_ms), rtol=1e-9, atol=1e-290)


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(event_batches(), min_size=1, max_size=4), key=st.sampled_from(sorted(HALF_LIVES)))
def test_backends_agree_with_reference(backend: str, batches: list[Events], key: str) -> None:
    want = build(HALF_LIVES[key], "reference", *batches)
    got = build(HALF_LIVES[key], backend, *batches)
    assert got.landmark_ms == want.landmark_ms
    np.testing.assert_allclose(got.acc, want.acc, rtol=1e-9, atol=1e-290)
    np.testing.assert_allclose(got.records["total"], want.records["total"], rtol=1e-9, atol=1e-290)
    for field in ("count", "first_ms", "last_ms"):
        np.testing.assert_array_equal(got.records[field], want.records[field])
    newest = max((int(b[2].max()) for b in batches if b[2].shape[0]), default=T0)
    assert_same_decayed(got, want, newest + 1000)


@settings(max_examples=40, deadline=None)
@given(events=event_batches(120), key=st.sampled_from(sorted(HALF_LIVES)), data=st.data())
def test_order_and_split_invariance(backend: str, events: Events, key: str, data: st.DataObject) -> None:
    n = events[0].shape[0]
    whole = build(HALF_LIVES[key], backend, events)
    order = np.array(data.draw(st.permutations(list(range(n)))), dtype=np.intp)
    cut = data.draw(st.integers(0, n))
    # Out of order and split across batches: the late half may come first.
    split = build(HALF_LIVES[key], backend, take(events, order[cut:]), take(events, order[:cut]))
    now = int(events[2].max(initial=T0)) + 1
    assert_same_decayed(split, whole, now)


@settings(max_examples=40, deadline=None)
@given(a=event_batches(), b=event_batches(), key=st.sampled_from(sorted(HALF_LIVES)))
def test_merge_equals_union(backend: str, a: Events, b: Events, key: str) -> None:
    merged = build(HALF_LIVES[key], backend, a)
    merged.merge(build(HALF_LIVES[key], backend, b))
    union = build(HALF_LIVES[key], backend, tuple(np.concatenate(pair) for pair in zip(a, b, strict=True)))  # type: ignore[arg-type]
    now = int(max(a[2].max(initial=T0), b[2].max(initial=T0))) + 1
    assert_same_decayed(merged, union, now)


@settings(max_examples=30, deadline=None)
@given(x=st.integers(0, 10**7), y=st.integers(0, 10**7), events=event_batches())
def test_rebase_semigroup(backend: str, x: int, y: int, events: Events) -> None:
    half_lives = [60.0, 3600.0, 1e6]
    stepwise = build(half_lives, backend, events)
    direct = stepwise.copy()
    start = stepwise.landmark_ms if stepwise.landmark_ms is not None else T0
    stepwise.rebase(start + x)
    stepwise.rebase(start + x + y)
    direct.rebase(start + x + y)
    assert stepwise.landmark_ms == direct.landmark_ms
    np.testing.assert_allclose(stepwise.acc, direct.acc, rtol=1e-9, atol=1e-290)


@pytest.mark.parametrize("key", sorted(HALF_LIVES))
def test_decayed_matches_direct_sum(backend: str, key: str) -> None:
    rng = np.random.default_rng(11)
    n = 2000
    users, signals = rng.integers(0, 50, n), rng.integers(0, 3, n)
    ts = T0 + rng.integers(0, 600_000, n)
    values = rng.random(n)
    state = build(HALF_LIVES[key], backend, (users, signals, ts, values))
    now = T0 + 600_000
    lam = state.lam_per_ms[signals]
    with np.errstate(invalid="ignore"):
        weight = np.where(now == ts, 1.0, np.exp(-lam * (now - ts)))
    want = np.zeros((50, 3))
    np.add.at(want, (users, signals), values * weight)
    np.testing.assert_allclose(state.decayed(now), want, rtol=1e-9, atol=1e-290)


def test_landmark_rebases_at_the_edge(backend: str) -> None:
    state = DecayState([1.0], backend=backend)  # λ = ln 2 / 1000 per ms
    state.add(np.array([0]), np.array([0]), np.array([T0]), np.array([1.0]))
    edge = int(REBASE_EXPONENT / state.lam_per_ms[0])
    state.add(np.array([0]), np.array([0]), np.array([T0 + edge]), np.array([1.0]))
    assert state.landmark_ms == T0  # exactly at the limit: no rebase yet
    assert np.isfinite(state.acc).all()
    state.add(np.array([1]), np.array([0]), np.array([T0 + edge + 1]), np.array([1.0]))
    assert state.landmark_ms == T0 + edge + 1
    decayed = state.decayed(T0 + edge + 1)[:, 0]
    np.testing.assert_allclose(
        decayed, [np.exp(-state.lam_per_ms[0] * (edge + 1)) + np.exp(-state.lam_per_ms[0]), 1.0], rtol=1e-12
    )


def test_batch_equals_loop_of_single_updates(backend: str) -> None:
    rng = np.random.default_rng(5)
    n = 300
    events = (rng.integers(0, 20, n), rng.integers(0, 3, n), T0 + rng.integers(0, 10**8, n), rng.random(n))
    batch = build(HALF_LIVES["mixed"], backend, events)
    loop = build(HALF_LIVES["mixed"], backend, *(take(events, np.array([i])) for i in range(n)))
    assert_same_decayed(loop, batch, T0 + 10**8)


def test_growth_is_amortised_and_keeps_records(backend: str) -> None:
    state = DecayState([3600.0, 60.0], backend=backend)
    capacities = set()
    for u in range(0, 5000, 7):
        state.add(np.array([u]), np.array([u % 2]), np.array([T0 + u]), np.array([1.0]))
        capacities.add((state._acc.shape[0], state._records.shape[0]))
    assert len(capacities) <= 3  # 1024 -> 4096 -> 16384: geometric, not one copy per profile
    assert state.n_profiles == 4999  # the last code added is 4998
    assert int(state.records["count"].sum()) == len(range(0, 5000, 7))
    assert state.nbytes_per_profile == 2 * 40
    assert repr(state).startswith("DecayState(profiles=")


def test_add_accepts_other_integer_dtypes(backend: str) -> None:
    state = DecayState([3600.0], backend=backend)
    state.add(
        np.array([0, 1], dtype=np.int32), np.array([0, 0], dtype=np.int8), np.array([T0, T0]), np.ones(2)
    )
    assert state.records["count"].ravel().tolist() == [1, 1]


def test_zero_half_life_keeps_only_events_at_now(backend: str) -> None:
    state = DecayState([0.0], backend=backend)
    state.add(
        np.array([0, 0, 1]), np.array([0, 0, 0]), np.array([T0, T0 + 5, T0 + 5]), np.array([1.0, 2.0, 3.0])
    )
    assert state.decayed(T0 + 5)[:, 0].tolist() == [2.0, 3.0]
    assert state.decayed(T0 + 6)[:, 0].tolist() == [0.0, 0.0]


def test_acc_and_records_are_separate_contiguous_arrays(backend: str) -> None:
    # The layout made for scoring: the raw score streams `acc` alone, one row of doubles per profile.
    state = DecayState([3600.0, 60.0, 1.0], backend=backend)
    state.add(np.array([0, 2, 2]), np.array([1, 0, 2]), np.array([T0, T0, T0 + 5]), np.array([2.0, 3.0, 4.0]))
    assert state.acc.dtype == np.float64 and state.acc.shape == (3, 3) and state._acc.flags.c_contiguous
    assert state.acc.base is not state.records.base
    assert state.records["count"].tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 1]]
    raw = state.raw_scores(np.array([1.0, 10.0, 0.0]), T0)
    np.testing.assert_allclose(raw, state.decayed(T0) @ np.array([1.0, 10.0, 0.0]), rtol=1e-12)
    cleared = state.copy()
    cleared.clear_profiles(np.array([2]))
    assert cleared.acc[2].tolist() == [0.0, 0.0, 0.0] and cleared.records["count"][2].tolist() == [0, 0, 0]
    assert state.records["count"][2].tolist() == [1, 0, 1]  # the copy is independent


def test_a_container_saved_before_the_split_loads(backend: str) -> None:
    # Containers hold one 40-byte (acc, total, count, first_ms, last_ms) record per cell, as every
    # state was laid out before `acc` moved to its own array: build one by hand, as an old
    # version wrote it, and load it.
    from affinity_sdk.config import default_config
    from affinity_sdk.profile.signals import SignalView

    old_dtype = np.dtype(
        [("acc", "<f8"), ("total", "<f8"), ("count", "<i8"), ("first_ms", "<i8"), ("last_ms", "<i8")]
    )
    view = SignalView(default_config(), backend=backend)
    n, width = 3, view.state.n_signals
    old = np.zeros((n, width), dtype=old_dtype)
    old["first_ms"], old["last_ms"] = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    old[1, 0] = (2.5, 4.0, 2, T0, T0 + 9)
    old[2, width - 1] = (0.75, 1.0, 1, T0 + 3, T0 + 3)
    view.load_arrays({"landmark_ms": T0}, {"records": old}, n)
    assert view.state.acc.tolist() == old["acc"].tolist()
    for field in ("total", "count", "first_ms", "last_ms"):
        assert view.state.records[field].tolist() == old[field].tolist(), field
    weights = np.asarray(view.config.weights, dtype=np.float64)
    np.testing.assert_allclose(view.raw_scores(T0), old["acc"] @ weights, rtol=1e-12)
    # ... and it is saved the same way again, so older versions read what this one writes.
    _, arrays = view.to_arrays()
    assert arrays["records"].dtype == old_dtype and arrays["records"].tobytes() == old.tobytes()


def test_one_profile_raw_score_is_the_batch_one_bit_for_bit() -> None:
    # The compiled one-profile sum (raw_of, tier_of) and the batch kernel (eight profiles at a time,
    # on any number of threads) must give the same double for every profile.
    from affinity_sdk._backends import native
    from affinity_sdk.config import default_config
    from affinity_sdk.profile.signals import SignalView

    if native() is None:
        pytest.skip("the C++ extension is not built")
    view = SignalView(default_config(), backend="cpp")
    rng = np.random.default_rng(5)
    n, n_signals = 37, view.state.n_signals
    view.state.add(
        rng.integers(0, n, 2000), rng.integers(0, n_signals, 2000), T0 + rng.integers(0, 10**9, 2000),
        rng.uniform(0.0, 50.0, 2000),
    )  # fmt: skip
    now = T0 + 2 * 10**9
    batch = view.raw_scores(now)
    assert view.state.raw_scores(view.weights, now, threads=3).tobytes() == batch.tobytes()
    assert [view.raw_of(code, now) for code in range(n)] == batch.tolist()
