"""Parity of the Numba kernels without a C++ twin against their reference twins.

The event-id window's probe (``kernels._dedupe_*``), the logistic scorer (``kernels._propensity_*``)
and the BG/NBD likelihood (``kernels._bgnbd_*``). The reference is the oracle: the probe must agree
exactly (answers, resume index, tables), the two floating-point kernels up to a bound on the
rounding of their different summation orders, derived per case below. ``fast_backend`` is each
compiled backend available; ``"cpp"`` runs the Numba twin (there is no C++ one).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

from affinity_sdk import available_backends
from affinity_sdk.ingest import dedupe
from affinity_sdk.ingest.dedupe import EventIdWindow
from affinity_sdk.kernels import _bgnbd_reference, _dedupe_reference, _propensity_reference
from affinity_sdk.models import bgnbd, propensity
from affinity_sdk.models.bgnbd import BGNBD
from affinity_sdk.models.propensity import Calibrator, FeatureSpec, PropensityModel

EPS = float(np.finfo(np.float64).eps)
U64_MAX = 2**64 - 1


def test_cpp_runs_the_numba_twin_and_nothing_imports_numba_early() -> None:
    for impl in (propensity._impl, bgnbd._impl):
        assert impl("cpp") is impl("numba")
        assert impl("reference").__name__.endswith("_reference")
    assert dedupe._impl("reference").__name__.endswith("_reference")
    if "cpp" in available_backends():  # the window's probe has a C++ twin (csrc/dedupe.hpp)
        assert dedupe._impl("cpp").__name__ == "affinity_sdk._native"
    code = (
        "import sys\n"
        "import affinity_sdk.ingest.dedupe, affinity_sdk.models.bgnbd, affinity_sdk.models.propensity\n"
        "assert 'numba' not in sys.modules, 'numba imported at module import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the event-id window's probe ----------------------------------------------------------------

# A small pool (so ids repeat and probe paths collide) and the whole uint64 range (0 included).
KEY = st.one_of(st.integers(0, 40), st.integers(0, U64_MAX), st.sampled_from([0, 1, 2**63, U64_MAX]))


def _table(keys: list[int], bits: int) -> tuple[NDArray[np.uint64], int]:
    """A table of ``2 · 2**bits`` slots holding the first ``2**bits`` distinct non-zero ``keys``
    (load at most 1/2, as the window keeps it), filled by the reference probe; and its count."""
    size = 1 << bits
    table = np.zeros(2 * size, dtype=np.uint64)
    ids = np.array(list(dict.fromkeys(k for k in keys if k))[:size], dtype=np.uint64)
    dup = np.zeros(ids.shape[0], dtype=np.bool_)
    empty = np.zeros_like(table)
    _, inserted = _dedupe_reference.probe_insert(table, empty, ids, dup, 0, size, 64 - (bits + 1))
    assert inserted == ids.shape[0]
    return table, inserted


@settings(max_examples=150, deadline=None)
@given(
    bits=st.integers(0, 5),
    old_keys=st.lists(KEY, max_size=40),
    cur_keys=st.lists(KEY, max_size=40),
    keys=st.lists(KEY, max_size=80),
    start=st.integers(0, 90),
    room_draw=st.integers(0, 1 << 5),
)
def test_probe_insert_matches_reference(
    fast_backend: str,
    bits: int,
    old_keys: list[int],
    cur_keys: list[int],
    keys: list[int],
    start: int,
    room_draw: int,
) -> None:
    size = 1 << bits
    old, _ = _table(old_keys, bits)
    cur, count = _table(cur_keys, bits)
    room = min(room_draw, size - count)  # the window never lets the current generation overfill
    ids = np.array(keys, dtype=np.uint64)
    shift = 64 - (bits + 1)
    pattern = np.arange(ids.shape[0]) % 3 == 0  # left alone before `start` and after the stop

    want_cur, want_old, want_dup = cur.copy(), old.copy(), pattern.copy()
    want = _dedupe_reference.probe_insert(want_cur, want_old, ids, want_dup, start, room, shift)
    got_cur, got_old, got_dup = cur.copy(), old.copy(), pattern.copy()
    got = dedupe._impl(fast_backend).probe_insert(got_cur, got_old, ids, got_dup, start, room, shift)

    assert got == want
    assert all(type(v) is int for v in got)
    np.testing.assert_array_equal(got_dup, want_dup)
    np.testing.assert_array_equal(got_cur, want_cur)
    np.testing.assert_array_equal(got_old, old)
    np.testing.assert_array_equal(want_old, old)  # the previous generation is only read
    assert want[1] <= room and (want[0] == max(start, ids.shape[0]) or want[1] == room)


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 16), batches=st.lists(st.lists(KEY, max_size=40), max_size=6))
def test_window_matches_reference(fast_backend: str, capacity: int, batches: list[list[int]]) -> None:
    """Whole windows over several calls: small capacities rotate generations often."""
    want = EventIdWindow(capacity, backend="reference")
    got = EventIdWindow(capacity, backend=fast_backend)
    for batch in batches:
        ids = np.array(batch, dtype=np.uint64)
        np.testing.assert_array_equal(got.seen(ids), want.seen(ids))
        assert len(got) == len(want)
    for name, held in want.to_arrays().items():
        np.testing.assert_array_equal(got.to_arrays()[name], held, err_msg=name)


def test_window_edge_cases(backend: str) -> None:
    def seen(window: EventIdWindow, ids: list[int]) -> list[bool]:
        out: list[bool] = window.seen(np.array(ids, dtype=np.uint64)).tolist()
        return out

    window = EventIdWindow(4, backend=backend)
    assert window.backend == backend and f"backend={backend!r}" in repr(window)
    assert seen(window, []) == [] and len(window) == 0
    assert seen(window, [0, 0, 0]) == [False] * 3 and len(window) == 0  # id 0: never a replay
    assert seen(window, [7]) == [False] and seen(window, [7]) == [True]
    assert seen(window, [U64_MAX, 2**63, U64_MAX, 0]) == [False, False, True, False]

    # A full generation rotates in the middle of a call, twice: 1..4 fill it, 5 rotates (1..4
    # become the previous generation), 5..8 fill the new one, 9 rotates again (1..4 dropped).
    window = EventIdWindow(4, backend=backend)
    assert seen(window, list(range(1, 10))) == [False] * 9
    assert len(window) == 5
    assert seen(window, [5, 6, 7, 8, 9]) == [True] * 5
    assert seen(window, [1]) == [False]
    # A replay inside the call that fills the generation, and one right after a rotation.
    window = EventIdWindow(2, backend=backend)
    assert seen(window, [1, 2, 1, 3, 3, 2]) == [False, False, True, False, True, True]

    clone = EventIdWindow.from_arrays(4, **window.to_arrays(), backend=backend)
    assert clone.backend == backend
    assert seen(clone, [1, 2, 3, 4]) == [True, True, True, False]


# --- the logistic scorer ------------------------------------------------------------------------


def _assert_probabilities_close(
    got: NDArray[np.float64],
    want: NDArray[np.float64],
    X: NDArray[np.float64],
    weight: NDArray[np.float64],
    bias: float,
    a: float,
    b: float,
) -> None:
    """``z = a (bias + X w) + b`` summed in different orders differs by at most
    ``(f + 2) eps · scale`` (``scale`` the same sum in absolute values); ``σ`` moves by at most
    ``min(p, 1 - p) |Δz|`` for it, plus the rounding of ``σ`` itself."""
    f = X.shape[1]
    scale = abs(a) * (abs(bias) + np.abs(X) @ np.abs(weight)) + abs(b)
    dz = 4.0 * (f + 2) * EPS * scale
    slack = 2.0 * np.minimum(want, 1.0 - want) * dz + 4.0 * EPS * want + 1e-300
    bad = ~(np.abs(got - want) <= slack)
    assert not bad.any(), (got[bad], want[bad], slack[bad])


FEATURE = st.floats(-1e3, 1e3, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 40),
    f=st.integers(0, 6),
    bias=st.floats(-50, 50),
    platt=st.one_of(st.just((1.0, 0.0)), st.tuples(st.floats(-5, 5), st.floats(-50, 50))),
)
def test_logistic_scores_match_reference(
    fast_backend: str, data: st.DataObject, n: int, f: int, bias: float, platt: tuple[float, float]
) -> None:
    X = data.draw(arrays(np.float64, (n, f), elements=FEATURE))
    weight = data.draw(arrays(np.float64, f, elements=st.floats(-50, 50)))
    a, b = platt
    want = np.full(n, -1.0)
    got = np.full(n, -1.0)
    _propensity_reference.logistic_scores(X, weight, bias, a, b, want)
    propensity._impl(fast_backend).logistic_scores(X, weight, bias, a, b, got)
    assert np.all((want >= 0.0) & (want <= 1.0))
    _assert_probabilities_close(got, want, X, weight, bias, a, b)


def test_logistic_scores_edges(fast_backend: str) -> None:
    weight = np.array([1.0, -2.0])
    # z = 0, ±40 (p near 0 / 1 but representable), ±800 (saturated: exactly 0 and 1), and NaN
    X = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 20.0], [800.0, 0.0], [0.0, 400.0], [np.nan, 1.0]])
    want = np.empty(6)
    got = np.empty(6)
    _propensity_reference.logistic_scores(X, weight, 0.0, 1.0, 0.0, want)
    propensity._impl(fast_backend).logistic_scores(X, weight, 0.0, 1.0, 0.0, got)
    assert want[0] == got[0] == 0.5
    assert want[3] == got[3] == 1.0 and want[4] == got[4] == 0.0
    assert np.isnan(want[5]) and np.isnan(got[5])
    _assert_probabilities_close(got[:5], want[:5], X[:5], weight, 0.0, 1.0, 0.0)
    for rows, features in ((0, 2), (1, 0), (0, 0)):  # empty, and no features (bias only)
        X = np.zeros((rows, features))
        want, got = np.full(rows, -1.0), np.full(rows, -1.0)
        _propensity_reference.logistic_scores(X, np.zeros(features), 1.5, 2.0, -1.0, want)
        propensity._impl(fast_backend).logistic_scores(X, np.zeros(features), 1.5, 2.0, -1.0, got)
        np.testing.assert_allclose(got, want, rtol=4 * EPS)
        np.testing.assert_allclose(want, 1.0 / (1.0 + np.exp(-2.0)), rtol=4 * EPS)


@pytest.mark.parametrize("calibrator", [Calibrator(), Calibrator(kind="platt", a=1.7, b=-0.4)])
def test_predict_proba_backends_agree(fast_backend: str, calibrator: Calibrator) -> None:
    rng = np.random.default_rng(11)
    f = 4
    model = PropensityModel(
        outcome="purchase", feature_names=tuple(f"x{i}" for i in range(f)), spec=FeatureSpec(),
        horizon_ms=1, mean=rng.normal(size=f), scale=rng.uniform(0.5, 2.0, f), coef=rng.normal(size=f),
        intercept=-0.3, calibrator=calibrator, l2=1.0, training_window_ms=(0, 1), n_train=1,
    )  # fmt: skip
    X = rng.normal(size=(500, f)) * 3.0
    want = model.predict_proba(X, backend="reference")
    got = model.predict_proba(X, backend=fast_backend)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(X, backend="auto"))


# --- the BG/NBD likelihood ----------------------------------------------------------------------


def _bgnbd_slack(
    log_params: NDArray[np.float64],
    x: NDArray[np.int64],
    tx: NDArray[np.float64],
    big_t: NDArray[np.float64],
    w: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Allowed |difference| of (value, 4 gradient entries) between two summation orders.

    Each is a weighted sum of per-customer terms; ``mag`` bounds the absolute values summed (the
    prefix sums over ``k < x`` included), so reordering costs a few ``eps · mag``. The gradient also
    goes through the log-sum-exp weights ``softmax(A_3, A_4)``, whose exponents carry a rounding
    error of ``eps · |A|``: hence the factor ``1 + |A_3| + |A_4|`` there.
    """
    r, alpha, a, b = np.exp(log_params)
    prev = np.maximum(x - 1, 0)
    log_r = np.maximum(np.abs(np.log(r)), np.abs(np.log(r + prev)))
    log_b = np.maximum(np.abs(np.log(b)), np.abs(np.log(b + prev)))
    log_ab = np.maximum(np.abs(np.log(a + b)), np.abs(np.log(a + b + prev)))
    rx = r + x
    log_at = np.abs(np.log(alpha + big_t))
    log_atx = np.abs(np.log(alpha + tx))
    a3 = rx * log_at
    a4 = np.abs(np.log(a)) + np.abs(np.log(np.where(x > 0, b + x - 1.0, 1.0))) + rx * log_atx
    cond = 1.0 + a3 + a4
    mag = np.array(
        [
            np.sum(w * (r * abs(np.log(alpha)) + x * (log_r + log_b + log_ab) + a3 + a4)),
            np.sum(w * (r * abs(np.log(alpha)) + x + r * (log_at + log_atx)) * cond),
            np.sum(w * (r + 2.0 * rx) * cond),
            np.sum(w * (x + 1.0) * cond),
            np.sum(w * (2.0 * x + 1.0) * cond),
        ]
    )
    return 64.0 * EPS * mag + 1e-300


