"""Propensity models: purchase, repurchase, churn, unsubscribe and uninstall probabilities.

The pipeline, each step a small function:

1. :func:`profile_features` turns the events up to a cutoff ``T`` into one feature row per
   profile, from the same forward-decay state (:class:`~affinity_sdk.profile.decay.DecayState`) the
   scorer keeps: each signal group decayed at two or more half-lives (so trend shows), recency,
   frequency, monetary value, tenure, category concentration and channel engagement. Nothing
   after ``T`` is read, by construction (events are filtered before the state is built).
2. :func:`build_training_set` labels the outcome in ``(T, T + H]`` and stacks several cutoffs.
3. :meth:`PropensityModel.fit` fits an L2-regularised logistic regression on standardised features
   (scipy's L-BFGS-B with the analytic gradient), then calibrates it (Platt or isotonic, chosen on
   held-out rows). Coefficients are readable per feature (:meth:`PropensityModel.explain`).
4. :meth:`PropensityModel.predict_proba` scores through a compiled (Numba) kernel;
   :meth:`PropensityModel.tiers` buckets probabilities into High / Medium / Low.
5. :meth:`PropensityModel.refit` warm-starts on newer cutoffs (campaign outcomes feed back);
   :meth:`PropensityModel.save` / :meth:`PropensityModel.load` keep the feature list, config
   fingerprint, training window and a model version.

Examples
--------
>>> from affinity_sdk.sim.datasets import simulate_shop
>>> sim = simulate_shop(400, weeks=8, horizon_weeks=2, seed=3)
>>> week = 7 * 86_400_000
>>> train = build_training_set(sim.batch, "purchase", [sim.end_ms - 4 * week, sim.end_ms - 2 * week], "2w")
>>> model = PropensityModel.fit(train)
>>> p = model.predict_proba(profile_features(sim.batch, sim.end_ms, spec=model.spec).X)
>>> p.shape == (400,) and bool(((p >= 0) & (p <= 1)).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import msgspec
import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import isotonic_regression, minimize
from scipy.special import expit

from affinity_sdk import kernels
from affinity_sdk._persist import read_container, write_container
from affinity_sdk._units import parse_duration, to_epoch_ms
from affinity_sdk.capture.events import CHANNELS, EVENT_TYPE_CODES
from affinity_sdk.errors import AffinityError, ConfigError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.profile.decay import DecayState

__all__ = [
    "OUTCOMES",
    "TIER_NAMES",
    "Calibrator",
    "FeatureSpec",
    "Features",
    "Outcome",
    "PropensityModel",
    "TierSpec",
    "TrainingSet",
    "assign_tiers",
    "build_training_set",
    "decayed_order_days",
    "feature_names",
    "outcome_labels",
    "profile_features",
]

Outcome = Literal["purchase", "repurchase", "churn", "unsubscribe", "uninstall"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("purchase", "repurchase", "churn", "unsubscribe", "uninstall")
MODEL_KIND: Final = "propensity-model"
#: Bumped when the saved layout or the feature definitions change; older files are refused.
MODEL_FORMAT: Final = 1
_DAY_MS: Final = 86_400_000.0

# Signal groups: which event types feed each decayed signal. "revenue" sums order revenue.
_GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "activity": tuple(EVENT_TYPE_CODES),
    "browse": ("page_viewed", "product_viewed", "product_list_viewed", "products_searched"),
    "cart": (
        "product_added",
        "product_removed",
        "product_added_to_wishlist",
        "cart_viewed",
        "checkout_started",
        "coupon_applied",
    ),
    "order": ("order_completed",),
    "revenue": ("order_completed",),
    "message": ("email_opened", "email_clicked", "sms_clicked", "push_opened"),
    "app": ("app_installed", "app_opened"),
}
_SCALAR_FEATURES: Final[tuple[str, ...]] = (
    "log_days_since_last_event",
    "log_days_since_last_order",
    "never_ordered",
    "log_orders",
    "log_events",
    "log_revenue",
    "log_avg_order_value",
    "log_tenure_days",
    "log_refunds",
    "category_concentration",
    "channels_used",
    *(f"channel_share_{name}" for name in CHANNELS),
    "unsubscribed",
    "app_installed",
)

_ORDER_DAY_FEATURES: Final[tuple[str, ...]] = (
    "log_order_days",
    "log_mean_gap_days",
    "log_gap_ratio",
    "log_order_day_rate",
)


class FeatureSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How features are computed: the half-lives every signal group is decayed at (two or more).

    Examples
    --------
    >>> FeatureSpec(half_lives=("7d", "28d")).half_lives_s
    (604800.0, 2419200.0)
    """

    half_lives: tuple[str, ...] = ("14d", "56d")
    #: Add BG/NBD features (log expected orders in ``bgnbd_horizon``, P(alive)), the model fitted
    #: on the orders up to each cutoff: repeat-buying structure a linear score cannot express.
    bgnbd: bool = False
    bgnbd_horizon: str = "13w"
    #: Add order-day features: distinct order days (same-day orders count once) decayed at every
    #: half-life, their count, the mean gap between them, the time since the last one relative to
    #: that gap, and the order-day rate since the first order. Per profile, from orders up to T.
    order_days: bool = False
    #: Weight each order day in the ``order_days_decay_*`` features by ``max(revenue that day, 1)
    #: ** power`` (0: every day counts 1). Bigger baskets often mean more loyal buyers.
    order_day_value_power: float = 0.0
    #: Keep only these features, in this order (empty: all of them). Few customers or weak signals
    #: favour a small model: each extra coefficient is estimated from the same rows.
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.half_lives) < 2:
            raise ConfigError("`half_lives`: give two or more half-lives so trends show")
        try:
            seconds = [parse_duration(h) for h in self.half_lives]
        except ValueError as exc:
            raise ConfigError(f"`half_lives`: {exc}") from exc
        if any(not 0 < s < math.inf for s in seconds) or len(set(seconds)) != len(seconds):
            raise ConfigError("`half_lives`: need distinct, positive, finite half-lives")
        if not 0.0 <= self.order_day_value_power <= 4.0:
            raise ConfigError(
                f"`order_day_value_power`: need a number in [0, 4] (got {self.order_day_value_power!r})"
            )
        available = _all_feature_names(self)
        unknown = [c for c in self.columns if c not in available]
        if unknown:
            raise ConfigError(f"`columns`: no feature named {', '.join(map(repr, unknown))} in this spec")
        if len(set(self.columns)) != len(self.columns):
            raise ConfigError("`columns`: each feature at most once")

    @property
    def half_lives_s(self) -> tuple[float, ...]:
        return tuple(parse_duration(h) for h in self.half_lives)


