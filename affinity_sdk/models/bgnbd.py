"""BG/NBD: the beta-geometric / negative binomial model of repeat buying.

Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to the
Pareto/NBD Model", Marketing Science 24(2). While alive, a customer buys at Poisson rate
:math:`\\lambda \\sim \\Gamma(r, \\alpha)`; after each purchase they drop out with probability
:math:`p \\sim \\mathrm{Beta}(a, b)`. From each customer's summary (``frequency`` x = repeat
purchases, ``recency`` t_x = time of the last purchase since the first, ``T`` = time since the
first purchase) it gives P(alive) and expected purchases in the next ``t`` periods.

The log-likelihood and its gradient are compiled (Numba), with a numpy reference twin
(``BGNBD(backend="reference")``); the maximum-likelihood fit runs scipy's L-BFGS-B on
log-parameters with that analytic gradient.

Examples
--------
>>> import numpy as np
>>> x, tx, T = np.array([0.0, 2.0, 5.0, 1.0]), np.array([0.0, 10.0, 30.0, 3.0]), np.full(4, 39.0)
>>> model = BGNBD().fit(x, tx, T)
>>> model.params_.r > 0 and model.params_.log_likelihood < 0
True
>>> float(model.conditional_probability_alive(x, tx, T)[0])
1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import hyp2f1

from affinity_sdk._backends import BackendName, resolve_backend
from affinity_sdk._units import parse_duration
from affinity_sdk.capture.events import EVENT_TYPE_CODES
from affinity_sdk.errors import AffinityError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.kernels import _bgnbd_reference
from affinity_sdk.kernels.protocol import BGNBDKernels

__all__ = ["BGNBD", "BGNBDParams", "RFMSummary", "summary_from_batch", "summary_from_transactions"]

_MS_PER_DAY: Final = 86_400_000


class BGNBDParams(msgspec.Struct, frozen=True, kw_only=True):
    """Fitted BG/NBD parameters and the maximised log-likelihood over ``n_customers``."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int


@dataclass(frozen=True)
class RFMSummary:
    """Per-customer (frequency, recency, T) in model periods, plus the mean order value.

    ``customer`` holds the customer ids (sorted), ``frequency`` the repeat purchase count (distinct
    purchase days after the first), ``recency`` the time from the first to the last purchase and
    ``T`` the time from the first purchase to the end of the calibration period.

    ``monetary`` is the mean value of all the customer's records; ``repeat_monetary`` the mean
    value of the repeat purchase days (a day's records summed, the first day left out; 0 without a
    repeat purchase), the spend that the Gamma-Gamma model is fitted on, as in the published
    analyses and lifetimes' ``summary_data_from_transaction_data``. ``first_day`` / ``last_day``
    are the first and last purchase days (whole UTC days since the epoch), ``end_day`` the day
    that ``T`` runs to and ``period_days`` the model period in days. Summaries built by hand may
    leave these five out (``None``).
    """

    customer: NDArray[Any]
    frequency: NDArray[np.float64]
    recency: NDArray[np.float64]
    T: NDArray[np.float64]
    monetary: NDArray[np.float64]
    repeat_monetary: NDArray[np.float64] | None = field(default=None)
    first_day: NDArray[np.int64] | None = field(default=None)
    last_day: NDArray[np.int64] | None = field(default=None)
    end_day: int | None = None
    period_days: float | None = None

    def __len__(self) -> int:
        return int(self.frequency.shape[0])


