r"""Discount sensitivity: how much more likely a customer buys with a discount or coupon than
without, against the population (the arithmetic behind :meth:`AffinityModel.discount_sensitivity
<affinity_sdk.models.affinity.AffinityModel.discount_sensitivity>`).

With :math:`k_u` the decayed count of orders with a discount or coupon (on the order or any line),
:math:`n_u` all decayed orders (the affinity view's first two activity columns), :math:`p = \sum k
/ \sum n` and ``m`` = ``discount_shrinkage`` pseudo-orders at the population rate,

.. math::

    r_u = \frac{k_u + m p}{n_u + m},\qquad
    \mathrm{sensitivity}_u = \frac{r_u / (1 - r_u)}{p / (1 - p)}

(the customer's discounted : full-price odds over the population's). High at or above
``discount_high``, Medium at or above ``discount_medium``, else Low; no orders is Low. Only
visible profiles (consenting, not forgotten) count: hidden ones read as profiles without orders
and are left out of :math:`p`.

Examples
--------
>>> from affinity_sdk.profile.affinity_view import AffinityView
>>> result = discount_sensitivity_of(AffinityView(backend="reference"), np.ones(0, dtype=bool), 0)
>>> result.population_rate, result.tier.shape
(0.0, (0,))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from affinity_sdk.profile.affinity_view import AffinityView

__all__ = ["DISCOUNT_CLASSES", "DiscountSensitivity", "discount_sensitivity_of"]

#: Discount-sensitivity class names by code (0, 1, 2).
DISCOUNT_CLASSES: Final[tuple[str, ...]] = ("Low", "Medium", "High")


@dataclass(frozen=True, eq=False)
class DiscountSensitivity:
    """Per profile: decayed ``orders`` and ``discounted`` orders, the shrunk discounted-order
    ``rate``, ``sensitivity`` (its odds over the ``population_rate``'s odds; inf where every
    order is discounted and there is no shrinkage) and ``tier`` (0 Low, 1 Medium, 2 High).
    Hidden profiles read as profiles without orders (Low) and are left out of the population rate."""

    orders: NDArray[np.float64]
    discounted: NDArray[np.float64]
    rate: NDArray[np.float64]
    sensitivity: NDArray[np.float64]
    tier: NDArray[np.int8]
    population_rate: float


def discount_sensitivity_of(view: AffinityView, visible: NDArray[np.bool_], now: int) -> DiscountSensitivity:
    """Every profile's discount sensitivity at ``now`` (epoch ms) from ``view``'s order counters,
    with ``visible`` the store's visibility mask; cached in ``view.cache`` until the state changes.

    The caller holds the store's lock and has synced the view with ``visible`` (``view.cache_mask``).
    """
    n = view.n_profiles
    key = ("discount", now, n)
    if key not in view.cache:
        factors = view.factors(view.activity_lam[:2], now)
        orders = view.activity[:, 0] * factors[0]
        discounted = view.activity[:, 1] * factors[1]
        if not view.cache_all_visible:
            orders = np.where(visible, orders, 0.0)
            discounted = np.where(visible, discounted, 0.0)
        total = float(orders.sum())
        p = float(discounted.sum()) / total if total > 0 else 0.0
        config = view.config
        m = config.discount_shrinkage
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(orders + m > 0, (discounted + m * p) / (orders + m), p)
            odds = rate / (1.0 - rate)
            sensitivity = odds / (p / (1.0 - p)) if 0.0 < p < 1.0 else np.ones(n)
        sensitivity = np.where(np.isnan(sensitivity), 1.0, sensitivity)
        tier = np.zeros(n, dtype=np.int8)
        tier[sensitivity >= config.discount_medium] = 1
        tier[sensitivity >= config.discount_high] = 2
        tier[orders <= 0] = 0
        view.cache[key] = DiscountSensitivity(orders, discounted, rate, sensitivity, tier, p)
    result: DiscountSensitivity = view.cache[key]
    return result