def feature_names(spec: FeatureSpec | None = None) -> tuple[str, ...]:
    """Feature names in column order for ``spec``.

    Examples
    --------
    >>> names = feature_names(FeatureSpec(half_lives=("7d", "28d")))
    >>> names[:3], len(names) == 2 * 7 + 19
    (('activity_decay_7d', 'activity_decay_28d', 'browse_decay_7d'), True)
    """
    spec = spec or FeatureSpec()
    return spec.columns or _all_feature_names(spec)


def _all_feature_names(spec: FeatureSpec) -> tuple[str, ...]:
    """Every feature ``spec`` computes, before ``spec.columns`` selects."""
    decayed = tuple(f"{group}_decay_{h}" for group in _GROUPS for h in spec.half_lives)
    extra: tuple[str, ...] = ("bgnbd_log_expected_orders", "bgnbd_p_alive") if spec.bgnbd else ()
    if spec.order_days:
        extra += (*(f"order_days_decay_{h}" for h in spec.half_lives), *_ORDER_DAY_FEATURES)
    return decayed + _SCALAR_FEATURES + extra


@dataclass(frozen=True)
class Features:
    """Feature rows for profiles ``0 .. n-1`` at ``cutoff_ms``; ``seen`` marks profiles with any
    event at or before the cutoff (the others have all-default rows)."""

    X: NDArray[np.float64]
    seen: NDArray[np.bool_]
    names: tuple[str, ...]
    cutoff_ms: int


def _to_ms(value: int | str | datetime) -> int:
    return value if isinstance(value, int) else to_epoch_ms(value)