def summary_from_transactions(
    customer: ArrayLike,
    ts_ms: ArrayLike,
    end_ms: int,
    *,
    period: str | float = "1w",
    amount: ArrayLike | None = None,
) -> RFMSummary:
    """Build the (frequency, recency, T) summaries from a plain (customer, time) table.

    Transactions after ``end_ms`` are ignored (they belong to the holdout). Purchases on the same
    UTC day count once, as in the published analyses; times are measured in whole days and
    expressed in ``period`` units (default weeks). ``T`` runs to the end of the day holding
    ``end_ms`` exclusive of that day, i.e. ``T = (day(end) - day(first)) / period``.

    Examples
    --------
    >>> day = 86_400_000
    >>> s = summary_from_transactions(["a", "a", "a", "b"], [0, 0, 14 * day, 7 * day], 21 * day)
    >>> s.customer.tolist(), s.frequency.tolist(), s.recency.tolist(), s.T.tolist()
    (['a', 'b'], [1.0, 0.0], [2.0, 0.0], [3.0, 2.0])
    >>> s = summary_from_transactions(["a", "a", "a"], [0, 14 * day, 14 * day], 21 * day, amount=[5, 2, 3])
    >>> s.monetary.tolist(), s.repeat_monetary.tolist(), s.first_day.tolist(), s.last_day.tolist()
    ([3.3333333333333335], [5.0], [0], [14])
    """
    cust = np.asarray(customer)
    ts = np.asarray(ts_ms, dtype=np.int64)
    if cust.shape != ts.shape or cust.ndim != 1:
        raise ValueError(f"customer and ts_ms must be 1-D of the same length ({cust.shape} vs {ts.shape})")
    values = np.zeros(ts.shape[0]) if amount is None else np.asarray(amount, dtype=np.float64)
    keep = ts <= end_ms
    cust, ts, values = cust[keep], ts[keep], values[keep]
    period_days = parse_duration(period) / 86_400.0
    if not period_days > 0:
        raise ValueError(f"period must be positive (got {period!r})")
    ids, code = np.unique(cust, return_inverse=True)
    day = np.floor_divide(ts, _MS_PER_DAY)
    # One row per (customer, day): a second record on a day is the same purchase occasion.
    pair, pair_of_row = np.unique(np.stack([code, day], axis=1), axis=0, return_inverse=True)
    n = ids.shape[0]
    n_days = np.bincount(pair[:, 0], minlength=n)
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, pair[:, 0], pair[:, 1])
    np.maximum.at(last, pair[:, 0], pair[:, 1])
    end_day = end_ms // _MS_PER_DAY
    spend = np.bincount(code, weights=values, minlength=n)
    day_spend = np.bincount(pair_of_row.ravel(), weights=values, minlength=pair.shape[0])
    is_first = pair[:, 1] == first[pair[:, 0]]
    repeat_spend = np.bincount(pair[:, 0], weights=np.where(is_first, 0.0, day_spend), minlength=n)
    return RFMSummary(
        customer=ids,
        frequency=(n_days - 1).astype(np.float64),
        recency=(last - first) / period_days,
        T=(end_day - first) / period_days,
        monetary=spend / np.maximum(np.bincount(code, minlength=n), 1),
        repeat_monetary=repeat_spend / np.maximum(n_days - 1, 1),
        first_day=first,
        last_day=last,
        end_day=int(end_day),
        period_days=period_days,
    )


def summary_from_batch(batch: EventBatch, end_ms: int, *, period: str | float = "1w") -> RFMSummary:
    """(frequency, recency, T) per user from a batch's ``order_completed`` events up to ``end_ms``.

    ``customer`` holds user codes (``batch.interners.users``); ``monetary`` the mean revenue.

    Examples
    --------
    >>> from affinity_sdk.capture.events import OrderCompleted
    >>> day = 86_400_000
    >>> orders = [OrderCompleted(user_id="u", timestamp=t * day, order_id=str(t), products=[], revenue=5.0)
    ...           for t in (0, 7, 14)]
    >>> s = summary_from_batch(EventBatch.from_events(orders), end_ms=28 * day)
    >>> s.frequency.tolist(), s.recency.tolist(), s.T.tolist(), s.monetary.tolist()
    ([2.0], [2.0], [4.0], [5.0])
    """
    orders = batch.event_type == EVENT_TYPE_CODES["order_completed"]
    return summary_from_transactions(
        batch.user[orders], batch.ts_ms[orders], end_ms, period=period, amount=batch.revenue[orders]
    )


def _impl(backend: BackendName) -> BGNBDKernels:
    """The likelihood kernel of ``backend`` (no C++ twin: ``"cpp"`` runs the Numba kernel, which
    is imported on first use)."""
    if backend == "reference":
        return _bgnbd_reference
    from affinity_sdk.kernels import _bgnbd_numba

    return _bgnbd_numba


