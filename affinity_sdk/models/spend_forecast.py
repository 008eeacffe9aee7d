r"""Per-customer forecasts of purchase days and spend over a horizon: BG/NBD with a learned correction.

The anchor for customer-lifetime value is BG/NBD's expected purchases times Gamma-Gamma's expected
spend per purchase. :class:`SpendForecast` keeps BG/NBD for what it does well (extrapolating each
customer's purchasing over any horizon from frequency, recency and tenure) and corrects it where a
stationary model cannot know better:

- **Purchase days.** A Poisson regression with BG/NBD's expectation as the offset,

  .. math:: \mathbb{E}[Y_i(H)] = E^{\mathrm{BG/NBD}}_i(H)\,\exp(\beta_0 + \beta^\top z_i),

  trained on a past window of the customer's own history (features at a training cutoff, purchase
  days in the training horizon after it). :math:`\beta_0` (optional) learns an aggregate drift
  that BG/NBD's stationarity misses; :math:`z_i` are features read at the cutoff (decayed order
  days, spend-weighted decayed order days, repeat frequency, recency over tenure), L2-penalised.
  By default the features are standardised among the customers of the cutoff being scored
  (``relative_features``: a cohort ages, so raw decayed counts drift between cutoffs and a
  correction learned at one would extrapolate at another), and the tilt
  :math:`\exp(\beta^\top z_i)` is rescaled so it moves purchases between customers without
  changing BG/NBD's total (``keep_total``). With no features and no intercept it is BG/NBD exactly.
- **Spend per purchase day.** Empirical-Bayes shrinkage on the log scale: each customer's mean log
  dollars per order day (the first purchase included, unlike Gamma-Gamma, so one-time buyers keep
  their own evidence) is pulled toward the population mean by the normal-normal weight
  :math:`w_i = \tau^2 / (\tau^2 + \sigma^2 / n_i)`; the forecast is the log-normal mean
  :math:`\exp(m_i + (v_i + \sigma^2) / 2)` with posterior mean :math:`m_i` and variance
  :math:`v_i = w_i \sigma^2 / n_i`.
- **Spend** = purchase days x spend per purchase day.

Everything at a cutoff reads only orders at or before it; orders on the same UTC day are one
purchase occasion (:func:`~affinity_sdk.models.bgnbd.summary_from_transactions`); time is in weeks.
``docs/research/clv_evaluation.py`` chooses the options on CDNOW's calibration period and compares
the result with the anchor on the holdout.

Examples
--------
>>> import numpy as np
>>> rng, day = np.random.default_rng(0), 86_400_000
>>> days = rng.poisson(rng.gamma(1.0, 6.0, 300)) + 1  # order records per customer; each stops buying
>>> customer = np.repeat(np.arange(300), days)  # after an exponential lifetime
>>> ts = (rng.uniform(0, 1, customer.size) * rng.exponential(200.0, 300)[customer]).astype(int) * day
>>> amount = rng.gamma(2.0, 15.0, customer.size)
>>> model = SpendForecast(half_life="8w").fit(customer, ts, amount, cutoff=100 * day, horizon="10w")
>>> f = model.predict(customer, ts, amount, cutoff=170 * day, horizon="10w")
>>> f.purchases.shape == f.spend.shape == f.customer.shape, bool(np.all(f.spend > 0))
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize

from affinity_sdk._units import parse_duration, to_epoch_ms
from affinity_sdk.errors import AffinityError, ConfigError
from affinity_sdk.models.bgnbd import BGNBD, summary_from_transactions
from affinity_sdk.models.key_tables import KEY_BITS, VALUE_MASK, sum_by_key
from affinity_sdk.models.order_day_features import DAY_BIAS, _day_weight, _decay_days, order_day_keys

__all__ = [
    "FEATURES",
    "OrderHistory",
    "ShrunkSpend",
    "SpendForecast",
    "SpendForecastResult",
    "order_history",
    "shrunk_day_spend",
    "window_totals",
]

_DAY_MS: Final = 86_400_000
_WEEK_S: Final = 604_800.0
#: The correction's features, read at the cutoff: log1p of decayed order days (half-life
#: ``half_life``), log1p of decayed order days each weighted by ``max(dollars, 1) ** value_power``,
#: log1p of repeat order days, and recency over tenure (0 for one-day customers).
FEATURES: Final = ("decay", "decay_value", "frequency", "recency_ratio")
_MIN_LOG_DOLLARS: Final = 1.0  # days under $1 (CDNOW has $0 records) count as $1 on the log scale

Timestamp = int | str | datetime
Duration = str | float | timedelta


@dataclass(frozen=True)
class OrderHistory:
    """Each customer's distinct UTC order days at or before ``cutoff_ms``.

    ``customer`` holds the sorted ids of customers with an order by then (the row order of every
    per-customer array built from this history); ``who`` / ``day`` / ``dollars`` list the order
    days sorted by customer, then day (UTC day numbers, dollars summed over the day).
    """

    customer: NDArray[Any]
    who: NDArray[np.int64]
    day: NDArray[np.int64]
    dollars: NDArray[np.float64]
    cutoff_ms: int

    def __len__(self) -> int:
        return int(self.customer.shape[0])


def _columns(
    customer: ArrayLike, ts_ms: ArrayLike, amount: ArrayLike
) -> tuple[NDArray[Any], NDArray[np.int64], NDArray[np.float64]]:
    cust = np.asarray(customer)
    ts = np.asarray(ts_ms, dtype=np.int64)
    dollars = np.asarray(amount, dtype=np.float64)
    if cust.ndim != 1 or cust.shape != ts.shape or cust.shape != dollars.shape:
        raise ConfigError(
            "customer, ts_ms and amount must be 1-D of one length "
            f"(got {cust.shape}, {ts.shape}, {dollars.shape})"
        )
    if not np.all(np.isfinite(dollars)) or np.any(dollars < 0):
        raise ConfigError("amount must be finite and non-negative")
    return cust, ts, dollars


def order_history(
    customer: ArrayLike, ts_ms: ArrayLike, amount: ArrayLike, cutoff: Timestamp
) -> OrderHistory:
    """The distinct order days (and their dollars) of each customer at or before ``cutoff``.

    Examples
    --------
    >>> day = 86_400_000
    >>> h = order_history(["b", "a", "a", "a"], [0, 0, day + 5, 9 * day], [1.0, 2.0, 3.0, 4.0], 2 * day)
    >>> h.customer.tolist(), h.who.tolist(), h.day.tolist(), h.dollars.tolist()
    (['a', 'b'], [0, 0, 1], [0, 1, 0], [2.0, 3.0, 1.0])
    """
    cust, ts, dollars = _columns(customer, ts_ms, amount)
    cutoff_ms = to_epoch_ms(cutoff)
    keep = ts <= cutoff_ms
    ids, code = np.unique(cust[keep], return_inverse=True)
    keys, day_dollars = sum_by_key(order_day_keys(code.reshape(-1).astype(np.int64), ts[keep]), dollars[keep])
    return OrderHistory(
        customer=ids,
        who=keys >> KEY_BITS,
        day=(keys & VALUE_MASK) - DAY_BIAS,
        dollars=day_dollars,
        cutoff_ms=cutoff_ms,
    )


def window_totals(
    customer: ArrayLike, ts_ms: ArrayLike, amount: ArrayLike, ids: ArrayLike, start: Timestamp, end: Timestamp
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Distinct order days and dollars of each customer in ``ids`` in the window ``(start, end]``.

    The outcomes a forecast at cutoff ``start`` over horizon ``end - start`` is judged on; orders by
    customers not in ``ids`` are ignored.

    Examples
    --------
    >>> day = 86_400_000
    >>> days, dollars = window_totals(["a", "a", "a", "c"], [day, day, 3 * day, day], [1.0, 2.0, 4.0, 8.0],
    ...                               ["a", "b"], 0, 3 * day)
    >>> days.tolist(), dollars.tolist()
    ([2.0, 0.0], [7.0, 0.0])
    """
    cust, ts, dollars = _columns(customer, ts_ms, amount)
    ids_arr = np.asarray(ids)
    n = ids_arr.shape[0]
    in_window = (ts > to_epoch_ms(start)) & (ts <= to_epoch_ms(end))
    cust, ts, dollars = cust[in_window], ts[in_window], dollars[in_window]
    pos = np.searchsorted(ids_arr, cust)
    known = pos < n
    known[known] = ids_arr[pos[known]] == cust[known]
    pos, ts, dollars = pos[known].astype(np.int64), ts[known], dollars[known]
    keys, _ = sum_by_key(order_day_keys(pos, ts), dollars)
    days = np.bincount(keys >> KEY_BITS, minlength=n).astype(np.float64)
    spend = np.bincount(pos, weights=dollars, minlength=n).astype(np.float64)
    return days, spend