def profile_features(
    batch: EventBatch,
    cutoff: int | str | datetime,
    *,
    spec: FeatureSpec | None = None,
    n_profiles: int | None = None,
    backend: str | None = "auto",
) -> Features:
    """One feature row per profile from the events at or before ``cutoff`` (later ones ignored).

    Decayed signals enter as ``log1p``; recency and tenure in log-days; counts as ``log1p``.
    ``n_profiles`` defaults to the number of interned users. ``backend`` picks the decay kernels.

    Examples
    --------
    >>> from affinity_sdk.capture.events import OrderCompleted, PageViewed
    >>> day = 86_400_000
    >>> events = [PageViewed(user_id="a", timestamp=0),
    ...           OrderCompleted(user_id="a", timestamp=2 * day, order_id="1", products=[], revenue=9.0),
    ...           PageViewed(user_id="b", timestamp=9 * day)]
    >>> f = profile_features(EventBatch.from_events(events), 4 * day)
    >>> f.seen.tolist(), float(f.X[0, f.names.index("log_orders")]) == math.log(2)
    ([True, False], True)
    """
    spec = spec or FeatureSpec()
    cutoff_ms = _to_ms(cutoff)
    n = len(batch.interners.users) if n_profiles is None else n_profiles
    keep = batch.ts_ms <= cutoff_ms
    user, etype, ts = batch.user[keep], batch.event_type[keep].astype(np.int64), batch.ts_ms[keep]
    revenue = np.nan_to_num(batch.revenue[keep])
    half_lives = spec.half_lives_s
    n_h = len(half_lives)
    groups = list(_GROUPS)

    # Event type -> group membership, then one (user, signal) row per (event, group, half-life).
    member = np.zeros((len(EVENT_TYPE_CODES), len(groups)), dtype=bool)
    for g, name in enumerate(groups):
        member[[EVENT_TYPE_CODES[t] for t in _GROUPS[name]], g] = True
    ev_idx, grp = np.nonzero(member[etype])
    values = np.where(np.asarray(groups)[grp] == "revenue", revenue[ev_idx], 1.0)
    state = DecayState([h for _ in groups for h in half_lives], backend=backend)
    state.ensure_profiles(n)
    if ev_idx.shape[0]:
        rep_users = np.repeat(user[ev_idx], n_h)
        rep_signals = (grp[:, None] * n_h + np.arange(n_h)[None, :]).reshape(-1).astype(np.int64)
        state.add(rep_users, rep_signals, np.repeat(ts[ev_idx], n_h), np.repeat(values, n_h))
    if state.landmark_ms is None:
        state.rebase(cutoff_ms)
    decayed = state.decayed(cutoff_ms)[:n]
    records = state.records[:n]

    def column(group: str) -> NDArray[np.void]:
        # The counters (count, total, first / last seen) are the same at every half-life.
        return records[:, groups.index(group) * n_h]

    activity, orders = column("activity"), column("order")
    seen = activity["count"] > 0
    ordered = orders["count"] > 0
    tenure_days = np.where(seen, (cutoff_ms - activity["first_ms"]) / _DAY_MS, 0.0)
    since_event = np.where(seen, (cutoff_ms - activity["last_ms"]) / _DAY_MS, 0.0)
    # Never ordered: as long ago as the whole tenure (the most pessimistic recency consistent with it).
    since_order = np.where(ordered, (cutoff_ms - orders["last_ms"]) / _DAY_MS, tenure_days)
    total_revenue = column("revenue")["total"]

    chan_counts = np.bincount(
        user * len(CHANNELS) + batch.channel[keep].astype(np.int64), minlength=n * len(CHANNELS)
    ).reshape(n, len(CHANNELS))
    n_events = np.maximum(activity["count"], 1)

    scalars = {
        "log_days_since_last_event": np.log1p(since_event),
        "log_days_since_last_order": np.log1p(since_order),
        "never_ordered": (~ordered).astype(np.float64),
        "log_orders": np.log1p(orders["count"]),
        "log_events": np.log1p(activity["count"]),
        "log_revenue": np.log1p(np.maximum(total_revenue, 0.0)),
        "log_avg_order_value": np.log1p(np.maximum(total_revenue, 0.0) / np.maximum(orders["count"], 1)),
        "log_tenure_days": np.log1p(tenure_days),
        "log_refunds": np.log1p(_count_of(user, etype, "order_refunded", n)),
        "category_concentration": _category_concentration(batch, keep, n),
        "channels_used": (chan_counts > 0).sum(axis=1).astype(np.float64),
        **{f"channel_share_{name}": chan_counts[:, c] / n_events for c, name in enumerate(CHANNELS)},
        "unsubscribed": (_count_of(user, etype, "unsubscribed", n) > 0).astype(np.float64),
        "app_installed": _app_installed(user, etype, ts, n),
    }
    if spec.bgnbd:
        scalars.update(_bgnbd_features(batch, cutoff_ms, spec, n))
    if spec.order_days:
        scalars.update(_order_day_features(user, etype, ts, revenue, cutoff_ms, spec, n))
    names = _all_feature_names(spec)
    X = np.empty((n, len(names)))
    X[:, : len(groups) * n_h] = np.log1p(np.maximum(decayed, 0.0))
    for j, name in enumerate(names[len(groups) * n_h :]):
        X[:, len(groups) * n_h + j] = scalars[name]
    if spec.columns:
        X = X[:, [names.index(c) for c in spec.columns]]
        names = spec.columns
    return Features(X=X, seen=seen, names=names, cutoff_ms=cutoff_ms)


def _bgnbd_features(
    batch: EventBatch, cutoff_ms: int, spec: FeatureSpec, n: int
) -> dict[str, NDArray[np.float64]]:
    from affinity_sdk.models.bgnbd import BGNBD, summary_from_batch

    expected = np.zeros(n)
    alive = np.zeros(n)
    summary = summary_from_batch(batch, cutoff_ms)
    # BG/NBD needs some repeat buying to be identified; without it the features stay 0.
    if len(summary) >= 10 and summary.frequency.sum() > 0:
        model = BGNBD().fit(summary.frequency, summary.recency, summary.T)
        horizon_w = parse_duration(spec.bgnbd_horizon) / 604_800.0
        who = summary.customer.astype(np.int64)
        expected[who] = model.conditional_expected_purchases(
            horizon_w, summary.frequency, summary.recency, summary.T
        )
        alive[who] = model.conditional_probability_alive(summary.frequency, summary.recency, summary.T)
    return {"bgnbd_log_expected_orders": np.log1p(expected), "bgnbd_p_alive": alive}


def _order_day_features(
    user: NDArray[np.int64],
    etype: NDArray[np.int64],
    ts: NDArray[np.int64],
    revenue: NDArray[np.float64],
    cutoff_ms: int,
    spec: FeatureSpec,
    n: int,
) -> dict[str, NDArray[np.float64]]:
    """Inter-purchase structure from the distinct UTC order days at or before the cutoff (the
    caller passes only those events): decayed order-day counts at each half-life (log1p; each day
    weighted by ``spec.order_day_value_power``, see :func:`decayed_order_days`), the
    number of order days (log1p), the mean gap between consecutive order days in days (log1p; the
    open gap since the only order day for one-day buyers), the days since the last order day over
    that mean gap (log1p; how overdue the next order is) and order days per week since the first
    (log1p). Profiles that never ordered get zeros (``never_ordered`` marks them)."""
    who, age, day_revenue = _order_days(user, etype, ts, revenue, cutoff_ms, n)
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


