"""Order-day and BG/NBD features: repeat-buying structure read from each profile's distinct UTC order days.

The propensity counts (:class:`~affinity_sdk.models.propensity_features.ProfileCounts`) keep order
revenue per (profile, UTC order day) as a sorted key table ``profile << KEY_BITS | (day + DAY_BIAS)``
(:func:`order_day_keys`, :mod:`~affinity_sdk.models.key_tables`). From it
:func:`~affinity_sdk.models.propensity_features.features_from_counts` reads, when its
:class:`~affinity_sdk.models.propensity_features.FeatureSpec` asks for them, the order-day features
(``spec.order_days``: decayed order days, their count, mean gap, overdue ratio and rate) and the
BG/NBD features (``spec.bgnbd``: expected orders and P(alive) from a population fit).
:func:`decayed_order_days` is the plain baseline a purchase propensity should beat (re-exported by
:mod:`affinity_sdk.models.propensity`).

Examples
--------
>>> import numpy as np
>>> day = 86_400_000
>>> keys = order_day_keys(np.array([0, 0, 1]), np.array([0, day + 5, -1]))
>>> ((keys >> KEY_BITS).tolist(), ((keys & VALUE_MASK) - DAY_BIAS).tolist())
([0, 0, 1], [0, 1, -1])
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._units import parse_duration, to_epoch_ms
from affinity_sdk.capture.events import EVENT_TYPE_CODES
from affinity_sdk.errors import ConfigError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.models.key_tables import KEY_BITS, VALUE_MASK, sum_by_key

if TYPE_CHECKING:
    from affinity_sdk.models.propensity_features import FeatureSpec

__all__ = ["DAY_BIAS", "decayed_order_days", "order_day_keys"]

_DAY_MS: Final = 86_400_000.0
_DAY_MS_INT: Final = np.int64(86_400_000)
#: Added to a UTC day number (``ts_ms // 86_400_000``, negative before 1970) in an order-day key,
#: so keys sort by (profile, day) and stay non-negative.
DAY_BIAS: Final = 1 << 31
_ORDER: Final = EVENT_TYPE_CODES["order_completed"]

_ORDER_DAY_FEATURES: Final[tuple[str, ...]] = (
    "log_order_days",
    "log_mean_gap_days",
    "log_gap_ratio",
    "log_order_day_rate",
)


def order_day_keys(user: NDArray[np.int64], ts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Order-day keys ``user << 32 | (UTC day + DAY_BIAS)`` of orders by ``user`` at ``ts``."""
    day = np.floor_divide(ts.astype(np.int64, copy=False), _DAY_MS_INT) + DAY_BIAS
    keys: NDArray[np.int64] = (user.astype(np.int64) << KEY_BITS) | day
    return keys


