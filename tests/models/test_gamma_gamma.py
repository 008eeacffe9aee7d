"""Gamma-Gamma: the published CDNOW estimates, an independent likelihood, lifetimes, properties."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy.special import gammaln

from affinity_sdk.errors import AffinityError, SchemaError
from affinity_sdk.models import gamma_gamma
from affinity_sdk.models.bgnbd import RFMSummary, summary_from_batch
from affinity_sdk.models.gamma_gamma import GammaGamma
from affinity_sdk.sim.cdnow import cdnow_orders

CDNOW = Path(__file__).parents[1] / "data" / "cdnow" / "cdnow_sample.csv"
CAL_END_MS = int(np.datetime64("1997-09-30", "ms").astype(np.int64))
#: Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value", on the same 946 repeat buyers.
PAPER = {"p": 6.2496, "q": 3.7442, "v": 15.4435}


@pytest.fixture(scope="module")
def summary() -> RFMSummary:
    return summary_from_batch(cdnow_orders(CDNOW), CAL_END_MS)


def oracle_ll(p: float, q: float, v: float, x: np.ndarray, m: np.ndarray) -> float:
    """The note's equation (4) summed over repeat buyers, term by term."""
    return float(
        np.sum(
            gammaln(p * x + q)
            - gammaln(p * x)
            - gammaln(q)
            + q * np.log(v)
            + (p * x - 1) * np.log(m)
            + p * x * np.log(x)
            - (p * x + q) * np.log(v + m * x)
        )
    )