@dataclass(frozen=True)
class ShrunkSpend:
    """Empirical-Bayes log-normal spend per order day (see the module doc).

    ``per_day`` is the expected dollars of a customer's next order day; ``weight`` the shrinkage
    weight ``w_i`` on their own mean (0: the population's, 1: their own); ``mu``, ``tau2`` and
    ``sigma2`` the population mean, between-customer and within-customer variances of log dollars.
    """

    per_day: NDArray[np.float64]
    weight: NDArray[np.float64]
    mu: float
    tau2: float
    sigma2: float


def shrunk_day_spend(history: OrderHistory, *, include_first: bool = True) -> ShrunkSpend:
    r"""Expected dollars per future order day of each customer, shrunk toward the population.

    Method of moments: :math:`\sigma^2` pools the within-customer variance of log dollars over
    customers with two or more days, :math:`\tau^2 = \mathrm{Var}(\bar y_i) - \overline{\sigma^2/n_i}`
    (at least 1 % of :math:`\sigma^2`), :math:`\mu` is the precision-weighted mean of the
    customer means. ``include_first=False`` drops each customer's first order day, as Gamma-Gamma
    does (customers with one day then get the population forecast).

    Examples
    --------
    >>> day = 86_400_000
    >>> h = order_history(["a"] * 5 + ["b", "c", "c"], [0, day, 2 * day, 3 * day, 4 * day, 0, 0, day],
    ...                   [100.0, 120.0, 90.0, 110.0, 100.0, 10.0, 20.0, 15.0], 9 * day)
    >>> s = shrunk_day_spend(h)
    >>> bool(s.weight[0] > s.weight[1]), bool(s.per_day[0] > s.per_day[2] > 0)
    (True, True)
    """
    n_cust = len(history)
    y = np.log(np.maximum(history.dollars, _MIN_LOG_DOLLARS))
    who = history.who
    if not include_first:
        first = np.ones(who.shape[0], dtype=bool)
        first[1:] = who[1:] != who[:-1]
        y, who = y[~first], who[~first]
    n = np.bincount(who, minlength=n_cust).astype(np.float64)
    has = n > 0
    if not np.any(has):
        raise AffinityError("no order days to estimate spend from")
    mean = np.bincount(who, weights=y, minlength=n_cust) / np.maximum(n, 1.0)
    resid = y - mean[who]
    repeat = np.sum(n[has] - 1.0)
    sigma2 = float(np.sum(resid**2) / repeat) if repeat > 0 else 0.0
    spread = float(np.var(mean[has]) - np.mean(sigma2 / n[has]))
    tau2 = max(spread, 0.01 * sigma2, 1e-12)
    precision = np.where(has, 1.0 / (tau2 + sigma2 / np.maximum(n, 1.0)), 0.0)
    mu = float(np.sum(precision * mean) / np.sum(precision))
    weight = np.where(has, tau2 / (tau2 + sigma2 / np.maximum(n, 1.0)), 0.0)
    post_mean = mu + weight * (mean - mu)
    post_var = np.where(has, weight * sigma2 / np.maximum(n, 1.0), tau2)
    per_day = np.exp(post_mean + 0.5 * (post_var + sigma2))
    return ShrunkSpend(per_day=per_day, weight=weight, mu=mu, tau2=tau2, sigma2=sigma2)


