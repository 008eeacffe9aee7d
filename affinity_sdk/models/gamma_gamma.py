r"""Gamma-Gamma: the spend-per-order model that pairs with BG/NBD for customer lifetime value.

Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value" (after Colombo & Jiang 1999).
A customer's order values are i.i.d. :math:`\Gamma(p, \nu)` around their own mean
:math:`p/\nu`, and :math:`\nu \sim \Gamma(q, \gamma)` across customers (``v`` = :math:`\gamma`).
The mean :math:`m_x` of ``x`` orders is then :math:`\Gamma(px, \nu x)`, and integrating out
:math:`\nu` gives each repeat buyer's likelihood

.. math:: f(m_x \mid x) = \frac{\Gamma(px+q)}{\Gamma(px)\,\Gamma(q)}
          \frac{\gamma^q\, m_x^{px-1}\, x^{px}}{(\gamma + m_x x)^{px+q}}

and the posterior mean spend per order

.. math:: E[M \mid x, m_x] = \frac{q-1}{px+q-1}\,\frac{p\gamma}{q-1}
          + \frac{px}{px+q-1}\, m_x,

a weighted average of the population mean :math:`p\gamma/(q-1)` and the customer's own mean that
leans on the customer more the more orders they have. ``x`` and :math:`m_x` follow the
published analyses (and lifetimes): ``x`` is the number of *repeat* purchase days and
:math:`m_x` their mean value, the first purchase left out; see
:attr:`~affinity_sdk.models.bgnbd.RFMSummary.repeat_monetary`.

The fit is plain vectorised numpy / scipy (``gammaln``, ``digamma``, trigamma as ``zeta(2, .)``):
damped Newton steps on log-parameters with the exact gradient and Hessian, on the data reduced
once to per-``x`` counts and a few sums (only :math:`\ln(\gamma + m_x x)` stays per customer).
There is nothing to compile.

Examples
--------
>>> import numpy as np
>>> x, m = np.array([1.0, 2.0, 4.0, 1.0, 3.0]), np.array([20.0, 35.0, 28.0, 60.0, 15.0])
>>> model = GammaGamma().fit(x, m)
>>> model.params_.n_customers
5
>>> spend = model.conditional_expected_average_profit([0, 4], [0.0, 28.0])
>>> bool(spend[0] == model.population_mean_spend())
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, gammaln, zeta

from affinity_sdk._backends import BackendName, resolve_backend
from affinity_sdk.errors import AffinityError, SchemaError

__all__ = ["GammaGamma", "GammaGammaParams"]

#: Bounds on the log-parameters: wide enough for any currency unit, and finite.
_LOG_BOUND: Final = 30.0
#: Convergence: the largest per-customer gradient entry in log-parameters.
_GTOL: Final = 1e-10
_MAX_STEPS: Final = 500


class GammaGammaParams(msgspec.Struct, frozen=True, kw_only=True):
    """Fitted Gamma-Gamma parameters (``v`` is the paper's :math:`\\gamma`) and the maximised
    log-likelihood over the ``n_customers`` repeat buyers it was fitted on."""

    p: float
    q: float
    v: float
    log_likelihood: float
    n_customers: int


def _validate(
    frequency: ArrayLike, monetary_value: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Broadcast to float arrays; a bad value raises :class:`SchemaError` naming its position."""
    x, m = np.broadcast_arrays(
        np.asarray(frequency, dtype=np.float64), np.asarray(monetary_value, dtype=np.float64)
    )
    if x.ndim != 1:
        x, m = np.atleast_1d(x).ravel(), np.atleast_1d(m).ravel()
    bad_x = ~np.isfinite(x) | (x < 0) | (x != np.round(x))
    if bad_x.any():
        i = int(np.flatnonzero(bad_x)[0])
        raise SchemaError(
            f"Expected a whole number of repeat purchases >= 0, got {float(x[i])!r} - at `frequency[{i}]`", i
        )
    bad_m = ~np.isfinite(m) | (m < 0)
    if bad_m.any():
        i = int(np.flatnonzero(bad_m)[0])
        raise SchemaError(f"Expected a finite spend >= 0, got {float(m[i])!r} - at `monetary_value[{i}]`", i)
    return x, m


@dataclass(frozen=True)
class _Spend:
    r"""The repeat buyers' data, reduced to what the likelihood needs.

    Only :math:`\ln(\gamma + m_x x)` is per customer; the gamma-function terms depend on ``x``
    alone (a few distinct values) and the ``ln m`` / ``ln x`` terms are sums fixed by the data.
    """

    mx: NDArray[np.float64]
    w: NDArray[np.float64]
    wx: NDArray[np.float64]
    ux: NDArray[np.float64]
    uw: NDArray[np.float64]
    uwx: NDArray[np.float64]
    uwx2: NDArray[np.float64]
    total: float
    s_xlogmx: float
    s_logm: float

    @classmethod
    def of(cls, x: NDArray[np.float64], m: NDArray[np.float64], w: NDArray[np.float64]) -> _Spend:
        ux, inverse = np.unique(x, return_inverse=True)
        wx = w * x
        uw = np.bincount(inverse.ravel(), weights=w, minlength=ux.shape[0]).astype(np.float64)
        return cls(
            mx=m * x,
            w=w,
            wx=wx,
            ux=ux,
            uw=uw,
            uwx=uw * ux,
            uwx2=uw * ux * ux,
            total=float(w.sum()),
            s_xlogmx=float(wx @ np.log(m * x)),
            s_logm=float(w @ np.log(m)),
        )


def _neg_ll(
    theta: NDArray[np.float64], d: _Spend, *, order: int = 0
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    r"""Weighted negative log-likelihood in ``theta = log(p, q, v)``, with its gradient
    (``order >= 1``) and Hessian (``order >= 2``) in ``theta``, else zeros.

    .. math:: -\ell = -\sum_i w_i\Big[\ln\Gamma(px_i+q) - \ln\Gamma(px_i) - \ln\Gamma(q)
              + q\ln\gamma + (px_i-1)\ln m_i + px_i\ln x_i - (px_i+q)\ln(\gamma+m_ix_i)\Big]
    """
    p, q, v = (float(c) for c in np.exp(theta))
    k = d.ux.shape[0]
    # One special-function call per order on [p x_u + q, p x_u, q] (the distinct x_u only).
    z = np.concatenate([p * d.ux + q, p * d.ux, [q]])
    lg = gammaln(z)
    log_v = math.log(v)
    log_vmx = np.log(v + d.mx)
    s_log = d.w @ log_vmx
    s_xlog = d.wx @ log_vmx
    ll = (
        d.uw @ (lg[:k] - lg[k : 2 * k])
        - d.total * (lg[-1] - q * log_v)
        + p * (d.s_xlogmx - s_xlog)
        - d.s_logm
        - q * s_log
    )
    grad = np.zeros(3)
    hess = np.zeros((3, 3))
    if order >= 1:
        psi = digamma(z)
        inv = 1.0 / (v + d.mx)
        s_inv, s_xinv = d.w @ inv, d.wx @ inv
        # Derivatives in (p, q, v); the chain rule to log-parameters follows.
        g = np.array(
            [
                d.uwx @ (psi[:k] - psi[k : 2 * k]) + d.s_xlogmx - s_xlog,
                d.uw @ psi[:k] - d.total * (psi[-1] - log_v) - s_log,
                d.total * q / v - p * s_xinv - q * s_inv,
            ]
        )
        phi = np.array([p, q, v])
        grad = -phi * g
        if order >= 2:
            tri = zeta(2.0, z)
            inv2 = inv * inv
            h_pq = d.uwx @ tri[:k]
            h_qv = d.total / v - s_inv
            h = np.array(
                [
                    [d.uwx2 @ (tri[:k] - tri[k : 2 * k]), h_pq, -s_xinv],
                    [h_pq, d.uw @ tri[:k] - d.total * tri[-1], h_qv],
                    [-s_xinv, h_qv, -d.total * q / v**2 + p * (d.wx @ inv2) + q * (d.w @ inv2)],
                ]
            )
            hess = -(np.outer(phi, phi) * h + np.diag(phi * g))
    return -float(ll), grad, hess


def _newton(d: _Spend, theta: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
    """Minimise :func:`_neg_ll` per customer by damped Newton (Levenberg-Marquardt) steps.

    Three parameters and a cheap exact Hessian: a handful of steps converge where a quasi-Newton
    method needs dozens of evaluations. The damping keeps each step a descent step far from the
    optimum, where the log-likelihood need not be concave.
    """
    scale = 1.0 / d.total
    f, g, h = _neg_ll(theta, d, order=2)
    mu = 1e-3
    for _ in range(_MAX_STEPS):
        if np.max(np.abs(g)) * scale < _GTOL:
            return theta, f
        try:
            step = np.linalg.solve(h + mu * np.eye(3) * max(1.0, float(np.max(np.abs(np.diag(h))))), -g)
        except np.linalg.LinAlgError:
            mu *= 10.0
            continue
        candidate = np.clip(theta + step, -_LOG_BOUND, _LOG_BOUND)
        f_new, g_new, h_new = _neg_ll(candidate, d, order=2)
        if np.isfinite(f_new) and f_new <= f:
            theta, f, g, h = candidate, f_new, g_new, h_new
            mu = max(mu * 0.1, 1e-12)
            if np.max(np.abs(step)) < 1e-13:
                return theta, f
        else:
            mu *= 10.0
            if mu > 1e12:
                break
    raise AffinityError(
        f"Gamma-Gamma fit did not converge (gradient {np.max(np.abs(g)) * scale:.3g} at "
        f"p, q, v = {np.exp(theta).round(6).tolist()})"
    )


class GammaGamma:
    """The Gamma-Gamma spend model: fit by maximum likelihood, then expected spend per order.

    Fitted parameters are in ``params_`` (a :class:`GammaGammaParams`) after :meth:`fit`.
    ``backend`` is accepted and recorded for the same shape as
    :class:`~affinity_sdk.models.bgnbd.BGNBD`; every backend runs the same vectorised numpy code
    (one closed-form term per customer: nothing to compile).
    """

    def __init__(self, *, backend: str | None = "auto") -> None:
        self.params_: GammaGammaParams | None = None
        self.backend: BackendName = resolve_backend(backend)

    def __repr__(self) -> str:
        return f"GammaGamma(params_={self.params_!r}, backend={self.backend!r})"

    def _params(self) -> GammaGammaParams:
        if self.params_ is None:
            raise AffinityError("the Gamma-Gamma model is not fitted yet: call fit() first")
        return self.params_

    def fit(
        self,
        frequency: ArrayLike,
        monetary_value: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        initial: tuple[float, float, float] | None = None,
    ) -> GammaGamma:
        """Maximum-likelihood fit on the repeat buyers; returns ``self``.

        ``frequency`` is each customer's repeat purchase count, ``monetary_value`` the mean value
        of those repeat purchases. Customers with ``frequency == 0`` carry no spend information and
        are left out; a repeat buyer with zero mean spend has no likelihood under the model and
        raises, as does a negative or NaN spend. ``weights`` counts customers sharing a row.
        ``initial`` is the starting ``(p, q, v)``; the default ``(1, 3, 2 * mean spend)`` starts
        at the data's mean spend per order, whatever the currency unit.

        Examples
        --------
        >>> m = GammaGamma().fit([0, 1, 2, 3], [0.0, 10.0, 30.0, 20.0])
        >>> m.params_.n_customers, m.params_.p > 0
        (3, True)
        """
        x, m = _validate(frequency, monetary_value)
        w = (
            np.ones(x.shape[0])
            if weights is None
            else np.broadcast_to(np.asarray(weights, np.float64), x.shape)
        )
        repeat = x > 0
        if not repeat.any():
            raise AffinityError("cannot fit Gamma-Gamma: no customer has a repeat purchase (all frequency 0)")
        zero = repeat & (m == 0)
        if zero.any():
            i = int(np.flatnonzero(zero)[0])
            raise SchemaError(
                f"Expected a positive mean spend for a repeat buyer, got 0.0 - at `monetary_value[{i}]` "
                "(the Gamma-Gamma model needs spend > 0; leave such customers out or floor their spend)",
                i,
            )
        data = _Spend.of(x[repeat], m[repeat], np.ascontiguousarray(w[repeat], dtype=np.float64))
        if initial is None:
            initial = (1.0, 3.0, 2.0 * float(data.w @ m[repeat]) / data.total)
        theta, neg_ll = _newton(data, np.log(np.asarray(initial, dtype=np.float64)))
        p, q, v = (float(c) for c in np.exp(theta))
        self.params_ = GammaGammaParams(p=p, q=q, v=v, log_likelihood=-neg_ll, n_customers=int(repeat.sum()))
        return self

    def log_likelihood(self, frequency: ArrayLike, monetary_value: ArrayLike) -> float:
        """Log-likelihood of the repeat buyers' mean spends under the fitted parameters
        (customers with ``frequency == 0`` contribute nothing).

        Examples
        --------
        >>> m = GammaGamma().fit([1, 2, 3], [10.0, 30.0, 20.0])
        >>> round(m.log_likelihood([1, 2, 3], [10.0, 30.0, 20.0]) - m.params_.log_likelihood, 9)
        0.0
        """
        p = self._params()
        x, m = _validate(frequency, monetary_value)
        repeat = x > 0
        theta = np.log([p.p, p.q, p.v])
        with np.errstate(divide="ignore"):
            value, _, _ = _neg_ll(theta, _Spend.of(x[repeat], m[repeat], np.ones(int(repeat.sum()))))
        return -value

    def population_mean_spend(self) -> float:
        r"""Mean spend per order across customers, :math:`p\gamma/(q-1)` (infinite when
        :math:`q \le 1`: the fitted spread has no mean).

        Examples
        --------
        >>> GammaGamma().fit([1, 2, 3], [10.0, 30.0, 20.0]).population_mean_spend() > 0
        True
        """
        p = self._params()
        return p.p * p.v / (p.q - 1.0) if p.q > 1.0 else float("inf")

    def conditional_expected_average_profit(
        self, frequency: ArrayLike, monetary_value: ArrayLike
    ) -> NDArray[np.float64]:
        r"""Posterior mean spend per order given ``frequency`` repeat purchases of mean
        ``monetary_value``; the population mean :meth:`population_mean_spend` for
        ``frequency == 0`` (whatever ``monetary_value`` holds there).

        .. math:: E[M \mid x, m_x] = \frac{p(\gamma + x m_x)}{px + q - 1}

        Examples
        --------
        >>> m = GammaGamma().fit([1, 2, 3, 6], [10.0, 30.0, 20.0, 25.0])
        >>> e = m.conditional_expected_average_profit([0, 1, 50], [99.0, 40.0, 40.0])
        >>> bool(e[0] == m.population_mean_spend()) and bool(abs(e[2] - 40.0) < abs(e[1] - 40.0))
        True
        """
        p = self._params()
        x, m = _validate(frequency, monetary_value)
        if p.q <= 1.0:
            raise AffinityError(
                f"the fitted Gamma-Gamma q = {p.q:.4g} <= 1 has no mean spend: the spend data are too "
                "heavy-tailed for this model"
            )
        m = np.where(x > 0, m, 0.0)
        result: NDArray[np.float64] = p.p * (p.v + x * m) / (p.p * x + p.q - 1.0)
        return result