def _neg_ll_grad(
    log_params: NDArray[np.float64],
    x: NDArray[np.int64],
    tx: NDArray[np.float64],
    big_t: NDArray[np.float64],
    weight: NDArray[np.float64],
    grad: NDArray[np.float64],
    *,
    backend: str | None = "auto",
) -> float:
    r"""Negative BG/NBD log-likelihood and its gradient in log-parameters (into ``grad``).

    .. math:: \ell = \ln\frac{\Gamma(r+x)\alpha^r}{\Gamma(r)} + \ln\frac{B(a, b+x)}{B(a, b)}
              + \ln\Big[(\alpha+T)^{-(r+x)} + [x>0]\frac{a}{b+x-1}(\alpha+t_x)^{-(r+x)}\Big]

    See :func:`affinity_sdk.kernels._bgnbd_reference.neg_ll_grad`; ``backend`` picks the kernel.
    """
    return _impl(resolve_backend(backend)).neg_ll_grad(log_params, x, tx, big_t, weight, grad)


def _validate(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    x = np.asarray(frequency, dtype=np.float64)
    tx = np.asarray(recency, dtype=np.float64)
    big_t = np.asarray(T, dtype=np.float64)
    x, tx, big_t = np.broadcast_arrays(x, tx, big_t)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(tx)) and np.all(np.isfinite(big_t))):
        raise ValueError("frequency, recency and T must be finite")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must hold non-negative whole numbers (repeat purchase counts)")
    if np.any(tx < 0) or np.any(tx > big_t * (1 + 1e-12)):
        raise ValueError("recency must lie in [0, T]")
    return x, tx, big_t