def _assert_bgnbd_parity(
    fast_backend: str,
    log_params: NDArray[np.float64],
    x: NDArray[np.int64],
    tx: NDArray[np.float64],
    big_t: NDArray[np.float64],
    w: NDArray[np.float64],
) -> None:
    want_grad = np.full(4, np.nan)
    got_grad = np.full(4, np.nan)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        want = _bgnbd_reference.neg_ll_grad(log_params, x, tx, big_t, w, want_grad)
    got = bgnbd._impl(fast_backend).neg_ll_grad(log_params, x, tx, big_t, w, got_grad)
    assert type(got) is float and type(want) is float
    assert np.isfinite(want) and np.all(np.isfinite(want_grad))
    diff = np.abs(np.r_[got - want, got_grad - want_grad])
    slack = _bgnbd_slack(log_params, x, tx, big_t, w)
    assert np.all(diff <= slack), (diff, slack, want, want_grad)


LOG_PARAM = st.one_of(st.floats(-20.0, 20.0), st.sampled_from([-20.0, 0.0, 20.0]))  # the fit's bounds


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    log_params=arrays(np.float64, 4, elements=LOG_PARAM),
    n=st.integers(0, 30),
)
def test_neg_ll_grad_matches_reference(
    fast_backend: str, data: st.DataObject, log_params: NDArray[np.float64], n: int
) -> None:
    x = data.draw(arrays(np.int64, n, elements=st.one_of(st.integers(0, 12), st.integers(0, 3000))))
    big_t = data.draw(
        arrays(np.float64, n, elements=st.one_of(st.sampled_from([0.0, 1e-9, 1e4]), st.floats(0.0, 1e4)))
    )
    share = data.draw(arrays(np.float64, n, elements=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1))))
    w = data.draw(arrays(np.float64, n, elements=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1e3))))
    _assert_bgnbd_parity(fast_backend, log_params, x, share * big_t, big_t, w)