def _bgnbd_expected(
    customer: ArrayLike, ts_ms: ArrayLike, cutoff_ms: int, horizon_w: float
) -> NDArray[np.float64]:
    """BG/NBD fitted on the (frequency, recency, T) summaries in weeks at ``cutoff_ms``; expected
    purchase days in the next ``horizon_w`` weeks per customer (rows as :func:`order_history`'s;
    the summaries are sorted before the fit, so customer ids do not change it)."""
    s = summary_from_transactions(customer, ts_ms, cutoff_ms)
    order = np.lexsort((s.T, s.recency, s.frequency))
    model = BGNBD().fit(s.frequency[order], s.recency[order], s.T[order])
    expected = model.conditional_expected_purchases(horizon_w, s.frequency, s.recency, s.T)
    if not np.all(np.isfinite(expected)):
        raise AffinityError(f"BG/NBD gave non-finite expected purchases ({model.params_!r})")
    return expected


def _features(
    history: OrderHistory, half_life_w: float, value_power: float
) -> dict[str, NDArray[np.float64]]:
    n = len(history)
    age = (history.cutoff_ms - history.day * _DAY_MS) / _DAY_MS
    half_life_d = 7.0 * half_life_w
    days = np.bincount(history.who, minlength=n).astype(np.float64)
    tenure = np.zeros(n)
    np.maximum.at(tenure, history.who, age)
    newest = np.full(n, np.inf)
    np.minimum.at(newest, history.who, age)
    span = tenure - newest
    ones = np.ones(history.who.shape[0])
    return {
        "decay": np.log1p(_decay_days(history.who, age, ones, half_life_d, n)),
        "decay_value": np.log1p(
            _decay_days(history.who, age, _day_weight(history.dollars, value_power), half_life_d, n)
        ),
        "frequency": np.log1p(days - 1.0),
        "recency_ratio": np.where(tenure > 0, span / np.maximum(tenure, 1e-12), 0.0),
    }


