"""BG/NBD per-customer outputs pinned on CDNOW against values computed independently.

P(alive) and E[Y(t) | history] are evaluated here from Fader, Hardie & Lee (2005), equations (13)
and (10), with the Gaussian hypergeometric function summed as its power series (no call into the
SDK or into scipy's ``hyp2f1``), at the paper's published parameters, customer by customer;
lifetimes' ``BetaGeoFitter`` gives the same figures where it is installed. P(an order in the
horizon) and the time to reach a given chance of one are checked against a Monte-Carlo
simulation of the model's process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affinity_sdk.models.bgnbd import BGNBD, BGNBDParams, RFMSummary, summary_from_batch
from affinity_sdk.sim.cdnow import cdnow_orders

CDNOW = Path(__file__).parents[1] / "data" / "cdnow" / "cdnow_sample.csv"
CAL_END_MS = int(np.datetime64("1997-09-30", "ms").astype(np.int64))
#: The paper's maximum-likelihood estimates (Fader, Hardie & Lee 2005, section 4).
PAPER = (0.243, 4.414, 0.793, 2.426)
HORIZONS = (1.0, 39.0, 78.0)


@pytest.fixture(scope="module")
def summary() -> RFMSummary:
    return summary_from_batch(cdnow_orders(CDNOW), CAL_END_MS)


@pytest.fixture(scope="module")
def model() -> BGNBD:
    r, alpha, a, b = PAPER
    m = BGNBD(backend="reference")
    m.params_ = BGNBDParams(r=r, alpha=alpha, a=a, b=b, log_likelihood=float("nan"), n_customers=0)
    return m


def hyp2f1_series(a: np.ndarray, b: np.ndarray, c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """2F1(a, b; c; z) for |z| < 1 as its power series sum_k (a)_k (b)_k / (c)_k z^k / k!."""
    term = np.ones_like(z)
    total = np.ones_like(z)
    for k in range(10_000):
        term = term * (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total = total + term
        if np.all(np.abs(term) <= 1e-17 * np.abs(total)):
            return total
    raise AssertionError("the 2F1 series did not converge")


def paper_p_alive(x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Equation (13): P(alive | x, t_x, T) = 1 / (1 + delta_{x>0} a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))."""
    r, alpha, a, b = PAPER
    out = np.ones_like(x)
    rep = x > 0
    odds = a / (b + x[rep] - 1) * ((alpha + T[rep]) / (alpha + tx[rep])) ** (r + x[rep])
    out[rep] = 1.0 / (1.0 + odds)
    return out


