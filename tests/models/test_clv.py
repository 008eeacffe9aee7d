"""CustomerValue: how its columns follow from the two models, the CDNOW holdout anchor, tiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from affinity_sdk.errors import AffinityError, ConfigError
from affinity_sdk.models.bgnbd import BGNBDParams, RFMSummary, summary_from_batch, summary_from_transactions
from affinity_sdk.models.clv import CustomerValue, CustomerValueTable
from affinity_sdk.sim.cdnow import cdnow_orders

CDNOW = Path(__file__).parents[1] / "data" / "cdnow" / "cdnow_sample.csv"
DAY_MS = 86_400_000
CAL_END_MS = int(np.datetime64("1997-09-30", "ms").astype(np.int64))


@pytest.fixture(scope="module")
def cdnow() -> tuple[RFMSummary, CustomerValue, CustomerValueTable]:
    summary = summary_from_batch(cdnow_orders(CDNOW), CAL_END_MS)
    model = CustomerValue().fit(summary)
    return summary, model, model.predict(summary, "39w")


def test_columns_follow_from_the_two_models(
    cdnow: tuple[RFMSummary, CustomerValue, CustomerValueTable],
) -> None:
    s, model, table = cdnow
    x, tx, T = s.frequency, s.recency, s.T
    assert s.repeat_monetary is not None
    np.testing.assert_allclose(
        table.p_alive, model.orders_.conditional_probability_alive(x, tx, T), rtol=1e-12
    )
    np.testing.assert_allclose(
        table.expected_orders, model.orders_.conditional_expected_purchases(39.0, x, tx, T), rtol=1e-10
    )
    spend = model.spend_.conditional_expected_average_profit(x, s.repeat_monetary)
    np.testing.assert_allclose(table.expected_revenue, table.expected_orders * spend, rtol=1e-12)
    assert np.all(table.purchase_probability <= table.p_alive)
    # P(some order) <= E[orders]: an order count is at least its indicator.
    assert np.all(table.purchase_probability <= table.expected_orders + 1e-12)


def test_cdnow_holdout_anchor(cdnow: tuple[RFMSummary, CustomerValue, CustomerValueTable]) -> None:
    """The issue's anchor with lifetimes on CDNOW: $59,932 predicted for the 39-week holdout,
    $70,976 actual, Spearman 0.426, top-decile capture 50.2 %, MAE $30.41."""
    s, _, table = cdnow
    batch = cdnow_orders(CDNOW)
    later = batch.ts_ms > CAL_END_MS
    actual = np.bincount(batch.user[later], weights=batch.revenue[later], minlength=len(s))[s.customer]
    predicted = table.expected_revenue
    assert predicted.sum() == pytest.approx(59_932, abs=1)
    assert actual.sum() == pytest.approx(70_976, abs=1)
    assert spearmanr(predicted, actual).statistic == pytest.approx(0.426, abs=5e-4)
    top = np.argsort(-predicted, kind="stable")[: len(s) // 10]
    assert actual[top].sum() / actual.sum() == pytest.approx(0.502, abs=5e-4)
    assert np.abs(predicted - actual).mean() == pytest.approx(30.41, abs=5e-3)


def test_discounting(cdnow: tuple[RFMSummary, CustomerValue, CustomerValueTable]) -> None:
    s, model, table = cdnow
    undiscounted = CustomerValue(discount_rate=0.0).fit(s).predict(s, "39w")
    np.testing.assert_allclose(undiscounted.clv, table.expected_revenue, rtol=1e-10)
    assert np.all(table.clv < table.expected_revenue)
    steeper = CustomerValue(discount_rate=0.5).fit(s).predict(s, "39w")
    assert np.all(steeper.clv < table.clv)
    # Every week's orders discounted from the week's end: never below the whole-horizon factor.
    last_factor = 1.1 ** (-39 * 7 / 365.25)
    assert np.all(table.clv >= table.expected_revenue * last_factor)
    # A horizon that is not a whole number of periods ends with a part period.
    part = model.predict(s, "38.5w")
    assert np.all(part.clv < table.clv) and np.all(part.clv > model.predict(s, "38w").clv)


def test_next_order_date_is_the_median_time(
    cdnow: tuple[RFMSummary, CustomerValue, CustomerValueTable],
) -> None:
    s, model, table = cdnow
    end_day = np.datetime64("1997-09-30", "D")
    has = ~np.isnat(table.next_order_day)
    assert has.any() and (~has).any()
    assert np.all(table.p_alive[has] > 0.5)
    days = (table.next_order_day[has] - end_day).astype(int)
    assert np.all((days >= 1) & (days <= 39 * 7))
    probability = model.orders_.conditional_probability_of_purchase
    idx = np.flatnonzero(has)
    for i, d in zip(idx[:200].tolist(), days[:200].tolist(), strict=True):
        one = (s.frequency[i : i + 1], s.recency[i : i + 1], s.T[i : i + 1])
        assert probability(d / 7, *one)[0] >= 0.5 - 1e-12
        assert d == 1 or probability((d - 1) / 7, *one)[0] < 0.5
    # No date where even the whole horizon leaves the chance below one half.
    assert np.all(table.purchase_probability[~has] < 0.5 + 1e-12)


def population(n: int, seed: int) -> tuple[list[str], list[int], list[float]]:
    """Orders of ``n`` customers who buy for a while and then stop, over 200 days."""
    rng = np.random.default_rng(seed)
    cust = np.repeat(np.arange(n), rng.geometric(0.4, n))
    first, life = rng.uniform(0, 100, n), rng.exponential(60, n)
    ts = ((first[cust] + rng.uniform(0, 1, cust.shape[0]) * life[cust]) * DAY_MS).astype(np.int64)
    return [f"p{c:04d}" for c in cust.tolist()], ts.tolist(), rng.gamma(4.0, 10.0, cust.shape[0]).tolist()


def test_avg_days_and_tiers_on_a_hand_made_log() -> None:
    ts = [0, 9 * DAY_MS, 30 * DAY_MS, 4 * DAY_MS, 20 * DAY_MS, 20 * DAY_MS + 5, 5 * DAY_MS, 7 * DAY_MS]
    customers = ["a", "a", "a", "b", "b", "b", "c", "d"]
    spend = [10.0, 12.0, 30.0, 8.0, 9.0, 1.0, 50.0, 5.0]
    others, other_ts, other_spend = population(300, seed=0)
    s = summary_from_transactions(customers + others, ts + other_ts, 200 * DAY_MS, amount=spend + other_spend)
    assert s.customer[:4].tolist() == ["a", "b", "c", "d"]
    model = CustomerValue().fit(s)
    table = model.predict(s, "12w")
    assert table.avg_days_between_orders[:2].tolist() == [15.0, 16.0]  # b's same-day orders are one
    assert np.isnan(table.avg_days_between_orders[2:4]).all()
    gaps = (s.last_day - s.first_day) / np.maximum(s.frequency, 1)  # type: ignore[operator]
    np.testing.assert_array_equal(table.avg_days_between_orders, np.where(s.frequency > 0, gaps, np.nan))
    churn = 1 - table.p_alive
    expected_churn = np.where(churn >= 0.5, 2, np.where(churn >= 0.2, 1, 0))
    assert table.churn_risk.tolist() == expected_churn.tolist()
    cols = table.columns([f"id-{c}" for c in s.customer.tolist()])
    assert list(cols) == [
        "customer_id",
        "p_alive",
        "purchase_probability",
        "expected_orders",
        "expected_revenue",
        "clv",
        "next_order_date",
        "avg_days_between_orders",
        "churn_risk",
        "value_tier",
    ]
    assert cols["customer_id"][:2] == ["id-a", "id-b"]
    assert set(cols["churn_risk"].tolist()) == {"Low", "Medium", "High"}
    dates = cols["next_order_date"]
    assert all(d is None or d > "1970-07-20" for d in dates) and None in dates


def test_a_degenerate_fit_is_refused() -> None:
    """A few look-alike customers can run BG/NBD's fit off to huge parameters (these are from
    such a fit) where its forecast is not finite: the value table says so instead of writing NaN."""
    others, other_ts, other_spend = population(50, seed=1)
    s = summary_from_transactions(others, other_ts, 200 * DAY_MS, amount=other_spend)
    model = CustomerValue().fit(s)
    model.orders_.params_ = BGNBDParams(
        r=2242278.5, alpha=15375625.5, a=0.0011277, b=6752.57, log_likelihood=-8.8, n_customers=4
    )
    with pytest.raises(AffinityError, match="forecast is not finite"):
        model.predict(s, "12w")


def test_free_repeat_orders_are_left_out_of_the_spend_fit() -> None:
    others, other_ts, other_spend = population(300, seed=2)
    base = summary_from_transactions(others, other_ts, 200 * DAY_MS, amount=other_spend)
    free = summary_from_transactions(
        ["free", "free", *others],
        [DAY_MS, 9 * DAY_MS, *other_ts],
        200 * DAY_MS,
        amount=[20.0, 0.0, *other_spend],
    )
    a, b = CustomerValue().fit(base), CustomerValue().fit(free)
    assert a.spend_.params_ == b.spend_.params_
    spend = b.predict(free, "12w").expected_spend[free.customer.tolist().index("free")]
    assert 0 < spend < b.spend_.population_mean_spend()


def test_value_tiers_are_clv_quantiles(cdnow: tuple[RFMSummary, CustomerValue, CustomerValueTable]) -> None:
    _, _, table = cdnow
    high, medium = table.clv[table.value_tier == 2], table.clv[table.value_tier == 1]
    low = table.clv[table.value_tier == 0]
    assert high.min() >= medium.max() and medium.min() >= low.max()
    assert (table.value_tier == 2).mean() == pytest.approx(0.10, abs=0.01)
    assert (table.value_tier >= 1).mean() == pytest.approx(0.40, abs=0.01)


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="discount_rate"):
        CustomerValue(discount_rate=float("nan"))
    hand = RFMSummary(
        customer=np.arange(2),
        frequency=np.ones(2),
        recency=np.ones(2),
        T=np.full(2, 3.0),
        monetary=np.ones(2),
    )
    with pytest.raises(AffinityError, match="summary_from_transactions"):
        CustomerValue().fit(hand)