def _order_days(
    user: NDArray[np.int64],
    etype: NDArray[np.int64],
    ts: NDArray[np.int64],
    revenue: NDArray[np.float64],
    cutoff_ms: int,
    n: int,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Each profile's distinct UTC order days among the given events (those at or before the
    cutoff) as ``(profile, age in days from the day's start to the cutoff, revenue that day)``."""
    orders = (etype == EVENT_TYPE_CODES["order_completed"]) & (user < n)
    day_ms = np.int64(_DAY_MS)
    pairs, which = np.unique(
        np.stack([user[orders], ts[orders] // day_ms], axis=1), axis=0, return_inverse=True
    )
    day_revenue: NDArray[np.float64] = np.bincount(
        which.reshape(-1), weights=revenue[orders], minlength=pairs.shape[0]
    ).astype(np.float64)
    return pairs[:, 0], (cutoff_ms - pairs[:, 1] * day_ms) / _DAY_MS, day_revenue


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
    cutoff_ms = _to_ms(cutoff)
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


def _count_of(user: NDArray[np.int64], etype: NDArray[np.int64], name: str, n: int) -> NDArray[np.float64]:
    return np.bincount(user[etype == EVENT_TYPE_CODES[name]], minlength=n)[:n].astype(np.float64)


def _app_installed(
    user: NDArray[np.int64], etype: NDArray[np.int64], ts: NDArray[np.int64], n: int
) -> NDArray[np.float64]:
    """1 where the last app install / open is later than the last uninstall."""
    last_use = np.full(n, np.iinfo(np.int64).min)
    last_gone = np.full(n, np.iinfo(np.int64).min)
    use = (etype == EVENT_TYPE_CODES["app_installed"]) | (etype == EVENT_TYPE_CODES["app_opened"])
    gone = etype == EVENT_TYPE_CODES["app_uninstalled"]
    np.maximum.at(last_use, user[use], ts[use])
    np.maximum.at(last_gone, user[gone], ts[gone])
    return ((last_use > last_gone) & (last_use > np.iinfo(np.int64).min)).astype(np.float64)


def _category_concentration(batch: EventBatch, keep: NDArray[np.bool_], n: int) -> NDArray[np.float64]:
    """Herfindahl index of each profile's product lines over categories (0 with no product lines)."""
    rows = keep[batch.item_event]
    user = batch.user[batch.item_event[rows]]
    cat = batch.item_category[rows].astype(np.int64)
    if user.shape[0] == 0:
        return np.zeros(n)
    n_cat = int(cat.max()) + 1
    pairs, counts = np.unique(user * n_cat + cat, return_counts=True)
    owner = pairs // n_cat
    per_user = np.bincount(owner, weights=counts, minlength=n)
    share = counts / per_user[owner]
    hhi: NDArray[np.float64] = np.bincount(owner, weights=share * share, minlength=n)[:n].astype(np.float64)
    return hhi


def outcome_labels(
    batch: EventBatch,
    outcome: Outcome,
    cutoff: int | str | datetime,
    horizon: str | float,
    *,
    future: EventBatch | None = None,
    n_profiles: int | None = None,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """``(eligible, label)`` per profile for ``outcome`` in ``(T, T + H]``.

    Eligible profiles have an event at or before ``T``; repurchase also needs an order before
    ``T``, uninstall an installed app at ``T``. Labels read events in the window from ``batch``
    and, if given, ``future`` (horizon events with the same interners).

    Examples
    --------
    >>> from affinity_sdk.capture.events import OrderCompleted, PageViewed
    >>> day = 86_400_000
    >>> events = [PageViewed(user_id="a", timestamp=0), PageViewed(user_id="b", timestamp=0),
    ...           OrderCompleted(user_id="a", timestamp=3 * day, order_id="1", products=[], revenue=9.0)]
    >>> eligible, y = outcome_labels(EventBatch.from_events(events), "purchase", day, "7d")
    >>> eligible.tolist(), y.tolist()
    ([True, True], [True, False])
    """
    if outcome not in OUTCOMES:
        raise ConfigError(f"unknown outcome {outcome!r}; choose one of {', '.join(OUTCOMES)}")
    cutoff_ms = _to_ms(cutoff)
    horizon_ms = round(parse_duration(horizon) * 1000)
    if horizon_ms <= 0:
        raise ConfigError(f"horizon must be positive (got {horizon!r})")
    n = len(batch.interners.users) if n_profiles is None else n_profiles
    parts = [batch] if future is None else [batch, future]
    user = np.concatenate([b.user for b in parts])
    etype = np.concatenate([b.event_type for b in parts]).astype(np.int64)
    ts = np.concatenate([b.ts_ms for b in parts])
    before = ts <= cutoff_ms
    window = (ts > cutoff_ms) & (ts <= cutoff_ms + horizon_ms)

    def any_of(mask: NDArray[np.bool_], *names: str) -> NDArray[np.bool_]:
        hit = mask & np.isin(etype, [EVENT_TYPE_CODES[x] for x in names]) if names else mask
        return np.bincount(user[hit], minlength=n)[:n] > 0

    active_before = any_of(before)
    if outcome == "purchase":
        return active_before, any_of(window, "order_completed")
    if outcome == "repurchase":
        return any_of(before, "order_completed"), any_of(window, "order_completed")
    if outcome == "churn":
        return active_before, ~any_of(window)
    if outcome == "unsubscribe":
        return active_before, any_of(window, "unsubscribed")
    installed = _app_installed(user[before], etype[before], ts[before], n) > 0
    return installed, any_of(window, "app_uninstalled")


@dataclass(frozen=True)
class TrainingSet:
    """Stacked (features at T, outcome in (T, T + H]) rows over one or more cutoffs."""

    X: NDArray[np.float64]
    y: NDArray[np.bool_]
    user: NDArray[np.int64]
    cutoff_ms: NDArray[np.int64]
    feature_names: tuple[str, ...]
    outcome: Outcome
    horizon_ms: int
    spec: FeatureSpec

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def window_ms(self) -> tuple[int, int]:
        """First event time that can feed a feature is unbounded; this is (first cutoff, last label time)."""
        return int(self.cutoff_ms.min()), int(self.cutoff_ms.max()) + self.horizon_ms

    def concat(self, other: TrainingSet) -> TrainingSet:
        """Rows of both sets (same outcome, horizon and features)."""
        if (other.feature_names, other.outcome, other.horizon_ms) != (
            self.feature_names,
            self.outcome,
            self.horizon_ms,
        ):
            raise ConfigError("cannot stack training sets with different features, outcome or horizon")
        return replace(
            self,
            X=np.concatenate([self.X, other.X]),
            y=np.concatenate([self.y, other.y]),
            user=np.concatenate([self.user, other.user]),
            cutoff_ms=np.concatenate([self.cutoff_ms, other.cutoff_ms]),
        )


def build_training_set(
    batch: EventBatch,
    outcome: Outcome,
    cutoffs: Sequence[int | str | datetime],
    horizon: str | float,
    *,
    future: EventBatch | None = None,
    spec: FeatureSpec | None = None,
    backend: str | None = "auto",
) -> TrainingSet:
    """Features at each cutoff ``T`` and the outcome in ``(T, T + H]``, eligible profiles only,
    stacked over ``cutoffs``. Features never see events after their cutoff.

    Examples
    --------
    >>> from affinity_sdk.sim.datasets import simulate_shop
    >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
    >>> ts = build_training_set(sim.batch, "churn", [sim.end_ms - 14 * 86_400_000], "1w")
    >>> ts.X.shape[1] == len(ts.feature_names) and len(ts) <= 300
    True
    """
    spec = spec or FeatureSpec()
    if not cutoffs:
        raise ConfigError("give at least one cutoff")
    horizon_ms = round(parse_duration(horizon) * 1000)
    n = len(batch.interners.users)
    blocks: list[tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.int64], int]] = []
    for cutoff in cutoffs:
        feats = profile_features(batch, cutoff, spec=spec, n_profiles=n, backend=backend)
        eligible, label = outcome_labels(batch, outcome, cutoff, horizon, future=future, n_profiles=n)
        rows = np.flatnonzero(eligible & feats.seen)
        blocks.append((feats.X[rows], label[rows], rows.astype(np.int64), feats.cutoff_ms))
    return TrainingSet(
        X=np.concatenate([b[0] for b in blocks]),
        y=np.concatenate([b[1] for b in blocks]),
        user=np.concatenate([b[2] for b in blocks]),
        cutoff_ms=np.concatenate([np.full(b[0].shape[0], b[3], dtype=np.int64) for b in blocks]),
        feature_names=feature_names(spec),
        outcome=outcome,
        horizon_ms=horizon_ms,
        spec=spec,
    )


# --- the model ------------------------------------------------------------------------------


@numba.njit(cache=True, parallel=True, nogil=True, fastmath={"contract", "reassoc"})
def _score_kernel(
    X: NDArray[np.float64],
    weight: NDArray[np.float64],
    bias: float,
    platt_a: float,
    platt_b: float,
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    r"""``out_i = σ(A (b + Σ_j w_j x_ij) + B)``: standardisation folded into ``w, b``; Platt's
    ``A, B`` (1, 0 for none) folded into the same pass."""
    n, f = X.shape
    for i in numba.prange(n):
        z = bias
        for j in range(f):
            z += weight[j] * X[i, j]
        z = platt_a * z + platt_b
        if z >= 0:
            out[i] = 1.0 / (1.0 + math.exp(-z))
        else:
            e = math.exp(z)
            out[i] = e / (1.0 + e)


def _fit_logistic(
    Z: NDArray[np.float64], y: NDArray[np.float64], l2: float, start: NDArray[np.float64]
) -> NDArray[np.float64]:
    """L2-penalised logistic regression on standardised ``Z``; returns ``[intercept, coefs...]``."""
    n = Z.shape[0]

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        z = theta[0] + Z @ theta[1:]
        # log(1 + e^z) - y z, stable for large |z|
        loss = float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * float(theta[1:] @ theta[1:])
        resid = expit(z) - y
        grad = np.empty_like(theta)
        grad[0] = resid.sum()
        grad[1:] = Z.T @ resid + l2 * theta[1:]
        return loss / n, grad / n

    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 500, "gtol": 1e-7})
    if not np.all(np.isfinite(result.x)):
        raise AffinityError(f"logistic fit failed: {result.message}")
    theta: NDArray[np.float64] = result.x
    return theta


class Calibrator(msgspec.Struct, frozen=True, kw_only=True):
    """A monotone map from raw model probability to calibrated probability.

    ``platt``: ``σ(a · logit(p) + b)``; ``isotonic``: a step function through ``(x, y)``
    interpolated linearly; ``none``: identity.
    """

    kind: Literal["none", "platt", "isotonic"] = "none"
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.kind == "isotonic":
            out: NDArray[np.float64] = np.interp(raw, np.asarray(self.x), np.asarray(self.y))
            return out
        if self.kind == "platt":
            result: NDArray[np.float64] = expit(self.a * _logit(raw) + self.b)
            return result
        return raw


def _logit(p: NDArray[np.float64]) -> NDArray[np.float64]:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    result: NDArray[np.float64] = np.log(q) - np.log1p(-q)
    return result


def _fit_platt(raw: NDArray[np.float64], y: NDArray[np.float64]) -> Calibrator:
    theta = _fit_logistic(_logit(raw)[:, None], y, 0.0, np.array([0.0, 1.0]))
    return Calibrator(kind="platt", a=float(theta[1]), b=float(theta[0]))


def _fit_isotonic(raw: NDArray[np.float64], y: NDArray[np.float64]) -> Calibrator:
    values, inverse, counts = np.unique(raw, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    fitted = np.asarray(isotonic_regression(means, weights=counts.astype(np.float64), increasing=True).x)
    # Keep only the ends of each constant block: the same interpolant with far fewer knots.
    change = np.r_[True, fitted[1:] != fitted[:-1]]
    knots = change | np.r_[change[1:], True]
    return Calibrator(kind="isotonic", x=tuple(values[knots].tolist()), y=tuple(fitted[knots].tolist()))


def _choose_calibrator(
    raw: NDArray[np.float64], y: NDArray[np.float64], method: str, rng: np.random.Generator
) -> Calibrator:
    """Fit the requested calibrator; ``auto`` picks Platt or isotonic by 2-fold held-out Brier."""
    if method == "none" or y.min() == y.max():
        return Calibrator()
    fitters = {"platt": _fit_platt, "isotonic": _fit_isotonic}
    if method in fitters:
        return fitters[method](raw, y)
    fold = rng.permutation(raw.shape[0]) % 2 == 0
    brier = {}
    for name, fitter in fitters.items():
        err = 0.0
        for train in (fold, ~fold):
            test = ~train
            if y[train].min() == y[train].max():
                err = math.inf
                break
            err += float(np.sum((fitter(raw[train], y[train]).apply(raw[test]) - y[test]) ** 2))
        brier[name] = err
    best = min(brier, key=lambda k: brier[k])
    return fitters[best](raw, y)


class _TierLike(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def high(self) -> float: ...
    @property
    def medium(self) -> float: ...


class TierSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """High / Medium / Low from a probability: ``threshold`` cut-offs on the probability, or
    ``quantile`` cut-offs (0.9 = top 10 % High). :class:`~affinity_sdk.config.TierConfig`-shaped,
    so a scoring config's tier section can be passed instead (``absolute`` = ``threshold``)."""

    method: Literal["quantile", "threshold", "absolute"] = "quantile"
    high: float = 0.9
    medium: float = 0.6


TIER_NAMES: Final = ("Low", "Medium", "High")


class PropensityModel:
    """A fitted, calibrated logistic propensity model for one outcome.

    Fitted attributes end in ``_``: ``mean_`` / ``scale_`` (standardisation), ``coef_``
    (per standardised feature), ``intercept_``, ``calibrator_``. Metadata: ``outcome``,
    ``feature_names``, ``spec``, ``horizon_ms``, ``training_window_ms``, ``config_fingerprint``,
    ``version`` (1 on fit, +1 on every :meth:`refit`), ``n_train``, ``l2``.
    """

    def __init__(
        self,
        *,
        outcome: Outcome,
        feature_names: tuple[str, ...],
        spec: FeatureSpec,
        horizon_ms: int,
        mean: NDArray[np.float64],
        scale: NDArray[np.float64],
        coef: NDArray[np.float64],
        intercept: float,
        calibrator: Calibrator,
        l2: float,
        training_window_ms: tuple[int, int],
        n_train: int,
        config_fingerprint: str | None = None,
        version: int = 1,
    ) -> None:
        self.outcome: Outcome = outcome
        self.feature_names = tuple(feature_names)
        self.spec = spec
        self.horizon_ms = int(horizon_ms)
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.scale_ = np.asarray(scale, dtype=np.float64)
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = float(intercept)
        self.calibrator_ = calibrator
        self.l2 = float(l2)
        self.training_window_ms = (int(training_window_ms[0]), int(training_window_ms[1]))
        self.n_train = int(n_train)
        self.config_fingerprint = config_fingerprint
        self.version = int(version)

    def __repr__(self) -> str:
        return (
            f"PropensityModel(outcome={self.outcome!r}, features={len(self.feature_names)}, "
            f"calibration={self.calibrator_.kind!r}, version={self.version}, n_train={self.n_train})"
        )

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        data: TrainingSet,
        *,
        l2: float = 1.0,
        calibration: Literal["auto", "platt", "isotonic", "none"] = "auto",
        calibration_fraction: float = 0.25,
        config_fingerprint: str | None = None,
        seed: int = 0,
    ) -> PropensityModel:
        """Fit on ``data``: logistic regression on ``1 - calibration_fraction`` of the profiles,
        calibration on the rest (split by profile, so one profile's cutoffs stay together).

        Examples
        --------
        >>> import numpy as np
        >>> from affinity_sdk.sim.datasets import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> model = PropensityModel.fit(data, config_fingerprint="cfg-1")
        >>> model.version, model.config_fingerprint, len(model.explain()) == len(data.feature_names)
        (1, 'cfg-1', True)
        """
        model = cls._blank(data, l2, config_fingerprint)
        return model._fit_rows(data, None, calibration, calibration_fraction, seed)

    @classmethod
    def _blank(cls, data: TrainingSet, l2: float, fingerprint: str | None) -> PropensityModel:
        f = len(data.feature_names)
        return cls(
            outcome=data.outcome,
            feature_names=data.feature_names,
            spec=data.spec,
            horizon_ms=data.horizon_ms,
            mean=np.zeros(f),
            scale=np.ones(f),
            coef=np.zeros(f),
            intercept=0.0,
            calibrator=Calibrator(),
            l2=l2,
            training_window_ms=data.window_ms,
            n_train=0,
            config_fingerprint=fingerprint,
            version=0,
        )

    def _fit_rows(
        self,
        data: TrainingSet,
        start: NDArray[np.float64] | None,
        calibration: str,
        calibration_fraction: float,
        seed: int,
    ) -> PropensityModel:
        if len(data) == 0:
            raise AffinityError("the training set is empty (no eligible profiles at the cutoffs)")
        if not 0.0 <= calibration_fraction < 1.0:
            raise ConfigError(f"calibration_fraction must be in [0, 1) (got {calibration_fraction})")
        if calibration not in ("auto", "platt", "isotonic", "none"):
            raise ConfigError(f"unknown calibration {calibration!r}")
        rng = np.random.default_rng(seed)
        # Split by profile so a profile's rows at several cutoffs do not straddle fit / calibration.
        users = np.unique(data.user)
        held = rng.random(users.shape[0]) < calibration_fraction
        in_cal = np.isin(data.user, users[held]) if calibration != "none" else np.zeros(len(data), bool)
        fit_rows = ~in_cal
        X, y = data.X[fit_rows], data.y[fit_rows].astype(np.float64)
        if y.shape[0] == 0 or y.min() == y.max():
            raise AffinityError(
                f"the training set needs both outcomes (positives: {int(y.sum())} of {len(y)})"
            )
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 1e-12] = 1.0  # a constant column carries no information; keep it inert
        if start is None:
            start = np.zeros(X.shape[1] + 1)
            rate = y.mean()
            start[0] = math.log(rate / (1.0 - rate))
        theta = _fit_logistic((X - mean) / scale, y, self.l2, start)
        self.mean_, self.scale_, self.intercept_, self.coef_ = mean, scale, float(theta[0]), theta[1:].copy()
        self.calibrator_ = Calibrator()
        if in_cal.any():
            raw = self.predict_proba(data.X[in_cal])
            self.calibrator_ = _choose_calibrator(raw, data.y[in_cal].astype(np.float64), calibration, rng)
        self.n_train = int(fit_rows.sum())
        self.version += 1
        return self

    def refit(
        self,
        data: TrainingSet,
        *,
        calibration: Literal["auto", "platt", "isotonic", "none"] = "auto",
        calibration_fraction: float = 0.25,
        seed: int = 0,
    ) -> PropensityModel:
        """Update on newer cutoffs (e.g. campaign outcomes), warm-started from the current
        coefficients; the training window grows and ``version`` goes up. Returns ``self``.

        Examples
        --------
        >>> from affinity_sdk.sim.datasets import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> day = 86_400_000
        >>> old = build_training_set(sim.batch, "purchase", [sim.end_ms - 14 * day], "1w")
        >>> new = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * day], "1w")
        >>> model = PropensityModel.fit(old).refit(new)
        >>> model.version, model.training_window_ms[1] == sim.end_ms
        (2, True)
        """
        if (data.feature_names, data.outcome, data.horizon_ms) != (
            self.feature_names,
            self.outcome,
            self.horizon_ms,
        ):
            raise ConfigError("refit needs the same features, outcome and horizon as the model")
        # Carry the old decision function into the new standardisation: z = b + Σ w (x - m) / s.
        new_mean = data.X.mean(axis=0)
        new_scale = data.X.std(axis=0)
        new_scale[new_scale < 1e-12] = 1.0
        raw_w = self.coef_ / self.scale_
        start = np.empty(len(self.feature_names) + 1)
        start[1:] = raw_w * new_scale
        start[0] = self.intercept_ + float(raw_w @ (new_mean - self.mean_))
        window = (
            min(self.training_window_ms[0], data.window_ms[0]),
            max(self.training_window_ms[1], data.window_ms[1]),
        )
        self._fit_rows(data, start, calibration, calibration_fraction, seed)
        self.training_window_ms = window
        return self

    # -- scoring ---------------------------------------------------------------------------
    def _folded(self) -> tuple[NDArray[np.float64], float]:
        weight = np.ascontiguousarray(self.coef_ / self.scale_)
        return weight, self.intercept_ - float(weight @ self.mean_)

    def predict_proba(self, X: ArrayLike, *, calibrated: bool = True) -> NDArray[np.float64]:
        """Probability of the outcome for each feature row (compiled, parallel).

        Examples
        --------
        >>> import numpy as np
        >>> from affinity_sdk.sim.datasets import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> model = PropensityModel.fit(data, calibration="platt")
        >>> p = model.predict_proba(data.X)
        >>> bool(np.all((0 < p) & (p < 1)))
        True
        """
        rows = np.ascontiguousarray(X, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected feature rows of shape (n, {len(self.feature_names)}), got {rows.shape}"
            )
        weight, bias = self._folded()
        cal = self.calibrator_ if calibrated else Calibrator()
        a, b = (cal.a, cal.b) if cal.kind == "platt" else (1.0, 0.0)
        out = np.empty(rows.shape[0])
        _score_kernel(rows, weight, bias, a, b, out)
        if cal.kind == "isotonic":
            out = cal.apply(out)
        return out

    def score_batch(
        self, batch: EventBatch, now: int | str | datetime, *, backend: str | None = "auto"
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """``(probability, seen)`` for every interned user from ``batch``'s events up to ``now``.

        Examples
        --------
        >>> from affinity_sdk.sim.datasets import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> p, seen = PropensityModel.fit(data).score_batch(sim.batch, sim.end_ms)
        >>> p.shape, seen.dtype
        ((300,), dtype('bool'))
        """
        feats = profile_features(batch, now, spec=self.spec, backend=backend)
        return self.predict_proba(feats.X), feats.seen

    def explain(self) -> dict[str, float]:
        """Coefficient per standardised feature (log-odds per standard deviation), largest
        magnitude first: the model's explanation.

        Examples
        --------
        >>> from affinity_sdk.sim.datasets import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> top = next(iter(PropensityModel.fit(data).explain()))
        >>> top in data.feature_names
        True
        """
        order = np.argsort(-np.abs(self.coef_), kind="stable")
        return {self.feature_names[i]: float(self.coef_[i]) for i in order}

    def tiers(
        self,
        p: NDArray[np.float64],
        spec: TierSpec | _TierLike | None = None,
        *,
        backend: str | None = "auto",
    ) -> NDArray[np.int8]:
        """Tier codes 0 / 1 / 2 (Low / Medium / High, names in :data:`TIER_NAMES`) for probabilities.

        Examples
        --------
        >>> import numpy as np
        >>> from affinity_sdk.sim.datasets import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> m = PropensityModel.fit(data)
        >>> m.tiers(np.array([0.9, 0.5, 0.1]), TierSpec(method="threshold", high=0.7, medium=0.3)).tolist()
        [2, 1, 0]
        """
        return assign_tiers(p, spec, backend=backend)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model atomically (checksummed, versioned container).

        Examples
        --------
        >>> import tempfile, os
        >>> from affinity_sdk.sim.datasets import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> model = PropensityModel.fit(data, config_fingerprint="abc")
        >>> path = os.path.join(tempfile.mkdtemp(), "purchase.model")
        >>> model.save(path)
        >>> again = PropensityModel.load(path)
        >>> again.config_fingerprint, bool((again.predict_proba(data.X) == model.predict_proba(data.X)).all())
        ('abc', True)
        """
        header: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "outcome": self.outcome,
            "feature_names": list(self.feature_names),
            "spec": msgspec.to_builtins(self.spec),
            "horizon_ms": self.horizon_ms,
            "intercept": self.intercept_,
            "calibrator": msgspec.to_builtins(self.calibrator_),
            "l2": self.l2,
            "training_window_ms": list(self.training_window_ms),
            "n_train": self.n_train,
            "config_fingerprint": self.config_fingerprint,
            "version": self.version,
        }
        write_container(
            path, MODEL_KIND, header, {"mean": self.mean_, "scale": self.scale_, "coef": self.coef_}
        )

    @classmethod
    def load(cls, path: str | Path, *, config_fingerprint: str | None = None) -> PropensityModel:
        """Read a model written by :meth:`save`. With ``config_fingerprint``, refuse a model
        trained under another scoring configuration (:class:`~affinity_sdk.errors.StateError`).
        """
        from affinity_sdk.errors import StateError

        header, arrays = read_container(path, MODEL_KIND)
        if header.get("format") != MODEL_FORMAT:
            raise StateError(
                f"{path}: propensity model format {header.get('format')!r}, expected {MODEL_FORMAT}"
            )
        try:
            spec = msgspec.convert(header["spec"], FeatureSpec)
            model = cls(
                outcome=header["outcome"],
                feature_names=tuple(header["feature_names"]),
                spec=spec,
                horizon_ms=header["horizon_ms"],
                mean=arrays["mean"],
                scale=arrays["scale"],
                coef=arrays["coef"],
                intercept=header["intercept"],
                calibrator=msgspec.convert(header["calibrator"], Calibrator),
                l2=header["l2"],
                training_window_ms=tuple(header["training_window_ms"]),
                n_train=header["n_train"],
                config_fingerprint=header["config_fingerprint"],
                version=header["version"],
            )
        except (KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
            raise StateError(f"{path}: malformed propensity model ({exc})") from exc
        n_features = (len(model.feature_names),)
        if model.feature_names != feature_names(spec) or any(
            a.shape != n_features for a in (model.coef_, model.mean_, model.scale_)
        ):
            raise StateError(f"{path}: the model's feature list does not match this SDK's features")
        if config_fingerprint is not None and model.config_fingerprint != config_fingerprint:
            raise StateError(
                f"{path}: model was trained under config {model.config_fingerprint!r}, "
                f"not {config_fingerprint!r}"
            )
        return model


def assign_tiers(
    p: NDArray[np.float64], spec: TierSpec | _TierLike | None = None, *, backend: str | None = "auto"
) -> NDArray[np.int8]:
    """Tier codes 0 / 1 / 2 (Low / Medium / High) from probabilities by threshold or quantile.

    Examples
    --------
    >>> import numpy as np
    >>> assign_tiers(np.arange(1, 11) / 10, TierSpec(method="quantile", high=0.8, medium=0.5)).tolist()
    [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
    """
    spec = spec or TierSpec()
    values = np.ascontiguousarray(p, dtype=np.float64)
    if not 0.0 <= spec.medium <= spec.high <= 1.0:
        raise ConfigError(f"tiers need 0 <= medium <= high <= 1 (got medium={spec.medium}, high={spec.high})")
    fractions = np.array([spec.medium, spec.high])
    if spec.method == "quantile":
        cuts = kernels.quantile_cutoffs(values, fractions, backend=backend)
    elif spec.method in ("threshold", "absolute"):
        cuts = fractions
    else:
        raise ConfigError(f"unknown tier method {spec.method!r}")
    return kernels.assign_tiers(values, np.ascontiguousarray(cuts), backend=backend)