def _standardisation(X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Column means and standard deviations (1 for constant columns)."""
    scale = X.std(axis=0)
    return X.mean(axis=0), np.where(scale > 1e-12, scale, 1.0)


def _poisson_fit(
    X: NDArray[np.float64], offset: NDArray[np.float64], y: NDArray[np.float64], l2: float, intercept: bool
) -> tuple[float, NDArray[np.float64]]:
    """Penalised Poisson regression ``log mu = offset + b0 + X b`` (``b0`` unpenalised, 0 unless
    ``intercept``); returns ``(b0, b)``."""
    n, k = X.shape

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        b0 = theta[0] if intercept else 0.0
        eta = offset + b0 + X @ theta[1:]
        mu = np.exp(eta)
        value = float(np.sum(mu - y * eta) + 0.5 * l2 * theta[1:] @ theta[1:]) / n
        resid = mu - y
        grad = np.concatenate([[resid.sum() if intercept else 0.0], X.T @ resid + l2 * theta[1:]]) / n
        return value, grad

    result = minimize(objective, np.zeros(k + 1), jac=True, method="L-BFGS-B", options={"maxiter": 1000})
    if not np.all(np.isfinite(result.x)):
        raise AffinityError(f"spend forecast fit failed: {result.message}")
    return (float(result.x[0]) if intercept else 0.0), np.asarray(result.x[1:], dtype=np.float64)


@dataclass(frozen=True)
class SpendForecastResult:
    """Per-customer forecasts over one horizon; rows follow ``customer`` (sorted ids).

    ``purchases`` are expected purchase days, ``spend_per_day`` expected dollars per purchase day,
    ``spend`` their product, ``bgnbd`` BG/NBD's expected purchase days (the uncorrected offset).
    """

    customer: NDArray[Any]
    purchases: NDArray[np.float64]
    spend_per_day: NDArray[np.float64]
    spend: NDArray[np.float64]
    bgnbd: NDArray[np.float64]


class SpendForecast:
    """BG/NBD purchase days with a learned Poisson correction, times shrunk spend per day.

    Parameters
    ----------
    half_life : duration
        Half-life of the decayed order-day features (``"13w"``, seconds, or a timedelta).
    value_power : float
        Each order day's weight in ``decay_value`` is ``max(dollars, 1) ** value_power``.
    features : tuple of str
        The correction's features, a subset of :data:`FEATURES`; empty: only the intercept.
    l2 : float
        L2 penalty on the standardised feature coefficients (the sum, not the mean, of the Poisson
        deviance terms is penalised, so it weighs less as customers grow).
    fit_intercept : bool
        Learn the aggregate level ``b0``; False keeps BG/NBD's total (b0 = 0).
    include_first : bool
        Use each customer's first order day in the spend estimate (see :func:`shrunk_day_spend`).
    relative_features : bool
        Standardise features with the mean and scale of the cutoff being scored (True), or with
        those of the training cutoff (False).
    keep_total : bool
        Rescale the feature tilt so the forecast total is BG/NBD's total times ``exp(intercept_)``.

    After :meth:`fit`: ``intercept_``, ``coef_`` (per standardised feature), ``mean_`` / ``scale_``
    (the standardisation from the training cutoff) and ``train_window_ms_``.

    Examples
    --------
    >>> import numpy as np
    >>> rng, day = np.random.default_rng(0), 86_400_000
    >>> days = rng.poisson(rng.gamma(1.0, 6.0, 300)) + 1  # order records per customer; each stops buying
    >>> customer = np.repeat(np.arange(300), days)  # after an exponential lifetime
    >>> ts = (rng.uniform(0, 1, customer.size) * rng.exponential(200.0, 300)[customer]).astype(int) * day
    >>> amount = rng.gamma(2.0, 15.0, customer.size)
    >>> m = SpendForecast(features=("decay",), half_life="4w")
    >>> m = m.fit(customer, ts, amount, cutoff=100 * day, horizon="8w")
    >>> m.coef_.shape, m.train_window_ms_ == (100 * day, 156 * day)
    ((1,), True)
    """

    def __init__(
        self,
        *,
        half_life: Duration = "13w",
        value_power: float = 0.15,
        features: tuple[str, ...] = FEATURES,
        l2: float = 10.0,
        fit_intercept: bool = True,
        include_first: bool = True,
        relative_features: bool = True,
        keep_total: bool = True,
    ) -> None:
        self.half_life_w = parse_duration(half_life) / _WEEK_S
        if not self.half_life_w > 0:
            raise ConfigError(f"half_life must be positive (got {half_life!r})")
        if not 0.0 <= value_power <= 4.0:
            raise ConfigError(f"value_power must be in [0, 4] (got {value_power!r})")
        unknown = [f for f in features if f not in FEATURES]
        if unknown or len(set(features)) != len(features):
            raise ConfigError(f"features must be distinct names from {FEATURES} (got {features!r})")
        if not l2 >= 0:
            raise ConfigError(f"l2 must be >= 0 (got {l2!r})")
        self.value_power = float(value_power)
        self.features: tuple[str, ...] = tuple(features)
        self.l2 = float(l2)
        self.fit_intercept = bool(fit_intercept)
        self.include_first = bool(include_first)
        self.relative_features = bool(relative_features)
        self.keep_total = bool(keep_total)
        self.intercept_: float | None = None
        self.coef_: NDArray[np.float64] = np.zeros(0)
        self.mean_: NDArray[np.float64] = np.zeros(0)
        self.scale_: NDArray[np.float64] = np.zeros(0)
        self.train_window_ms_: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return (
            f"SpendForecast(half_life_w={self.half_life_w:g}, value_power={self.value_power:g}, "
            f"features={self.features!r}, l2={self.l2:g}, fit_intercept={self.fit_intercept}, "
            f"include_first={self.include_first}, relative_features={self.relative_features}, "
            f"keep_total={self.keep_total}, intercept_={self.intercept_!r})"
        )

    def _design(self, history: OrderHistory) -> NDArray[np.float64]:
        cols = _features(history, self.half_life_w, self.value_power)
        return (
            np.column_stack([cols[f] for f in self.features])
            if self.features
            else np.zeros((len(history), 0))
        )

    @staticmethod
    def _horizon_w(horizon: Duration) -> float:
        weeks = parse_duration(horizon) / _WEEK_S
        if not weeks > 0:
            raise ConfigError(f"horizon must be positive (got {horizon!r})")
        return weeks

    def fit(
        self,
        customer: ArrayLike,
        ts_ms: ArrayLike,
        amount: ArrayLike,
        *,
        cutoff: Timestamp,
        horizon: Duration,
    ) -> SpendForecast:
        """Learn the purchase-day correction on the window ``(cutoff, cutoff + horizon]``; returns ``self``.

        Features and BG/NBD's offset are read at ``cutoff``; the target is each customer's distinct
        order days in the window. Orders after the window are never read. Only customers with an
        order at or before ``cutoff`` are training rows.

        Examples
        --------
        >>> import numpy as np
        >>> rng, day = np.random.default_rng(0), 86_400_000
        >>> days = rng.poisson(rng.gamma(1.0, 6.0, 300)) + 1  # order records per customer; each stops buying
        >>> customer = np.repeat(np.arange(300), days)  # after an exponential lifetime
        >>> ts = (rng.uniform(0, 1, customer.size) * rng.exponential(200.0, 300)[customer]).astype(int) * day
        >>> amount = rng.gamma(2.0, 15.0, customer.size)
        >>> m = SpendForecast(features=()).fit(customer, ts, amount, cutoff=100 * day, horizon="6w")
        >>> m.coef_.shape, isinstance(m.intercept_, float)
        ((0,), True)
        """
        cutoff_ms = to_epoch_ms(cutoff)
        horizon_w = self._horizon_w(horizon)
        end_ms = cutoff_ms + round(horizon_w * _WEEK_S * 1000)
        history = order_history(customer, ts_ms, amount, cutoff_ms)
        if len(history) < 10:
            raise AffinityError(f"need at least 10 customers with orders by the cutoff (got {len(history)})")
        y, _ = window_totals(customer, ts_ms, amount, history.customer, cutoff_ms, end_ms)
        X = self._design(history)
        self.mean_, self.scale_ = _standardisation(X)
        offset = np.log(np.maximum(_bgnbd_expected(customer, ts_ms, cutoff_ms, horizon_w), 1e-12))
        self.intercept_, self.coef_ = _poisson_fit(
            (X - self.mean_) / self.scale_, offset, y, self.l2, self.fit_intercept
        )
        self.train_window_ms_ = (cutoff_ms, end_ms)
        return self

    def predict(
        self,
        customer: ArrayLike,
        ts_ms: ArrayLike,
        amount: ArrayLike,
        *,
        cutoff: Timestamp,
        horizon: Duration,
    ) -> SpendForecastResult:
        """Forecast purchase days and spend in ``(cutoff, cutoff + horizon]`` from orders up to ``cutoff``.

        Rows are the customers with an order at or before ``cutoff`` (sorted ids); BG/NBD and the
        spend shrinkage are refitted on those orders, the correction learned in :meth:`fit` is applied.

        Examples
        --------
        >>> import numpy as np
        >>> rng, day = np.random.default_rng(0), 86_400_000
        >>> days = rng.poisson(rng.gamma(1.0, 6.0, 300)) + 1  # order records per customer; each stops buying
        >>> customer = np.repeat(np.arange(300), days)  # after an exponential lifetime
        >>> ts = (rng.uniform(0, 1, customer.size) * rng.exponential(200.0, 300)[customer]).astype(int) * day
        >>> amount = rng.gamma(2.0, 15.0, customer.size)
        >>> m = SpendForecast(features=(), fit_intercept=False)  # BG/NBD x shrunk spend, uncorrected
        >>> m = m.fit(customer, ts, amount, cutoff=100 * day, horizon="6w")
        >>> f = m.predict(customer, ts, amount, cutoff=150 * day, horizon="7w")
        >>> f.customer.tolist() == np.unique(customer[ts <= 150 * day]).tolist()
        True
        >>> bool(np.allclose(f.purchases, f.bgnbd)), bool(np.allclose(f.spend, f.purchases * f.spend_per_day))
        (True, True)
        """
        if self.intercept_ is None:
            raise AffinityError("the spend forecast is not fitted yet: call fit() first")
        history = order_history(customer, ts_ms, amount, cutoff)
        if len(history) == 0:
            raise AffinityError("no customer has an order at or before the cutoff")
        expected = _bgnbd_expected(customer, ts_ms, history.cutoff_ms, self._horizon_w(horizon))
        X = self._design(history)
        mean, scale = _standardisation(X) if self.relative_features else (self.mean_, self.scale_)
        tilt = np.exp((X - mean) / scale @ self.coef_)
        if self.keep_total:
            tilt *= expected.sum() / max(float(np.sum(expected * tilt)), 1e-300)
        purchases = expected * np.exp(self.intercept_) * tilt
        per_day = shrunk_day_spend(history, include_first=self.include_first).per_day
        return SpendForecastResult(
            customer=history.customer,
            purchases=purchases,
            spend_per_day=per_day,
            spend=purchases * per_day,
            bgnbd=expected,
        )