def paper_expected(t: float, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Equation (10): E[Y(t) | x, t_x, T]."""
    r, alpha, a, b = PAPER
    z = t / (alpha + T + t)
    series = hyp2f1_series(r + x, b + x, a + b + x - 1, z)
    head = (a + b + x - 1) / (a - 1)
    body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * series
    # Equation (10) with its denominator written as 1 + odds, i.e. times P(alive).
    return head * body * paper_p_alive(x, tx, T)


def test_p_alive_matches_the_paper_per_customer(model: BGNBD, summary: RFMSummary) -> None:
    s = summary
    ours = model.conditional_probability_alive(s.frequency, s.recency, s.T)
    np.testing.assert_allclose(ours, paper_p_alive(s.frequency, s.recency, s.T), rtol=1e-6, atol=1e-12)
    # The sample spans live and long-lapsed customers; one-time buyers are alive by the model.
    assert ours.min() < 1e-6 and np.median(ours[s.frequency > 0]) > 0.5
    assert int((ours == 1.0).sum()) == int((s.frequency == 0).sum())


@pytest.mark.parametrize("t", HORIZONS)
def test_expected_purchases_match_the_paper_per_customer(model: BGNBD, summary: RFMSummary, t: float) -> None:
    s = summary
    ours = model.conditional_expected_purchases(t, s.frequency, s.recency, s.T)
    np.testing.assert_allclose(ours, paper_expected(t, s.frequency, s.recency, s.T), rtol=1e-6, atol=1e-12)


def test_fitted_outputs_match_lifetimes(summary: RFMSummary) -> None:
    lifetimes = pytest.importorskip("lifetimes")
    pd = pytest.importorskip("pandas")
    s = summary
    model = BGNBD().fit(s.frequency, s.recency, s.T)
    p = model.params_
    assert p is not None
    theirs = lifetimes.BetaGeoFitter()
    theirs.params_ = pd.Series({"r": p.r, "alpha": p.alpha, "a": p.a, "b": p.b})
    np.testing.assert_allclose(
        model.conditional_probability_alive(s.frequency, s.recency, s.T),
        theirs.conditional_probability_alive(s.frequency, s.recency, s.T),
        rtol=1e-6,
        atol=1e-12,
    )
    for t in HORIZONS:
        np.testing.assert_allclose(
            model.conditional_expected_purchases(t, s.frequency, s.recency, s.T),
            theirs.conditional_expected_number_of_purchases_up_to_time(t, s.frequency, s.recency, s.T),
            rtol=1e-6,
            atol=1e-12,
        )


def simulate_future(
    x: int, tx: float, T: float, t: float, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws of (weight, purchases in (T, T+t], first purchase time after T) given a history.

    (lambda, p) come from the prior; each draw is weighted by the likelihood of the history
    split by state at T (alive: survived x drop-out draws and silent since t_x; dead: dropped
    out at the x-th purchase), and the future is then simulated purchase by purchase.
    """
    r, alpha, a, b = PAPER
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    w_alive = lam**x * np.exp(-lam * T) * (1 - p) ** x
    w_dead = lam**x * np.exp(-lam * tx) * p * (1 - p) ** (x - 1) if x > 0 else np.zeros(n)
    alive = rng.random(n) < w_alive / (w_alive + w_dead)
    count = np.zeros(n)
    first = np.full(n, np.inf)
    clock = np.zeros(n)
    active = alive.copy()
    while active.any():
        clock[active] += rng.exponential(1.0 / lam[active])
        active &= clock <= t
        first = np.where(active & np.isinf(first), clock, first)
        count[active] += 1
        active &= rng.random(n) >= p  # drop out just after a purchase
    return w_alive + w_dead, count, first


@pytest.mark.parametrize(("x", "tx", "T"), [(0, 0.0, 32.0), (2, 30.0, 36.0), (2, 5.0, 36.0), (7, 33.0, 38.0)])
def test_purchase_probability_matches_simulation(model: BGNBD, x: int, tx: float, T: float) -> None:
    t = 39.0
    weight, count, first = simulate_future(x, tx, T, t, 400_000, seed=x * 1000 + int(tx))
    w = weight / weight.sum()
    ess = 1.0 / np.sum(w**2)
    assert ess > 2_000
    bought = (count > 0).astype(float)
    p_sim = float(w @ bought)
    se = np.sqrt(p_sim * (1 - p_sim) / ess)
    p_ours = float(model.conditional_probability_of_purchase(t, [x], [tx], [T])[0])
    assert p_ours == pytest.approx(p_sim, abs=5 * se + 1e-3)
    e_sim = float(w @ count)
    e_se = np.sqrt(float(w @ (count - e_sim) ** 2) / ess)
    assert float(model.conditional_expected_purchases(t, [x], [tx], [T])[0]) == pytest.approx(
        e_sim, abs=5 * e_se + 1e-3
    )
    # The horizon at which that chance reaches its simulated median among buyers' first orders.
    q = 0.5 * p_ours
    t_q = float(model.conditional_time_to_purchase(q, [x], [tx], [T])[0])
    assert t_q < t
    assert float(w @ (first <= t_q)) == pytest.approx(q, abs=5 * se + 1e-3)


def test_purchase_probability_limits(model: BGNBD, summary: RFMSummary) -> None:
    s = summary
    p_alive = model.conditional_probability_alive(s.frequency, s.recency, s.T)
    assert np.all(model.conditional_probability_of_purchase(0.0, s.frequency, s.recency, s.T) == 0.0)
    far = model.conditional_probability_of_purchase(1e40, s.frequency, s.recency, s.T)
    np.testing.assert_allclose(far, p_alive, rtol=1e-3)
    near, later = (
        model.conditional_probability_of_purchase(t, s.frequency, s.recency, s.T) for t in (10, 39)
    )
    assert np.all(near <= later) and np.all(later <= p_alive)
    # Never reached: a chance above P(alive).
    t_q = model.conditional_time_to_purchase(0.5, s.frequency, s.recency, s.T)
    assert np.array_equal(np.isinf(t_q), p_alive <= 0.5)
    back = model.conditional_probability_of_purchase
    finite = np.flatnonzero(np.isfinite(t_q))[:50]
    for i in finite.tolist():
        got = back(float(t_q[i]), s.frequency[i : i + 1], s.recency[i : i + 1], s.T[i : i + 1])
        assert float(got[0]) == pytest.approx(0.5, abs=1e-9)
