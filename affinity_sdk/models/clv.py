r"""Customer lifetime value: BG/NBD for how many orders, Gamma-Gamma for how much per order.

:class:`CustomerValue` fits :class:`~affinity_sdk.models.bgnbd.BGNBD` on every customer's
(frequency, recency, T) and :class:`~affinity_sdk.models.gamma_gamma.GammaGamma` on the repeat
buyers' mean repeat spend, both from one :class:`~affinity_sdk.models.bgnbd.RFMSummary` built from
the orders up to a cutoff (:func:`~affinity_sdk.models.bgnbd.summary_from_transactions`), and
:meth:`CustomerValue.predict` gives, per customer, for a horizon of ``t`` periods starting right
after the cutoff (the day after ``summary.end_day``):

``p_alive``
    P(alive at the cutoff | history), :meth:`BGNBD.conditional_probability_alive
    <affinity_sdk.models.bgnbd.BGNBD.conditional_probability_alive>`;
``purchase_probability``
    P(at least one order in the horizon | history), :math:`P(\text{alive})\,[1 -
    ((\alpha+T)/(\alpha+T+t))^{r+x}]`;
``expected_orders``
    :math:`E[Y(t) \mid x, t_x, T]`, the BG/NBD conditional expectation;
``expected_spend``
    the Gamma-Gamma posterior mean spend per order (the population mean without a repeat order);
``expected_revenue``
    ``expected_orders * expected_spend`` (the model takes spend independent of the order count);
``clv``
    the same revenue discounted to the cutoff, period by period: with ``n = ceil(t)`` periods,
    :math:`t_k = \min(k, t)` and the annual rate ``d`` turned into a per-period factor,

    .. math:: \mathrm{CLV} = E[M] \sum_{k=1}^{n} \big(E[Y(t_k)] - E[Y(t_{k-1})]\big)
              (1 + d)^{-t_k \cdot \text{period days} / 365.25}

    (each period's expected orders discounted from the end of that period; ``d = 0`` gives
    ``expected_revenue``);
``next_order_day``
    the day by which the customer has a 50 % chance of having ordered again,
    :meth:`BGNBD.conditional_time_to_purchase <affinity_sdk.models.bgnbd.BGNBD.conditional_time_to_purchase>`
    at 0.5 rounded up to whole days after the cutoff day; ``NaT`` when that chance never reaches
    50 % (P(alive) <= 0.5) or only after the horizon;
``avg_days_between_orders``
    the customer's own mean gap between distinct order days, ``(last - first) / frequency``;
    NaN with a single order day;
``churn_risk``
    High / Medium / Low from ``1 - p_alive`` at fixed thresholds (:data:`CHURN_TIERS`: High from
    0.5, Medium from 0.2) through :func:`~affinity_sdk.models.propensity.assign_tiers`. BG/NBD
    takes a customer with no repeat order to be alive (``p_alive = 1``), so their risk is Low
    whatever their silence: read ``purchase_probability`` beside it;
``value_tier``
    High / Medium / Low by ``clv`` quantiles (:data:`VALUE_TIERS`: top 10 % High, next 30 % Medium).

Examples
--------
>>> import numpy as np
>>> from affinity_sdk.models.bgnbd import summary_from_transactions
>>> day, rng = 86_400_000, np.random.default_rng(0)
>>> cust = np.repeat(np.arange(300), rng.geometric(0.4, 300))  # 300 customers' orders
>>> first, life = rng.uniform(0, 100, 300), rng.exponential(60, 300)
>>> ts = ((first[cust] + rng.uniform(0, 1, cust.shape[0]) * life[cust]) * day).astype(np.int64)
>>> s = summary_from_transactions(cust, ts, 200 * day, amount=rng.gamma(4.0, 10.0, cust.shape[0]))
>>> table = CustomerValue().fit(s).predict(s, "26w")
>>> len(table) == len(s), bool(np.all(table.clv <= table.expected_revenue))
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._units import parse_duration
from affinity_sdk.errors import AffinityError, ConfigError
from affinity_sdk.models.bgnbd import BGNBD, RFMSummary
from affinity_sdk.models.gamma_gamma import GammaGamma
from affinity_sdk.models.propensity import TIER_NAMES, TierSpec, assign_tiers

__all__ = ["CHURN_TIERS", "VALUE_TIERS", "CustomerValue", "CustomerValueTable"]

#: Churn risk from ``1 - p_alive``: High from 0.5 (more likely gone than alive), Medium from 0.2.
CHURN_TIERS: Final = TierSpec(method="threshold", high=0.5, medium=0.2)
#: Value tiers from CLV quantiles: top 10 % High, the next 30 % Medium.
VALUE_TIERS: Final = TierSpec(method="quantile", high=0.9, medium=0.6)
#: The chance of a next order whose date ``next_order_day`` reports.
NEXT_ORDER_PROBABILITY: Final = 0.5
_DAYS_PER_YEAR: Final = 365.25


@dataclass(frozen=True, eq=False)
class CustomerValueTable:
    """Per-customer value figures, one row per customer of the summary (same order); see the
    module docstring for each column. ``next_order_day`` is ``datetime64[D]`` (``NaT`` for none);
    ``churn_risk`` / ``value_tier`` are tier codes 0 / 1 / 2 (Low / Medium / High)."""

    customer: NDArray[Any]
    p_alive: NDArray[np.float64]
    purchase_probability: NDArray[np.float64]
    expected_orders: NDArray[np.float64]
    expected_spend: NDArray[np.float64]
    expected_revenue: NDArray[np.float64]
    clv: NDArray[np.float64]
    next_order_day: NDArray[np.datetime64]
    avg_days_between_orders: NDArray[np.float64]
    churn_risk: NDArray[np.int8]
    value_tier: NDArray[np.int8]

    def __len__(self) -> int:
        return int(self.p_alive.shape[0])

    def columns(self, customer_ids: Any = None) -> dict[str, Any]:
        """The output columns (for :func:`~affinity_sdk.score.results.write_columns`): tiers as
        labels, the next order day as ISO text or ``None``; ``customer_ids`` replaces the
        ``customer`` column (e.g. names for interned codes).

        Examples
        --------
        >>> t = CustomerValueTable(*(np.zeros(1),) * 7, np.array(["NaT"], "datetime64[D]"),
        ...                        np.full(1, np.nan), np.zeros(1, np.int8), np.full(1, 2, np.int8))
        >>> cols = t.columns(["ann"])
        >>> cols["customer_id"], cols["next_order_date"], cols["value_tier"].tolist()
        (['ann'], [None], ['High'])
        """
        labels = np.array(TIER_NAMES)
        dates = np.datetime_as_string(self.next_order_day, unit="D")
        return {
            "customer_id": self.customer if customer_ids is None else customer_ids,
            "p_alive": self.p_alive,
            "purchase_probability": self.purchase_probability,
            "expected_orders": self.expected_orders,
            "expected_revenue": self.expected_revenue,
            "clv": self.clv,
            "next_order_date": [None if d == "NaT" else d for d in dates.tolist()],
            "avg_days_between_orders": self.avg_days_between_orders,
            "churn_risk": labels[self.churn_risk],
            "value_tier": labels[self.value_tier],
        }


def _required(
    summary: RFMSummary,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], int, float]:
    """The summary fields beyond (x, t_x, T) that value needs; hand-built summaries may lack them."""
    if (
        summary.repeat_monetary is None
        or summary.first_day is None
        or summary.last_day is None
        or summary.end_day is None
        or summary.period_days is None
    ):
        raise AffinityError(
            "the summary lacks repeat spend, order days or its period: build it with "
            "summary_from_transactions / summary_from_batch (with amounts)"
        )
    return summary.repeat_monetary, summary.first_day, summary.last_day, summary.end_day, summary.period_days


class CustomerValue:
    """BG/NBD + Gamma-Gamma customer value: :meth:`fit` on a summary, :meth:`predict` per horizon.

    ``discount_rate`` is the annual rate for :attr:`CustomerValueTable.clv`; ``churn_tiers`` and
    ``value_tiers`` the tier specs of ``churn_risk`` (on ``1 - p_alive``) and ``value_tier`` (on
    ``clv``); ``backend`` goes to both models. Fitted models: ``orders_`` (BG/NBD) and
    ``spend_`` (Gamma-Gamma).
    """

    def __init__(
        self,
        *,
        discount_rate: float = 0.10,
        churn_tiers: TierSpec = CHURN_TIERS,
        value_tiers: TierSpec = VALUE_TIERS,
        backend: str | None = "auto",
    ) -> None:
        if not (np.isfinite(discount_rate) and discount_rate > -1.0):
            raise ConfigError(f"discount_rate must be a finite annual rate > -1 (got {discount_rate})")
        self.discount_rate = float(discount_rate)
        self.churn_tiers = churn_tiers
        self.value_tiers = value_tiers
        self.orders_ = BGNBD(backend=backend)
        self.spend_ = GammaGamma(backend=backend)

    def __repr__(self) -> str:
        fitted = f"orders_={self.orders_!r}, spend_={self.spend_!r}"
        return f"CustomerValue(discount_rate={self.discount_rate}, {fitted})"

    def fit(self, summary: RFMSummary) -> CustomerValue:
        """Fit both models on ``summary``; returns ``self``. Gamma-Gamma is fitted on the repeat
        buyers whose repeat orders are worth more than 0.

        Examples
        --------
        >>> from affinity_sdk.models.bgnbd import summary_from_transactions
        >>> day = 86_400_000
        >>> ts = [0, 9 * day, 30 * day, 4 * day, 20 * day, 5 * day]
        >>> s = summary_from_transactions([1, 1, 1, 2, 2, 3], ts, 40 * day, amount=[10, 12, 30, 8, 9, 50])
        >>> model = CustomerValue().fit(s)
        >>> model.spend_.params_.n_customers
        2
        """
        repeat_spend, *_ = _required(summary)
        self.orders_.fit(summary.frequency, summary.recency, summary.T)
        # Repeat orders worth nothing (free orders) have no Gamma-Gamma likelihood: such customers
        # are left out of the spend fit, and their expected spend shrinks from 0 toward the mean.
        priced = (summary.frequency == 0) | (repeat_spend > 0)
        self.spend_.fit(summary.frequency[priced], repeat_spend[priced])
        return self

    def predict(self, summary: RFMSummary, horizon: str | float | timedelta) -> CustomerValueTable:
        """Value figures per customer of ``summary`` over ``horizon`` (``"39w"``, seconds or a
        timedelta) after its cutoff.

        Examples
        --------
        >>> from affinity_sdk.models.bgnbd import summary_from_transactions
        >>> day, rng = 86_400_000, np.random.default_rng(0)
        >>> cust = np.repeat(np.arange(300), rng.geometric(0.4, 300))
        >>> first, life = rng.uniform(0, 100, 300), rng.exponential(60, 300)
        >>> ts = ((first[cust] + rng.uniform(0, 1, cust.shape[0]) * life[cust]) * day).astype(np.int64)
        >>> s = summary_from_transactions(cust, ts, 200 * day, amount=rng.gamma(4.0, 10.0, cust.shape[0]))
        >>> t = CustomerValue(discount_rate=0.0).fit(s).predict(s, "12w")
        >>> bool(np.allclose(t.clv, t.expected_revenue)), bool(np.all(t.purchase_probability <= t.p_alive))
        (True, True)
        """
        repeat_spend, first_day, last_day, end_day, period_days = _required(summary)
        t = parse_duration(horizon) / 86_400.0 / period_days
        if not np.isfinite(t):
            raise ValueError(f"horizon must be finite (got {horizon!r})")
        x, tx, big_t = summary.frequency, summary.recency, summary.T
        orders = self.orders_
        p_alive = orders.conditional_probability_alive(x, tx, big_t)
        spend = self.spend_.conditional_expected_average_profit(x, repeat_spend)
        cumulative = self._cumulative_if_alive(x, big_t, t)
        if not np.all(np.isfinite(cumulative)):
            raise AffinityError(
                f"the BG/NBD forecast is not finite for these data ({orders.params_}): too few "
                "customers or too little variety in their purchase patterns to fit the model"
            )
        expected = cumulative[-1] * p_alive
        increments = np.diff(cumulative, axis=0)
        steps = np.minimum(np.arange(1, increments.shape[0] + 1, dtype=np.float64), t)
        discount = (1.0 + self.discount_rate) ** (-steps * period_days / _DAYS_PER_YEAR)
        clv = spend * p_alive * (discount @ increments)
        days = orders.conditional_time_to_purchase(NEXT_ORDER_PROBABILITY, x, tx, big_t) * period_days
        within = days <= t * period_days
        next_day = np.full(x.shape[0], np.datetime64("NaT"), dtype="datetime64[D]")
        next_day[within] = (end_day + np.maximum(np.ceil(days[within]), 1.0)).astype("datetime64[D]")
        with np.errstate(invalid="ignore", divide="ignore"):
            gaps = np.where(x > 0, (last_day - first_day) / x, np.nan)
        return CustomerValueTable(
            customer=summary.customer,
            p_alive=p_alive,
            purchase_probability=orders.conditional_probability_of_purchase(t, x, tx, big_t),
            expected_orders=expected,
            expected_spend=spend,
            expected_revenue=expected * spend,
            clv=clv,
            next_order_day=next_day,
            avg_days_between_orders=gaps,
            churn_risk=assign_tiers(1.0 - p_alive, self.churn_tiers, backend=orders.backend),
            value_tier=assign_tiers(clv, self.value_tiers, backend=orders.backend),
        )

    def _cumulative_if_alive(
        self, x: NDArray[np.float64], big_t: NDArray[np.float64], t: float
    ) -> NDArray[np.float64]:
        """``E[Y(t_k) | alive]`` for ``t_0 = 0`` and each period end ``t_k = min(k, t)``, shape
        ``(n + 1, customers)``: evaluated once per distinct ``(x, T)`` (few: whole days), so the
        cost grows with the horizon's periods, not with periods x customers."""
        keys, inverse = np.unique(np.stack([x, big_t], axis=1), axis=0, return_inverse=True)
        n_steps = int(np.ceil(t - 1e-9)) if t > 0 else 0
        ends = np.minimum(np.arange(0, n_steps + 1, dtype=np.float64), t)
        table = np.stack(
            [self.orders_.expected_purchases_if_alive(float(e), keys[:, 0], keys[:, 1]) for e in ends]
        )
        result: NDArray[np.float64] = table[:, inverse.ravel()]
        return result