class BGNBD:
    """The BG/NBD model: fit by maximum likelihood, then P(alive) and expected purchases.

    Fitted parameters are in ``params_`` (a :class:`BGNBDParams`) after :meth:`fit`. ``backend``
    picks the likelihood kernel (see :func:`affinity_sdk.resolve_backend`): ``"reference"`` is the
    numpy oracle; ``"numba"`` and ``"cpp"`` (no C++ twin) run the Numba kernel. The chosen one is
    kept in ``backend``.
    """

    def __init__(self, *, backend: str | None = "auto") -> None:
        self.params_: BGNBDParams | None = None
        self.backend: BackendName = resolve_backend(backend)

    def __repr__(self) -> str:
        return f"BGNBD(params_={self.params_!r}, backend={self.backend!r})"

    def _params(self) -> BGNBDParams:
        if self.params_ is None:
            raise AffinityError("the BG/NBD model is not fitted yet: call fit() first")
        return self.params_

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        initial: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    ) -> BGNBD:
        """Maximum-likelihood fit from per-customer summaries; returns ``self``.

        ``weights`` counts customers sharing a summary row (default 1 each). ``initial`` is the
        starting ``(r, alpha, a, b)``.

        Examples
        --------
        >>> import numpy as np
        >>> m = BGNBD().fit([0, 1, 3], [0.0, 4.0, 20.0], [30.0, 30.0, 30.0])
        >>> sorted(m.params_.__struct_fields__)[:2]
        ['a', 'alpha']
        """
        x, tx, big_t = _validate(frequency, recency, T)
        if x.shape[0] == 0:
            raise ValueError("cannot fit BG/NBD on zero customers")
        w = np.ones(x.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        xi = np.ascontiguousarray(x, dtype=np.int64)
        tx = np.ascontiguousarray(tx)
        big_t = np.ascontiguousarray(big_t)
        total = float(w.sum())
        grad = np.empty(4)
        kernel = _impl(self.backend).neg_ll_grad

        def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            # Per-customer scale keeps L-BFGS-B's tolerances independent of the sample size.
            value = kernel(theta, xi, tx, big_t, w, grad) / total
            return value, grad / total

        result = minimize(
            objective,
            np.log(np.asarray(initial, dtype=np.float64)),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-20.0, 20.0)] * 4,
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 1000},
        )
        if not np.all(np.isfinite(result.x)):
            raise AffinityError(f"BG/NBD fit failed: {result.message}")
        r, alpha, a, b = (float(v) for v in np.exp(result.x))
        self.params_ = BGNBDParams(
            r=r, alpha=alpha, a=a, b=b, log_likelihood=-float(result.fun) * total, n_customers=int(x.shape[0])
        )
        return self

    def log_likelihood(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> float:
        """Log-likelihood of the summaries under the fitted parameters.

        Examples
        --------
        >>> m = BGNBD().fit([0, 1, 3], [0.0, 4.0, 20.0], [30.0, 30.0, 30.0])
        >>> round(m.log_likelihood([0, 1, 3], [0.0, 4.0, 20.0], [30.0] * 3) - m.params_.log_likelihood, 9)
        0.0
        """
        p = self._params()
        x, tx, big_t = _validate(frequency, recency, T)
        theta = np.log([p.r, p.alpha, p.a, p.b])
        xi = np.ascontiguousarray(x, dtype=np.int64)
        grad = np.empty(4)
        return -_impl(self.backend).neg_ll_grad(
            theta, xi, np.ascontiguousarray(tx), np.ascontiguousarray(big_t), np.ones(x.shape[0]), grad
        )

    def conditional_probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> NDArray[np.float64]:
        r"""P(alive at T | x, t_x, T); exactly 1 for customers with no repeat purchase.

        .. math:: P = \Big[1 + [x>0]\frac{a}{b+x-1}\Big(\frac{\alpha+T}{\alpha+t_x}\Big)^{r+x}\Big]^{-1}

        Examples
        --------
        >>> m = BGNBD().fit([0, 1, 3], [0.0, 4.0, 20.0], [30.0, 30.0, 30.0])
        >>> p = m.conditional_probability_alive([2, 2], [25.0, 5.0], [30.0, 30.0])
        >>> bool(p[0] > p[1])
        True
        """
        p = self._params()
        x, tx, big_t = _validate(frequency, recency, T)
        with np.errstate(divide="ignore"):
            ratio = (p.a / np.maximum(p.b + x - 1.0, 1e-300)) * np.exp(
                (p.r + x) * (np.log(p.alpha + big_t) - np.log(p.alpha + tx))
            )
        result: NDArray[np.float64] = np.where(x > 0, 1.0 / (1.0 + ratio), 1.0)
        return result

    def conditional_expected_purchases(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> NDArray[np.float64]:
        r"""Expected purchases in the next ``t`` periods given each customer's history.

        .. math:: E[Y(t)] = \frac{a+b+x-1}{a-1}
                  \Big[1 - \Big(\frac{\alpha+T}{\alpha+T+t}\Big)^{r+x}
                  {}_2F_1\Big(r+x, b+x; a+b+x-1; \frac{t}{\alpha+T+t}\Big)\Big] \cdot P(\text{alive})

        Examples
        --------
        >>> m = BGNBD().fit([0, 1, 3], [0.0, 4.0, 20.0], [30.0, 30.0, 30.0])
        >>> e = m.conditional_expected_purchases(10.0, [0, 3], [0.0, 29.0], [30.0, 30.0])
        >>> bool(0 < e[0] < e[1])
        True
        """
        x, tx, big_t = _validate(frequency, recency, T)
        result: NDArray[np.float64] = self.expected_purchases_if_alive(
            t, x, big_t
        ) * self.conditional_probability_alive(x, tx, big_t)
        return result

    def expected_purchases_if_alive(
        self, t: float, frequency: ArrayLike, T: ArrayLike
    ) -> NDArray[np.float64]:
        r"""Expected purchases in the next ``t`` periods of a customer alive at ``T`` after
        ``frequency`` repeat purchases: :meth:`conditional_expected_purchases` over P(alive). It
        does not depend on the recency, so it can be computed once per distinct ``(x, T)``.

        .. math:: E[Y(t) \mid \text{alive}] = \frac{a+b+x-1}{a-1}
                  \Big[1 - \Big(\frac{\alpha+T}{\alpha+T+t}\Big)^{r+x}
                  {}_2F_1\Big(r+x, b+x; a+b+x-1; \frac{t}{\alpha+T+t}\Big)\Big]

        Examples
        --------
        >>> m = BGNBD().fit([0, 1, 3], [0.0, 4.0, 20.0], [30.0, 30.0, 30.0])
        >>> alive = m.expected_purchases_if_alive(10.0, [3], [30.0])
        >>> bool(alive[0] >= m.conditional_expected_purchases(10.0, [3], [20.0], [30.0])[0])
        True
        """
        p = self._params()
        x, _, big_t = _validate(frequency, 0.0, T)
        if t < 0:
            raise ValueError(f"t must be >= 0 (got {t})")
        z = t / (p.alpha + big_t + t)
        head = (p.a + p.b + x - 1.0) / (p.a - 1.0)
        tail = 1.0 - ((p.alpha + big_t) / (p.alpha + big_t + t)) ** (p.r + x) * hyp2f1(
            p.r + x, p.b + x, p.a + p.b + x - 1.0, z
        )
        result: NDArray[np.float64] = head * tail
        return result

    def conditional_probability_of_purchase(
        self, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> NDArray[np.float64]:
        r"""P(at least one purchase in ``(T, T + t]`` | history): one minus the ``n = 0`` case of
        the conditional purchase-count distribution (Fader, Hardie & Lee's notes).

        A customer alive at ``T`` drops out only just after a purchase, so they make none in the
        next ``t`` periods exactly when their next purchase comes later; given alive, their rate
        is :math:`\Gamma(r+x, \alpha+T)`, hence

        .. math:: P(X(T, T+t] > 0) = P(\text{alive})
                  \Big[1 - \Big(\frac{\alpha+T}{\alpha+T+t}\Big)^{r+x}\Big]

        Examples
        --------
        >>> m = BGNBD().fit([0, 1, 3], [0.0, 4.0, 20.0], [30.0, 30.0, 30.0])
        >>> p = m.conditional_probability_of_purchase(10.0, [3, 3], [29.0, 2.0], [30.0, 30.0])
        >>> bool(1 > p[0] > p[1] > 0)
        True
        """
        p = self._params()
        x, tx, big_t = _validate(frequency, recency, T)
        if t < 0:
            raise ValueError(f"t must be >= 0 (got {t})")
        log_silent = (p.r + x) * (np.log(p.alpha + big_t) - np.log(p.alpha + big_t + t))
        result: NDArray[np.float64] = self.conditional_probability_alive(x, tx, big_t) * -np.expm1(log_silent)
        return result

    def conditional_time_to_purchase(
        self, probability: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> NDArray[np.float64]:
        r"""The horizon ``t`` at which :meth:`conditional_probability_of_purchase` reaches
        ``probability`` (0.5: the median time to the next purchase, dropping out counted as never);
        ``inf`` where it never does (P(alive) <= ``probability``).

        .. math:: t = (\alpha+T)\Big[\Big(1 - \frac{q}{P(\text{alive})}\Big)^{-1/(r+x)} - 1\Big]

        Examples
        --------
        >>> m = BGNBD().fit([0, 1, 3], [0.0, 4.0, 20.0], [30.0, 30.0, 30.0])
        >>> t = m.conditional_time_to_purchase(0.5, [3], [29.0], [30.0])
        >>> round(float(m.conditional_probability_of_purchase(float(t[0]), [3], [29.0], [30.0])[0]), 9)
        0.5
        """
        p = self._params()
        x, tx, big_t = _validate(frequency, recency, T)
        if not 0.0 < probability < 1.0:
            raise ValueError(f"probability must lie in (0, 1) (got {probability})")
        alive = self.conditional_probability_alive(x, tx, big_t)
        reached = alive > probability
        with np.errstate(divide="ignore", invalid="ignore"):
            rest = np.log1p(-probability / np.where(reached, alive, 1.0))
            t = (p.alpha + big_t) * np.expm1(-rest / (p.r + x))
        result: NDArray[np.float64] = np.where(reached, t, np.inf)
        return result

    def expected_purchases(self, t: ArrayLike) -> NDArray[np.float64]:
        r"""Expected purchases by a new customer in ``(0, t]``: the model's E[X(t)].

        .. math:: E[X(t)] = \frac{a+b-1}{a-1}\Big[1 - \Big(\frac{\alpha}{\alpha+t}\Big)^r
                  {}_2F_1\Big(r, b; a+b-1; \frac{t}{\alpha+t}\Big)\Big]

        Examples
        --------
        >>> m = BGNBD().fit([0, 1, 3], [0.0, 4.0, 20.0], [30.0, 30.0, 30.0])
        >>> e = m.expected_purchases([0.0, 10.0, 20.0])
        >>> float(e[0]), bool(e[1] < e[2])
        (0.0, True)
        """
        p = self._params()
        tt = np.asarray(t, dtype=np.float64)
        z = tt / (p.alpha + tt)
        result: NDArray[np.float64] = (
            (p.a + p.b - 1.0)
            / (p.a - 1.0)
            * (1.0 - (p.alpha / (p.alpha + tt)) ** p.r * hyp2f1(p.r, p.b, p.a + p.b - 1.0, z))
        )
        return result