CORNERS = [np.array(p, dtype=np.float64) for p in np.ndindex(3, 3, 3, 3)]


@pytest.mark.parametrize("corner", CORNERS, ids=lambda c: ",".join(str(int(v)) for v in c))
def test_neg_ll_grad_extreme_parameters(fast_backend: str, corner: NDArray[np.float64]) -> None:
    """Every combination of log-parameters -20, 0, 20 (the fit's bounds) on customers with no,
    one and many repeat purchases, recency 0 and T, and T of 0, tiny and large."""
    log_params = (corner - 1.0) * 20.0
    x = np.array([0, 0, 1, 1, 1, 7, 250, 3000], dtype=np.int64)
    big_t = np.array([0.0, 1e4, 1e-9, 52.0, 52.0, 39.0, 1e4, 1e4])
    tx = np.array([0.0, 0.0, 0.0, 0.0, 52.0, 20.0, 9e3, 1e4])
    _assert_bgnbd_parity(fast_backend, log_params, x, tx, big_t, np.ones(8))
    _assert_bgnbd_parity(fast_backend, log_params, x, tx, big_t, np.array([0, 1, 0, 2, 0, 3, 0, 1e3]))


def test_neg_ll_grad_edges(backend: str) -> None:
    theta = np.log([0.5, 3.0, 0.8, 2.5])
    kernel = bgnbd._impl(backend).neg_ll_grad
    grad = np.full(4, np.nan)
    empty = np.zeros(0)
    assert kernel(theta, np.zeros(0, np.int64), empty, empty, empty, grad) == 0.0
    np.testing.assert_array_equal(grad, 0.0)
    # one customer without a repeat purchase: l = r ln(alpha) - r ln(alpha + T)
    r, alpha = 0.5, 3.0
    value = kernel(theta, np.array([0]), np.array([0.0]), np.array([10.0]), np.ones(1), grad)
    assert value == pytest.approx(-(r * np.log(alpha) - r * np.log(alpha + 10.0)), rel=1e-14)
    np.testing.assert_allclose(grad[2:], 0.0, atol=0.0)  # a and b do not enter it
    # a zero weight drops the row; a weight of 2 counts it twice
    x, tx, big_t = np.array([0, 2, 5]), np.array([0.0, 10.0, 30.0]), np.array([39.0, 35.0, 38.0])
    g_drop, g_two, g_once = np.empty(4), np.empty(4), np.empty(4)
    dropped = kernel(theta, x, tx, big_t, np.array([1.0, 0.0, 1.0]), g_drop)
    subset = kernel(theta, x[[0, 2]], tx[[0, 2]], big_t[[0, 2]], np.ones(2), g_once)
    assert dropped == pytest.approx(subset, rel=1e-14)
    np.testing.assert_allclose(g_drop, g_once, rtol=1e-13)
    twice = kernel(theta, x, tx, big_t, np.full(3, 2.0), g_two)
    once = kernel(theta, x, tx, big_t, np.ones(3), g_once)
    assert twice == pytest.approx(2.0 * once, rel=1e-14)
    np.testing.assert_allclose(g_two, 2.0 * g_once, rtol=1e-13)


