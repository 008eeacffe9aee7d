"""SpendForecast: no look-ahead, determinism, shapes, the BG/NBD special case, shrinkage, CDNOW."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affinity_sdk.errors import AffinityError, ConfigError
from affinity_sdk.models.bgnbd import BGNBD, summary_from_transactions
from affinity_sdk.models.spend_forecast import (
    SpendForecast,
    _poisson_fit,
    order_history,
    shrunk_day_spend,
    window_totals,
)
from affinity_sdk.sim.cdnow import cdnow_orders

DAY = 86_400_000
CDNOW = Path(__file__).parents[1] / "data" / "cdnow" / "cdnow_sample.csv"
CAL_END_MS = int(np.datetime64("1997-09-30", "ms").astype(np.int64))

Log = tuple[np.ndarray, np.ndarray, np.ndarray]


def shop(seed: int, n: int = 400) -> Log:
    """Customers who buy at their own rate until an exponential lifetime ends; gamma spend."""
    rng = np.random.default_rng(seed)
    records = rng.poisson(rng.gamma(1.0, 6.0, n)) + 1
    customer = np.repeat(np.arange(n), records)
    start = rng.integers(0, 60, n)[customer]
    ts = (start + rng.uniform(0, 1, customer.size) * rng.exponential(250.0, n)[customer]).astype(
        np.int64
    ) * DAY
    amount = np.round(rng.gamma(2.0, 15.0, customer.size) * rng.gamma(4.0, 0.25, n)[customer], 2)
    return customer, ts, amount


@pytest.fixture(scope="module")
def log() -> Log:
    return shop(11)


def fitted(log: Log, **options: object) -> SpendForecast:
    return SpendForecast(**options).fit(*log, cutoff=120 * DAY, horizon="8w")  # type: ignore[arg-type]


def test_no_order_after_the_cutoff_changes_any_prediction(log: Log) -> None:
    model = fitted(log)
    c, t, a = log
    before = model.predict(c, t, a, cutoff=200 * DAY, horizon="10w")
    rng = np.random.default_rng(3)
    extra = rng.integers(0, 500, 300)  # old and brand-new customers, all after the cutoff
    c2 = np.concatenate([c, extra])
    t2 = np.concatenate([t, 200 * DAY + 1 + rng.integers(0, 400 * DAY, 300)])
    a2 = np.concatenate([a, rng.gamma(2.0, 50.0, 300)])
    after = model.predict(c2, t2, a2, cutoff=200 * DAY, horizon="10w")
    for name in ("customer", "purchases", "spend_per_day", "spend", "bgnbd"):
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name), err_msg=name)


def test_fit_reads_nothing_after_its_window(log: Log) -> None:
    c, t, a = log
    window_end = 120 * DAY + 8 * 7 * DAY
    later = t > window_end
    shuffled_amounts = a.copy()
    shuffled_amounts[later] = a[later][::-1] * 3.0
    moved = t.copy()
    moved[later] = window_end + 1 + (t[later] - window_end) // 2
    one = fitted(log)
    two = SpendForecast().fit(c, moved, shuffled_amounts, cutoff=120 * DAY, horizon="8w")
    np.testing.assert_array_equal(one.coef_, two.coef_)
    assert one.intercept_ == two.intercept_


def test_deterministic_and_independent_of_row_order(log: Log) -> None:
    c, t, a = log
    perm = np.random.default_rng(5).permutation(c.shape[0])
    one = fitted(log).predict(c, t, a, cutoff=200 * DAY, horizon="10w")
    two = fitted((c[perm], t[perm], a[perm])).predict(
        c[perm], t[perm], a[perm], cutoff=200 * DAY, horizon="10w"
    )
    np.testing.assert_allclose(two.purchases, one.purchases, rtol=1e-9)
    np.testing.assert_allclose(two.spend, one.spend, rtol=1e-9)
    again = fitted(log).predict(c, t, a, cutoff=200 * DAY, horizon="10w")
    np.testing.assert_array_equal(again.spend, one.spend)


def test_shapes_rows_are_the_customers_seen_by_the_cutoff(log: Log) -> None:
    c, t, a = log
    f = fitted(log).predict(c, t, a, cutoff=90 * DAY, horizon="4w")
    seen = np.unique(c[t <= 90 * DAY])
    np.testing.assert_array_equal(f.customer, seen)
    for arr in (f.purchases, f.spend_per_day, f.spend, f.bgnbd):
        assert arr.shape == seen.shape and np.all(np.isfinite(arr)) and np.all(arr >= 0)
    np.testing.assert_allclose(f.spend, f.purchases * f.spend_per_day)


def test_without_correction_it_is_bgnbd(log: Log) -> None:
    c, t, a = log
    model = fitted(log, features=(), fit_intercept=False)
    f = model.predict(c, t, a, cutoff=200 * DAY, horizon="10w")
    s = summary_from_transactions(c, t, 200 * DAY)
    expected = (
        BGNBD()
        .fit(s.frequency, s.recency, s.T)
        .conditional_expected_purchases(10.0, s.frequency, s.recency, s.T)
    )
    np.testing.assert_allclose(f.purchases, expected, rtol=1e-5)


def test_keep_total_moves_purchases_between_customers_only(log: Log) -> None:
    c, t, a = log
    model = fitted(log, fit_intercept=False)
    f = model.predict(c, t, a, cutoff=200 * DAY, horizon="10w")
    assert f.purchases.sum() == pytest.approx(f.bgnbd.sum(), rel=1e-12)
    assert not np.allclose(f.purchases, f.bgnbd)  # the features do move purchases
    free = fitted(log, fit_intercept=False, keep_total=False).predict(
        c, t, a, cutoff=200 * DAY, horizon="10w"
    )
    assert free.purchases.sum() != pytest.approx(f.bgnbd.sum(), rel=1e-6)


def test_poisson_fit_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40_000, 2))
    offset = np.log(rng.uniform(0.2, 3.0, 40_000))
    y = rng.poisson(np.exp(offset + 0.3 + X @ np.array([0.5, -0.25]))).astype(np.float64)
    b0, b = _poisson_fit(X, offset, y, l2=0.0, intercept=True)
    assert b0 == pytest.approx(0.3, abs=0.03)
    np.testing.assert_allclose(b, [0.5, -0.25], atol=0.03)
    _, shrunk = _poisson_fit(X, offset, y, l2=1e5, intercept=True)
    assert np.all(np.abs(shrunk) < np.abs(b))


def test_window_totals_match_a_loop(log: Log) -> None:
    c, t, a = log
    ids = np.unique(c)[::2]
    days, dollars = window_totals(c, t, a, ids, 100 * DAY, 180 * DAY)
    for k, who in enumerate(ids):
        mine = (c == who) & (t > 100 * DAY) & (t <= 180 * DAY)
        assert days[k] == len(set((t[mine] // DAY).tolist()))
        assert dollars[k] == pytest.approx(a[mine].sum())


def test_shrinkage_trusts_customers_with_more_days() -> None:
    # Customer 0 has one $200 day, customer 1 eight days around $200 (same mean log); 200 others
    # two days each around $20. The one with more days keeps more of their own level.
    rng = np.random.default_rng(1)
    own = np.exp(rng.normal(np.log(20.0), 0.5, 200))
    c = [0] + [1] * 8 + list(np.repeat(np.arange(2, 202), 2))
    t = [0] + [k * DAY for k in range(8)] + [0, DAY] * 200
    a = np.concatenate(
        [[200.0], 200.0 * np.exp(0.3 * np.array([1, -1] * 4)), np.repeat(own, 2) * np.tile([1.3, 0.77], 200)]
    )
    s = shrunk_day_spend(order_history(c, t, a, 10 * DAY))
    assert 0 < s.weight[0] < s.weight[1] < 1
    assert np.exp(s.mu) < s.per_day[0] < s.per_day[1] < 200.0 * np.exp(s.sigma2)
    no_first = shrunk_day_spend(order_history(c, t, a, 10 * DAY), include_first=False)
    assert no_first.weight[0] == 0.0 and no_first.per_day[0] == pytest.approx(
        np.exp(no_first.mu + 0.5 * (no_first.tau2 + no_first.sigma2))
    )


def test_constant_spend_is_forecast_exactly() -> None:
    c, t = np.repeat(np.arange(50), 3), np.tile(np.arange(3) * DAY, 50)
    s = shrunk_day_spend(order_history(c, t, np.full(150, 12.5), 5 * DAY))
    np.testing.assert_allclose(s.per_day, 12.5)


def test_bad_input_raises(log: Log) -> None:
    c, t, a = log
    with pytest.raises(ConfigError, match="non-negative"):
        SpendForecast().fit(c, t, -a, cutoff=120 * DAY, horizon="8w")
    with pytest.raises(ConfigError, match="1-D of one length"):
        SpendForecast().fit(c, t[:-1], a, cutoff=120 * DAY, horizon="8w")
    with pytest.raises(ConfigError, match="features"):
        SpendForecast(features=("decay", "tenure"))
    with pytest.raises(ConfigError, match="horizon"):
        SpendForecast().fit(c, t, a, cutoff=120 * DAY, horizon=0)
    with pytest.raises(AffinityError, match="not fitted"):
        SpendForecast().predict(c, t, a, cutoff=120 * DAY, horizon="8w")
    with pytest.raises(AffinityError, match="at least 10 customers"):
        SpendForecast().fit(c, t, a, cutoff=-1, horizon="8w")


def test_cdnow_plain_configuration_gives_bgnbds_holdout_expectation() -> None:
    # docs/propensity.md: BG/NBD expects 1,653 repeat purchase days in CDNOW's 39-week holdout.
    batch = cdnow_orders(CDNOW)
    cal = batch.ts_ms <= CAL_END_MS
    c, t, a = batch.user[cal], batch.ts_ms[cal], batch.revenue[cal]
    model = SpendForecast(features=(), fit_intercept=False).fit(
        c, t, a, cutoff=CAL_END_MS - 13 * 7 * DAY, horizon="13w"
    )
    f = model.predict(c, t, a, cutoff=CAL_END_MS, horizon="39w")
    assert f.customer.shape == (2357,)
    assert f.purchases.sum() == pytest.approx(1653.4, abs=0.5)
    assert 20.0 < np.average(f.spend_per_day, weights=f.purchases) < 60.0