def test_repeat_spend_is_the_mean_of_repeat_purchase_days(summary: RFMSummary) -> None:
    """Same-day records summed, the first day left out, calibration records only (checked
    against a plain-Python pass over the CSV)."""
    days: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with open(CDNOW, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["date"] <= "1997-09-30":
                days[row["sample_id"]][row["date"]] += float(row["dollars"])
    expected = {}
    for customer, spend in days.items():
        repeat = [spend[d] for d in sorted(spend)[1:]]
        expected[customer] = sum(repeat) / len(repeat) if repeat else 0.0
    assert summary.repeat_monetary is not None
    got = dict(zip(summary.customer.tolist(), summary.repeat_monetary.tolist(), strict=True))
    names = cdnow_orders(CDNOW).interners.users.names
    assert len(got) == len(expected) == 2357
    for code, value in got.items():
        assert value == pytest.approx(expected[names[code]], rel=1e-12)


def test_repeat_spend_matches_lifetimes_summary(summary: RFMSummary) -> None:
    utils = pytest.importorskip("lifetimes.utils")
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(CDNOW, dtype={"sample_id": str})
    theirs = utils.summary_data_from_transaction_data(
        frame,
        "sample_id",
        "date",
        monetary_value_col="dollars",
        observation_period_end="1997-09-30",
        freq="D",
    )
    names = cdnow_orders(CDNOW).interners.users.names
    ours = pd.Series(summary.repeat_monetary, index=[names[c] for c in summary.customer.tolist()])
    np.testing.assert_allclose(
        ours.loc[theirs.index].to_numpy(), theirs["monetary_value"].to_numpy(), rtol=1e-12
    )


def test_cdnow_reproduces_published_estimates(summary: RFMSummary) -> None:
    assert summary.repeat_monetary is not None
    model = GammaGamma().fit(summary.frequency, summary.repeat_monetary)
    p = model.params_
    assert p is not None
    assert p.n_customers == 946
    assert (p.p, p.q, p.v) == (
        pytest.approx(PAPER["p"], abs=5e-4),
        pytest.approx(PAPER["q"], abs=5e-4),
        pytest.approx(PAPER["v"], abs=5e-4),
    )
    repeat = summary.frequency > 0
    x, m = summary.frequency[repeat], summary.repeat_monetary[repeat]
    assert p.log_likelihood == pytest.approx(oracle_ll(p.p, p.q, p.v, x, m), rel=1e-12)
    # A maximum: moving any parameter by 0.1 % lowers the independent likelihood.
    for i in range(3):
        bumped = [p.p, p.q, p.v]
        for sign in (-1, 1):
            bumped[i] = [p.p, p.q, p.v][i] * (1 + sign * 1e-3)
            assert oracle_ll(*bumped, x, m) < p.log_likelihood


def test_cdnow_matches_lifetimes(summary: RFMSummary) -> None:
    lifetimes = pytest.importorskip("lifetimes")
    assert summary.repeat_monetary is not None
    repeat = summary.frequency > 0
    x, m = summary.frequency[repeat], summary.repeat_monetary[repeat]
    ours = GammaGamma().fit(summary.frequency, summary.repeat_monetary)
    theirs = lifetimes.GammaGammaFitter().fit(x, m)
    assert ours.params_ is not None
    for name in ("p", "q", "v"):
        assert getattr(ours.params_, name) == pytest.approx(theirs.params_[name], rel=1e-5)
    np.testing.assert_allclose(
        ours.conditional_expected_average_profit(x, m),
        theirs.conditional_expected_average_profit(x, m),
        rtol=1e-5,
    )


def test_gradient_and_hessian_match_finite_differences(summary: RFMSummary) -> None:
    assert summary.repeat_monetary is not None
    repeat = summary.frequency > 0
    data = gamma_gamma._Spend.of(
        summary.frequency[repeat], summary.repeat_monetary[repeat], np.linspace(0.5, 2.0, int(repeat.sum()))
    )
    for params in [(6.25, 3.74, 15.4), (0.8, 1.5, 200.0)]:
        theta = np.log(params)
        _, grad, hess = gamma_gamma._neg_ll(theta, data, order=2)
        step = 1e-5 * np.eye(3)
        # Central differences: of the value for the gradient, of the gradient for the Hessian.
        numeric_grad = [
            (gamma_gamma._neg_ll(theta + e, data)[0] - gamma_gamma._neg_ll(theta - e, data)[0]) / 2e-5
            for e in step
        ]
        numeric_hess = [
            (
                gamma_gamma._neg_ll(theta + e, data, order=1)[1]
                - gamma_gamma._neg_ll(theta - e, data, order=1)[1]
            )
            / 2e-5
            for e in step
        ]
        np.testing.assert_allclose(grad, numeric_grad, rtol=1e-6, atol=1e-6 * np.abs(grad).max())
        np.testing.assert_allclose(hess, numeric_hess, rtol=1e-6, atol=1e-6 * np.abs(hess).max())


def test_expected_spend_formula_and_shrinkage(summary: RFMSummary) -> None:
    assert summary.repeat_monetary is not None
    model = GammaGamma().fit(summary.frequency, summary.repeat_monetary)
    p = model.params_
    assert p is not None
    population = p.p * p.v / (p.q - 1)
    assert model.population_mean_spend() == pytest.approx(population)
    x = np.arange(0, 21, dtype=float)
    for own in (5.0, 80.0):
        e = model.conditional_expected_average_profit(x, np.full(x.shape, own))
        assert e[0] == pytest.approx(population)  # no repeat order: the population mean
        # The weight on the population mean, (q-1)/(px+q-1), falls with every repeat order.
        weight = (e[1:] - own) / (population - own)
        assert np.all(np.diff(weight) < 0) and np.all((0 < weight) & (weight < 1))
        np.testing.assert_allclose(weight, (p.q - 1) / (p.p * x[1:] + p.q - 1), rtol=1e-10)


def test_weights_equal_repeated_rows() -> None:
    x, m = np.array([1.0, 2, 5, 3]), np.array([20.0, 35, 28, 70])
    reps = np.array([3, 1, 2, 4])
    a = GammaGamma().fit(x, m, weights=reps).params_
    b = GammaGamma().fit(np.repeat(x, reps), np.repeat(m, reps)).params_
    assert a is not None and b is not None
    assert (a.p, a.q, a.v, a.log_likelihood) == pytest.approx((b.p, b.q, b.v, b.log_likelihood), rel=1e-7)


def test_currency_unit_scales_v_only(summary: RFMSummary) -> None:
    assert summary.repeat_monetary is not None
    dollars = GammaGamma().fit(summary.frequency, summary.repeat_monetary).params_
    cents = GammaGamma().fit(summary.frequency, summary.repeat_monetary * 100).params_
    assert dollars is not None and cents is not None
    assert (cents.p, cents.q, cents.v / 100) == pytest.approx((dollars.p, dollars.q, dollars.v), rel=1e-7)


def test_fit_recovers_simulated_parameters() -> None:
    p, q, v = 4.0, 5.0, 60.0
    rng = np.random.default_rng(3)
    n = 20_000
    nu = rng.gamma(q, 1.0 / v, n)
    x = rng.integers(1, 12, n).astype(float)
    m = rng.gamma(p * x, 1.0 / (nu * x))  # the mean of x Gamma(p, nu) orders
    fitted = GammaGamma().fit(x, m).params_
    assert fitted is not None
    assert (fitted.p, fitted.q, fitted.v) == pytest.approx((p, q, v), rel=0.1)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(
        SchemaError, match=r"Expected a finite spend >= 0, got -1.0 - at `monetary_value\[1\]`"
    ):
        GammaGamma().fit([1, 2], [10.0, -1.0])
    with pytest.raises(SchemaError, match=r"got nan - at `monetary_value\[0\]`"):
        GammaGamma().fit([1, 2], [float("nan"), 3.0])
    with pytest.raises(SchemaError, match=r"at `frequency\[0\]`"):
        GammaGamma().fit([1.5], [10.0])
    with pytest.raises(AffinityError, match="no customer has a repeat purchase"):
        GammaGamma().fit([0, 0], [10.0, 3.0])
    with pytest.raises(
        SchemaError, match=r"positive mean spend for a repeat buyer, got 0.0 - at `monetary_value\[1\]`"
    ):
        GammaGamma().fit([1, 2, 0], [10.0, 0.0, 0.0])
    with pytest.raises(AffinityError, match="not fitted"):
        GammaGamma().conditional_expected_average_profit([1], [10.0])
    # Zero spend is fine where there is no repeat order (frequency 0 carries no spend information).
    assert GammaGamma().fit([0, 1, 2, 3], [0.0, 10.0, 30.0, 20.0]).params_ is not None
