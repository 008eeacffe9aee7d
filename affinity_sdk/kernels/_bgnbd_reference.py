"""Reference (numpy) BG/NBD likelihood: the oracle of ``_bgnbd_numba.py`` (same name, signature
and numbers up to rounding). See :mod:`affinity_sdk.models.bgnbd` for the model it serves.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["neg_ll_grad"]


def _prefix(terms: NDArray[np.float64]) -> NDArray[np.float64]:
    """``[0, t_0, t_0 + t_1, ...]``: entry ``x`` is the sum of the first ``x`` terms."""
    return np.concatenate(([0.0], np.cumsum(terms)))


def neg_ll_grad(
    log_params: NDArray[np.float64],
    x: NDArray[np.int64],
    tx: NDArray[np.float64],
    big_t: NDArray[np.float64],
    weight: NDArray[np.float64],
    grad: NDArray[np.float64],
) -> float:
    r"""Negative weighted BG/NBD log-likelihood; its gradient in ``log_params`` goes to ``grad``.

    ``log_params`` is :math:`(\ln r, \ln\alpha, \ln a, \ln b)`; per customer, with ``x`` repeat
    purchases, recency :math:`t_x` and age ``T`` (Fader, Hardie & Lee 2005, eq. 6):

    .. math:: \ell = \underbrace{\ln\frac{\Gamma(r+x)\alpha^r}{\Gamma(r)}}_{A_1}
              + \underbrace{\ln\frac{B(a, b+x)}{B(a, b)}}_{A_2}
              + \ln\Big[\underbrace{(\alpha+T)^{-(r+x)}}_{e^{A_3}}
              + [x>0]\underbrace{\frac{a}{b+x-1}(\alpha+t_x)^{-(r+x)}}_{e^{A_4}}\Big]

    Frequencies are integers, so the gamma ratios are finite products,
    :math:`\Gamma(r+x)/\Gamma(r) = \prod_{k<x}(r+k)` and
    :math:`B(a, b+x)/B(a, b) = \prod_{k<x}\frac{b+k}{a+b+k}`: their logs (and derivatives) are
    prefix sums over ``k``, no special functions. The last term is a log-sum-exp of
    :math:`A_3, A_4`, whose derivatives are weighted by :math:`w_3, w_4 = \mathrm{softmax}(A_3, A_4)`.
    Returns :math:`-\sum_i \mathrm{weight}_i\, \ell_i`; ``grad`` gets its derivatives in the log
    parameters.
    """
    r, alpha, a, b = np.exp(log_params)
    k = np.arange(int(x.max(initial=0)), dtype=np.float64)
    # A_1, A_2 and their derivatives in r, a, b: sums over k < x, looked up per customer
    a1 = r * np.log(alpha) + _prefix(np.log(r + k))[x]
    d1_r = np.log(alpha) + _prefix(1.0 / (r + k))[x]
    d1_alpha = r / alpha
    a2 = _prefix(np.log(b + k) - np.log(a + b + k))[x]
    d2_a = _prefix(-1.0 / (a + b + k))[x]
    d2_b = _prefix(1.0 / (b + k) - 1.0 / (a + b + k))[x]
    # A_3, A_4 (A_4 = -inf, i.e. absent, without a repeat purchase)
    repeat = x > 0
    rx = r + x
    log_at = np.log(alpha + big_t)
    log_atx = np.log(alpha + tx)
    b_x1 = np.where(repeat, b + x - 1.0, 1.0)  # b + x - 1 > 0 for x >= 1
    a3 = -rx * log_at
    a4 = np.where(repeat, np.log(a) - np.log(b_x1) - rx * log_atx, -np.inf)
    top = np.maximum(a3, a4)
    e3 = np.exp(a3 - top)
    e4 = np.exp(a4 - top)
    l5 = top + np.log(e3 + e4)
    w3 = e3 / (e3 + e4)
    w4 = e4 / (e3 + e4)
    d5_r = -w3 * log_at - w4 * log_atx
    d5_alpha = -w3 * rx / (alpha + big_t) - w4 * rx / (alpha + tx)
    d5_a = w4 / a
    d5_b = -w4 / b_x1
    ll = np.sum(weight * (a1 + a2 + l5))
    # chain rule for the log parameters (d/d ln r = r d/dr), and signs for minimisation
    grad[0] = -np.sum(weight * (d1_r + d5_r)) * r
    grad[1] = -np.sum(weight * (d1_alpha + d5_alpha)) * alpha
    grad[2] = -np.sum(weight * (d2_a + d5_a)) * a
    grad[3] = -np.sum(weight * (d2_b + d5_b)) * b
    return -float(ll)