def _bgnbd_features(
    day_keys: NDArray[np.int64],
    cutoff_ms: int,
    spec: FeatureSpec,
    n: int,
    population: NDArray[np.bool_] | None = None,
) -> dict[str, NDArray[np.float64]]:
    """BG/NBD fitted on the (frequency, recency, T) summaries in weeks of the ``population``'s
    order days (as :func:`~affinity_sdk.models.bgnbd.summary_from_transactions`); the summaries
    are sorted before the fit so the fit does not depend on how profiles are numbered."""
    from affinity_sdk.models.bgnbd import BGNBD

    expected = np.zeros(n)
    alive = np.zeros(n)
    who = day_keys >> KEY_BITS
    day = (day_keys & VALUE_MASK) - DAY_BIAS
    if population is not None:
        mask = population[who]
        who, day = who[mask], day[mask]
    customer, start, n_days = np.unique(who, return_index=True, return_counts=True)
    period_days = 7.0  # the summaries' default period, one week
    first, last = day[start], day[start + n_days - 1]
    frequency = (n_days - 1).astype(np.float64)
    recency = (last - first) / period_days
    big_t = (cutoff_ms // int(_DAY_MS_INT) - first) / period_days
    # BG/NBD needs some repeat buying to be identified; without it the features stay 0.
    if customer.shape[0] >= 10 and frequency.sum() > 0:
        order = np.lexsort((big_t, recency, frequency))
        model = BGNBD().fit(frequency[order], recency[order], big_t[order])
        horizon_w = parse_duration(spec.bgnbd_horizon) / 604_800.0
        expected[customer] = model.conditional_expected_purchases(horizon_w, frequency, recency, big_t)
        alive[customer] = model.conditional_probability_alive(frequency, recency, big_t)
    return {"bgnbd_log_expected_orders": np.log1p(expected), "bgnbd_p_alive": alive}


def _order_day_features(
    day_keys: NDArray[np.int64],
    day_revenue: NDArray[np.float64],
    cutoff_ms: int,
    spec: FeatureSpec,
    n: int,
) -> dict[str, NDArray[np.float64]]:
    """Inter-purchase structure from the distinct UTC order days at or before the cutoff (the
    caller passes only those): decayed order-day counts at each half-life (log1p; each day
    weighted by ``spec.order_day_value_power``, see :func:`decayed_order_days`), the
    number of order days (log1p), the mean gap between consecutive order days in days (log1p; the
    open gap since the only order day for one-day buyers), the days since the last order day over
    that mean gap (log1p; how overdue the next order is) and order days per week since the first
    (log1p). Profiles that never ordered get zeros (``never_ordered`` marks them)."""
    who, age, day_revenue = _days_of(day_keys, day_revenue, cutoff_ms)
    weight = _day_weight(day_revenue, spec.order_day_value_power)
    count = np.bincount(who, minlength=n)[:n].astype(np.float64)
    since_first = np.zeros(n)
    since_last = np.full(n, np.inf)
    np.maximum.at(since_first, who, age)
    np.minimum.at(since_last, who, age)
    since_last[count == 0] = 0.0
    mean_gap = np.where(count >= 2, (since_first - since_last) / np.maximum(count - 1, 1), since_first)
    out = {
        f"order_days_decay_{name}": np.log1p(_decay_days(who, age, weight, h / 86_400.0, n))
        for name, h in zip(spec.half_lives, spec.half_lives_s, strict=True)
    }
    out["log_order_days"] = np.log1p(count)
    out["log_mean_gap_days"] = np.log1p(mean_gap)
    out["log_gap_ratio"] = np.where(count > 0, np.log1p(since_last / np.maximum(mean_gap, 1.0)), 0.0)
    out["log_order_day_rate"] = np.log1p(7.0 * count / (since_first + 1.0))
    return out


def _days_of(
    day_keys: NDArray[np.int64], day_revenue: NDArray[np.float64], cutoff_ms: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """``(profile, age in days from the day's start to the cutoff, revenue that day)`` per key."""
    day = (day_keys & VALUE_MASK) - DAY_BIAS
    return day_keys >> KEY_BITS, (cutoff_ms - day * _DAY_MS_INT) / _DAY_MS, day_revenue


def _order_days(
    user: NDArray[np.int64],
    etype: NDArray[np.int64],
    ts: NDArray[np.int64],
    revenue: NDArray[np.float64],
    cutoff_ms: int,
    n: int,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Each profile's distinct UTC order days among the given events (those at or before the
    cutoff) as ``(profile, age in days from the day's start to the cutoff, revenue that day)``,
    sorted by profile, then day."""
    orders = (etype == _ORDER) & (user < n)
    keys, day_revenue = sum_by_key(order_day_keys(user[orders], ts[orders]), revenue[orders])
    return _days_of(keys, day_revenue, cutoff_ms)


def _day_weight(day_revenue: NDArray[np.float64], power: float) -> NDArray[np.float64]:
    """``max(revenue, 1) ** power`` per order day (all ones at power 0)."""
    if power == 0.0:
        return np.ones(day_revenue.shape[0])
    weight: NDArray[np.float64] = np.maximum(day_revenue, 1.0) ** power
    return weight


def _decay_days(
    who: NDArray[np.int64],
    age: NDArray[np.float64],
    weight: NDArray[np.float64],
    half_life_days: float,
    n: int,
) -> NDArray[np.float64]:
    """Per profile, the sum of ``weight * 0.5 ** (age / half_life_days)`` over its order days."""
    decayed = weight * 0.5 ** (age / half_life_days)
    return np.bincount(who, weights=decayed, minlength=n)[:n].astype(np.float64)


def decayed_order_days(
    batch: EventBatch,
    cutoff: int | str | datetime,
    half_life: str | float,
    *,
    value_power: float = 0.0,
    n_profiles: int | None = None,
) -> NDArray[np.float64]:
    """The plain baseline a purchase propensity should beat: per profile, its distinct order days
    (same-day orders count once) at or before ``cutoff``, each weighted ``0.5 ** (age / half_life)``
    with the age counted from the day's start. ``half_life`` is a duration (``"13w"``) or seconds.
    ``value_power`` > 0 also weights each day by ``max(its revenue, 1) ** value_power``.

    Examples
    --------
    >>> from affinity_sdk.capture.events import OrderCompleted
    >>> day = 86_400_000
    >>> events = [OrderCompleted(user_id="a", timestamp=t * day, order_id=str(t), products=[], revenue=4.0)
    ...           for t in (0, 0, 7, 30)]
    >>> batch = EventBatch.from_events(events)
    >>> decayed_order_days(batch, 14 * day, "7d").tolist()  # 2 ** -2 + 2 ** -1
    [0.75]
    >>> decayed_order_days(batch, 14 * day, "7d", value_power=0.5).tolist()  # 8 ** 0.5 / 4 + 4 ** 0.5 / 2
    [1.7071067811865475]
    """
    cutoff_ms = to_epoch_ms(cutoff)
    half_life_days = parse_duration(half_life) / 86_400.0
    if not half_life_days > 0:
        raise ConfigError(f"half_life must be positive (got {half_life!r})")
    if not 0.0 <= value_power <= 4.0:
        raise ConfigError(f"value_power must be in [0, 4] (got {value_power!r})")
    n = len(batch.interners.users) if n_profiles is None else n_profiles
    seen = batch.ts_ms <= cutoff_ms
    who, age, day_revenue = _order_days(
        batch.user[seen],
        batch.event_type[seen].astype(np.int64),
        batch.ts_ms[seen],
        np.nan_to_num(batch.revenue[seen]),
        cutoff_ms,
        n,
    )
    return _decay_days(who, age, _day_weight(day_revenue, value_power), half_life_days, n)