def test_bgnbd_fit_backends_agree(fast_backend: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 9, 400).astype(float)
    big_t = rng.uniform(20, 40, 400)
    tx = np.where(x > 0, rng.uniform(0, 1, 400) * big_t, 0.0)
    ref = BGNBD(backend="reference").fit(x, tx, big_t)
    fast = BGNBD(backend=fast_backend).fit(x, tx, big_t)
    assert ref.backend == "reference" and fast.backend == fast_backend
    assert f"backend={fast_backend!r}" in repr(fast)
    assert ref.params_ is not None and fast.params_ is not None
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fast.params_, name) == pytest.approx(getattr(ref.params_, name), rel=1e-5), name
    assert fast.params_.log_likelihood == pytest.approx(ref.params_.log_likelihood, rel=1e-10)
    assert ref.log_likelihood(x, tx, big_t) == pytest.approx(fast.log_likelihood(x, tx, big_t), rel=1e-10)
    # the module-level function picks a kernel the same way
    grad = np.empty(4)
    theta = np.zeros(4)
    xi = x.astype(np.int64)
    want = bgnbd._neg_ll_grad(theta, xi, tx, big_t, np.ones(400), grad, backend="reference")
    assert bgnbd._neg_ll_grad(
        theta, xi, tx, big_t, np.ones(400), grad, backend=fast_backend
    ) == pytest.approx(want, rel=1e-12)
