"""Propensity features: what :mod:`affinity_sdk.models.propensity` fits on.

Every feature is read from :class:`ProfileCounts`, a handful of exact, additive (or max-merged)
per-profile sums, so the same numbers come out whether the counts were built from a whole
:class:`~affinity_sdk.ingest.batch.EventBatch` at a cutoff (:func:`profile_features`) or kept
incrementally by the profile store's propensity view
(:class:`~affinity_sdk.profile.propensity_view.PropensityView`):

- per (profile, signal group, half-life) a forward-decay record
  (:class:`~affinity_sdk.profile.decay.DecayState`: decayed sum, count, undecayed total, first and
  last time) for the groups of :data:`GROUPS`;
- per (profile, channel) event counts; per profile refund and unsubscribe counts and the last app
  install-or-open and uninstall times;
- per (profile, category) product-line counts, as a sorted key table ``profile << 32 | category``
  (:mod:`~affinity_sdk.models.key_tables`);
- per (profile, UTC order day) order revenue, as a sorted key table
  ``profile << 32 | (day + DAY_BIAS)``: the order-day and BG/NBD features
  (:mod:`~affinity_sdk.models.order_day_features`).

The outcome labels are in :mod:`~affinity_sdk.models.training`. The public names are re-exported
by :mod:`affinity_sdk.models.propensity`.

Examples
--------
>>> from affinity_sdk.capture.events import OrderCompleted, PageViewed
>>> day = 86_400_000
>>> events = [PageViewed(user_id="a", timestamp=0),
...           OrderCompleted(user_id="a", timestamp=day, order_id="1", products=[], revenue=9.0)]
>>> f = profile_features(EventBatch.from_events(events), 3 * day)
>>> round(float(np.expm1(f.X[0, f.names.index("log_days_since_last_order")])), 9)  # days
2.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk._units import parse_duration, to_epoch_ms
from affinity_sdk.capture.events import CHANNELS, EVENT_TYPE_CODES, EVENT_TYPES
from affinity_sdk.errors import ConfigError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.models.key_tables import KEY_BITS, sum_by_key
from affinity_sdk.models.order_day_features import (
    _ORDER_DAY_FEATURES,
    DAY_BIAS,
    _bgnbd_features,
    _order_day_features,
    order_day_keys,
)
from affinity_sdk.profile.decay import DecayState

__all__ = [
    "GROUPS",
    "FeatureSpec",
    "Features",
    "ProfileCounts",
    "ProfileRow",
    "batch_counts",
    "decay_signals",
    "feature_names",
    "features_from_counts",
    "order_totals",
    "profile_features",
    "row_features",
    "signal_rows",
]

_DAY_MS: Final = 86_400_000.0
_NO_TIME: Final = int(np.iinfo(np.int64).min)
_ORDER: Final = EVENT_TYPE_CODES["order_completed"]

#: Signal groups: which event types feed each decayed signal. "revenue" sums order revenue.
GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "activity": tuple(EVENT_TYPE_CODES),  # every event, messages received too (labels: ACTIVITY_TYPES)
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
_GROUP_NAMES: Final = tuple(GROUPS)
#: Event type code x group: does the type feed the group?
_MEMBER: Final = np.zeros((len(EVENT_TYPES), len(_GROUP_NAMES)), dtype=np.bool_)
for _g, _name in enumerate(_GROUP_NAMES):
    _MEMBER[[EVENT_TYPE_CODES[t] for t in GROUPS[_name]], _g] = True
_REVENUE_GROUP: Final = np.array([name == "revenue" for name in _GROUP_NAMES], dtype=np.bool_)

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
    >>> names[:3], len(names) == 2 * 7 + 20
    (('activity_decay_7d', 'activity_decay_28d', 'browse_decay_7d'), True)
    """
    spec = spec or FeatureSpec()
    return spec.columns or _all_feature_names(spec)


def _all_feature_names(spec: FeatureSpec) -> tuple[str, ...]:
    """Every feature ``spec`` computes, before ``spec.columns`` selects."""
    decayed = tuple(f"{group}_decay_{h}" for group in GROUPS for h in spec.half_lives)
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


# --- the counts every feature reads -----------------------------------------------------------
@dataclass(frozen=True)
class ProfileCounts:
    """What the features of profiles ``0 .. n - 1`` read, from the events at or before a cutoff.

    ``decayed`` (n, groups x half-lives) holds the decayed signals at the cutoff and ``records``
    the same signals' :data:`~affinity_sdk.kernels.STATE_DTYPE` records (their counts, totals and
    first / last times are the same at every half-life). ``category_keys`` / ``day_keys`` are
    sorted, unique key tables (see the module docstring) with ``category_counts`` /
    ``day_revenue`` their values.
    """

    decayed: NDArray[np.float64]
    records: NDArray[np.void]
    channels: NDArray[np.int64]
    refunds: NDArray[np.int64]
    unsubscribes: NDArray[np.int64]
    last_use_ms: NDArray[np.int64]
    last_gone_ms: NDArray[np.int64]
    category_keys: NDArray[np.int64]
    category_counts: NDArray[np.int64]
    day_keys: NDArray[np.int64]
    day_revenue: NDArray[np.float64]

    @property
    def n(self) -> int:
        return int(self.decayed.shape[0])


def order_totals(counts: ProfileCounts) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
    """``(orders, revenue, last_order_ms)`` per profile from ``counts``: the number of
    ``order_completed`` events, their summed revenue and the time of the last one (the int64
    minimum without an order). What RFM scores read (:mod:`affinity_sdk.activate.rfm`).

    Examples
    --------
    >>> from affinity_sdk.capture.events import OrderCompleted
    >>> day = 86_400_000
    >>> events = [OrderCompleted(user_id="a", timestamp=t * day, order_id=str(t), products=[], revenue=4.0)
    ...           for t in (1, 3)]
    >>> counts = batch_counts(EventBatch.from_events(events), 9 * day, (1.0, 2.0), 1)
    >>> orders, revenue, last = order_totals(counts)
    >>> orders.tolist(), revenue.tolist(), (last // day).tolist()
    ([2], [8.0], [3])
    """
    n_h = counts.records.shape[1] // len(_GROUP_NAMES)
    orders = counts.records[:, _GROUP_NAMES.index("order") * n_h]
    revenue = counts.records[:, _GROUP_NAMES.index("revenue") * n_h]
    last = np.where(orders["count"] > 0, orders["last_ms"], _NO_TIME)
    return orders["count"].astype(np.int64), revenue["total"].astype(np.float64), last.astype(np.int64)


def signal_rows(
    user: NDArray[np.int64],
    etype: NDArray[np.int64],
    ts: NDArray[np.int64],
    revenue: NDArray[np.float64],
    n_half_lives: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """``(users, signals, ts_ms, values)`` rows for a :class:`DecayState` over the groups of
    :data:`GROUPS` x ``n_half_lives`` half-lives (signal ``group * n_half_lives + h``): one row per
    (event, group it feeds, half-life); value 1, or the order revenue for the ``revenue`` group."""
    ev_idx, grp = np.nonzero(_MEMBER[etype])
    values = np.where(_REVENUE_GROUP[grp], revenue[ev_idx], 1.0)
    signals = (grp[:, None] * n_half_lives + np.arange(n_half_lives)[None, :]).reshape(-1)
    return (
        np.repeat(user[ev_idx], n_half_lives).astype(np.int64, copy=False),
        signals.astype(np.int64, copy=False),
        np.repeat(ts[ev_idx], n_half_lives).astype(np.int64, copy=False),
        np.repeat(values, n_half_lives).astype(np.float64, copy=False),
    )


def decay_signals(half_lives_s: tuple[float, ...]) -> list[float]:
    """The half-life of every signal of :func:`signal_rows` (groups x half-lives)."""
    return [h for _ in _GROUP_NAMES for h in half_lives_s]


def batch_counts(
    batch: EventBatch,
    cutoff_ms: int,
    half_lives_s: tuple[float, ...],
    n: int,
    *,
    backend: str | None = "auto",
) -> ProfileCounts:
    """:class:`ProfileCounts` of profiles ``0 .. n - 1`` from ``batch``'s events at or before
    ``cutoff_ms`` (later events, and profiles ``>= n``, are not read)."""
    keep = (batch.ts_ms <= cutoff_ms) & (batch.user < n)
    user = batch.user[keep].astype(np.int64)
    etype = batch.event_type[keep].astype(np.int64)
    ts = batch.ts_ms[keep].astype(np.int64)
    revenue = np.nan_to_num(batch.revenue[keep])
    state = DecayState(decay_signals(half_lives_s), backend=backend)
    state.ensure_profiles(n)
    state.rebase(cutoff_ms)  # the landmark at the cutoff: every exponent is <= 0
    state.add(*signal_rows(user, etype, ts, revenue, len(half_lives_s)))
    n_channels = len(CHANNELS)
    channels = np.bincount(
        user * n_channels + batch.channel[keep].astype(np.int64), minlength=n * n_channels
    ).reshape(n, n_channels)
    last_use = np.full(n, _NO_TIME, dtype=np.int64)
    last_gone = np.full(n, _NO_TIME, dtype=np.int64)
    use, gone = _app_use(etype)
    np.maximum.at(last_use, user[use], ts[use])
    np.maximum.at(last_gone, user[gone], ts[gone])
    # Product lines of the kept events with a category.
    lines = keep[batch.item_event] & (batch.item_category >= 0)
    line_user = batch.user[batch.item_event[lines]].astype(np.int64)
    category_keys, category_counts = sum_by_key(
        (line_user << KEY_BITS) | batch.item_category[lines].astype(np.int64), np.ones(line_user.shape[0])
    )
    orders = etype == _ORDER
    day_keys, day_revenue = sum_by_key(order_day_keys(user[orders], ts[orders]), revenue[orders])
    return ProfileCounts(
        decayed=state.decayed(cutoff_ms)[:n],
        records=state.records[:n],
        channels=channels.astype(np.int64, copy=False),
        refunds=_count_of(user, etype, "order_refunded", n),
        unsubscribes=_count_of(user, etype, "unsubscribed", n),
        last_use_ms=last_use,
        last_gone_ms=last_gone,
        category_keys=category_keys,
        category_counts=np.rint(category_counts).astype(np.int64),
        day_keys=day_keys,
        day_revenue=day_revenue,
    )


def _count_of(user: NDArray[np.int64], etype: NDArray[np.int64], name: str, n: int) -> NDArray[np.int64]:
    return np.bincount(user[etype == EVENT_TYPE_CODES[name]], minlength=n)[:n].astype(np.int64)


def _app_use(etype: NDArray[np.int64]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Events that show the app installed (install or open) and uninstalls."""
    use = (etype == EVENT_TYPE_CODES["app_installed"]) | (etype == EVENT_TYPE_CODES["app_opened"])
    return use, etype == EVENT_TYPE_CODES["app_uninstalled"]


# --- features ------------------------------------------------------------------------------------
def profile_features(
    batch: EventBatch,
    cutoff: int | str | datetime,
    *,
    spec: FeatureSpec | None = None,
    n_profiles: int | None = None,
    backend: str | None = "auto",
    population: NDArray[np.bool_] | None = None,
) -> Features:
    """One feature row per profile from the events at or before ``cutoff`` (later ones ignored).

    Decayed signals enter as ``log1p``; recency and tenure in log-days; counts as ``log1p``.
    ``n_profiles`` defaults to the number of interned users. ``backend`` picks the decay kernels.
    ``population`` (a mask per profile, default all) limits whose orders the population-fitted
    BG/NBD model (``spec.bgnbd``) is fitted on and who gets its features: pass the consenting
    profiles (see :func:`~affinity_sdk.models.propensity.visible_users`).

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
    cutoff_ms = to_epoch_ms(cutoff)
    n = len(batch.interners.users) if n_profiles is None else n_profiles
    counts = batch_counts(batch, cutoff_ms, spec.half_lives_s, n, backend=backend)
    return features_from_counts(counts, cutoff_ms, spec, population=population)


def features_from_counts(
    counts: ProfileCounts,
    cutoff_ms: int,
    spec: FeatureSpec | None = None,
    *,
    population: NDArray[np.bool_] | None = None,
) -> Features:
    """The feature rows of :func:`profile_features` from ``counts`` (built from the events at or
    before ``cutoff_ms``; ``counts.decayed`` decayed to it)."""
    spec = spec or FeatureSpec()
    n = counts.n
    n_h = len(spec.half_lives)
    n_groups = len(_GROUP_NAMES)
    if counts.records.shape != (n, n_groups * n_h):
        raise ValueError(f"counts hold {counts.records.shape[1]} signals, the spec needs {n_groups * n_h}")
    if population is not None and population.shape != (n,):
        raise ValueError(f"population must be a mask of shape ({n},) (got {population.shape})")

    def column(group: str) -> NDArray[np.void]:
        # The counters (count, total, first / last seen) are the same at every half-life.
        return counts.records[:, _GROUP_NAMES.index(group) * n_h]

    activity, orders = column("activity"), column("order")
    seen = activity["count"] > 0
    ordered = orders["count"] > 0
    tenure_days = np.where(seen, (cutoff_ms - activity["first_ms"]) / _DAY_MS, 0.0)
    since_event = np.where(seen, (cutoff_ms - activity["last_ms"]) / _DAY_MS, 0.0)
    # Never ordered: as long ago as the whole tenure (the most pessimistic recency consistent with it).
    since_order = np.where(ordered, (cutoff_ms - orders["last_ms"]) / _DAY_MS, tenure_days)
    total_revenue = column("revenue")["total"]
    chan_counts = counts.channels
    n_events = np.maximum(activity["count"], 1)
    last_use, last_gone = counts.last_use_ms, counts.last_gone_ms

    scalars = {
        "log_days_since_last_event": np.log1p(since_event),
        "log_days_since_last_order": np.log1p(since_order),
        "never_ordered": (~ordered).astype(np.float64),
        "log_orders": np.log1p(orders["count"]),
        "log_events": np.log1p(activity["count"]),
        "log_revenue": np.log1p(np.maximum(total_revenue, 0.0)),
        "log_avg_order_value": np.log1p(np.maximum(total_revenue, 0.0) / np.maximum(orders["count"], 1)),
        "log_tenure_days": np.log1p(tenure_days),
        "log_refunds": np.log1p(counts.refunds.astype(np.float64)),
        "category_concentration": _category_concentration(counts.category_keys, counts.category_counts, n),
        "channels_used": (chan_counts > 0).sum(axis=1).astype(np.float64),
        **{f"channel_share_{name}": chan_counts[:, c] / n_events for c, name in enumerate(CHANNELS)},
        "unsubscribed": (counts.unsubscribes > 0).astype(np.float64),
        "app_installed": ((last_use > last_gone) & (last_use > _NO_TIME)).astype(np.float64),
    }
    if spec.bgnbd:
        scalars.update(_bgnbd_features(counts.day_keys, cutoff_ms, spec, n, population))
    if spec.order_days:
        scalars.update(_order_day_features(counts.day_keys, counts.day_revenue, cutoff_ms, spec, n))
    names = _all_feature_names(spec)
    X = np.empty((n, len(names)))
    X[:, : n_groups * n_h] = np.log1p(np.maximum(counts.decayed, 0.0))
    for j, name in enumerate(names[n_groups * n_h :]):
        X[:, n_groups * n_h + j] = scalars[name]
    if spec.columns:
        X = X[:, [names.index(c) for c in spec.columns]]
        names = spec.columns
    return Features(X=X, seen=seen, names=names, cutoff_ms=cutoff_ms)


def _app_installed(
    user: NDArray[np.int64], etype: NDArray[np.int64], ts: NDArray[np.int64], n: int
) -> NDArray[np.float64]:
    """1 where the last app install / open is later than the last uninstall."""
    last_use = np.full(n, _NO_TIME, dtype=np.int64)
    last_gone = np.full(n, _NO_TIME, dtype=np.int64)
    use, gone = _app_use(etype)
    np.maximum.at(last_use, user[use], ts[use])
    np.maximum.at(last_gone, user[gone], ts[gone])
    return ((last_use > last_gone) & (last_use > _NO_TIME)).astype(np.float64)


def _category_concentration(
    keys: NDArray[np.int64], counts: NDArray[np.int64], n: int
) -> NDArray[np.float64]:
    """Herfindahl index of each profile's product lines over categories (0 with no product lines),
    from the sorted (profile, category) key table and its line counts."""
    if keys.shape[0] == 0:
        return np.zeros(n)
    owner = keys >> KEY_BITS
    weights = counts.astype(np.float64)
    per_user = np.bincount(owner, weights=weights, minlength=n)
    share = weights / per_user[owner]
    hhi: NDArray[np.float64] = np.bincount(owner, weights=share * share, minlength=n)[:n].astype(np.float64)
    return hhi


# --- one profile, in plain floats (the live path) --------------------------------------------------
class ProfileRow(NamedTuple):
    """One profile's :class:`ProfileCounts` at a time ``now``, as plain Python numbers (what
    :meth:`~affinity_sdk.profile.propensity_view.PropensityView.row` reads for live scoring).

    ``records`` holds each signal's ``total, count, first_ms, last_ms`` in a row (four
    numbers per signal, signal by signal) and ``decayed`` its decayed value at ``now``;
    ``categories`` the product lines per category; ``days`` maps each order day (UTC day +
    :data:`~affinity_sdk.models.order_day_features.DAY_BIAS`) to its ``[revenue, orders]``
    (empty when the caller did not ask for the order days).
    """

    decayed: list[float]
    records: tuple[Any, ...]
    channels: list[int]
    refunds: int
    unsubscribes: int
    last_use_ms: int
    last_gone_ms: int
    categories: list[float]
    days: dict[int, list[float]]


_ACTIVITY_AT: Final = _GROUP_NAMES.index("activity")
_ORDER_AT: Final = _GROUP_NAMES.index("order")
_REVENUE_AT: Final = _GROUP_NAMES.index("revenue")


def row_features(row: ProfileRow, now_ms: int, spec: FeatureSpec) -> list[float]:
    """Every feature of ``spec`` before ``spec.columns`` selects (the order of
    ``_all_feature_names(spec)``) for one profile: the row :func:`features_from_counts` gives
    it, in plain floats (equal up to rounding). Raises :class:`ConfigError` for a spec with
    BG/NBD features, which are fitted on the whole population at ``now``.

    Examples
    --------
    >>> from affinity_sdk.capture.events import OrderCompleted
    >>> day = 86_400_000
    >>> batch = EventBatch.from_events(
    ...     [OrderCompleted(user_id="a", timestamp=day, order_id="1", products=[], revenue=9.0)])
    >>> counts = batch_counts(batch, 3 * day, FeatureSpec().half_lives_s, 1)
    >>> records = tuple(v for record in counts.records[0].tolist() for v in record)
    >>> row = ProfileRow(counts.decayed[0].tolist(), records, counts.channels[0].tolist(),
    ...                  0, 0, _NO_TIME, _NO_TIME, [], {})
    >>> bool(np.allclose(row_features(row, 3 * day, FeatureSpec()),
    ...                  features_from_counts(counts, 3 * day).X[0], rtol=0, atol=1e-12))
    True
    """
    if spec.bgnbd:
        raise ConfigError(
            "BG/NBD features are fitted on every profile at `now`: score such a model with "
            "PropensityModel.score_profiles"
        )
    n_h = len(spec.half_lives)
    records = row.records
    if len(records) != 4 * len(_GROUP_NAMES) * n_h:
        raise ValueError(
            f"the row holds {len(records) // 4} signals, the spec needs {len(_GROUP_NAMES) * n_h}"
        )
    log1p = math.log1p
    activity, orders = 4 * _ACTIVITY_AT * n_h, 4 * _ORDER_AT * n_h
    n_events, first_ms, last_ms = records[activity + 1 : activity + 4]
    n_orders, last_order_ms = records[orders + 1], records[orders + 3]
    revenue = max(records[4 * _REVENUE_AT * n_h], 0.0)
    seen = n_events > 0
    tenure_days = (now_ms - first_ms) / _DAY_MS if seen else 0.0
    since_event = (now_ms - last_ms) / _DAY_MS if seen else 0.0
    since_order = (now_ms - last_order_ms) / _DAY_MS if n_orders > 0 else tenure_days
    lines = sum(row.categories)
    concentration = sum([(c / lines) ** 2 for c in row.categories]) if lines > 0 else 0.0
    channels = row.channels
    per_event = max(n_events, 1)
    out = [log1p(d) if d > 0.0 else 0.0 for d in row.decayed]
    out += (
        log1p(since_event),
        log1p(since_order),
        0.0 if n_orders > 0 else 1.0,
        log1p(n_orders),
        log1p(n_events),
        log1p(revenue),
        log1p(revenue / max(n_orders, 1)),
        log1p(tenure_days),
        log1p(row.refunds),
        concentration,
        float(len(channels) - channels.count(0)),
    )
    out += [c / per_event for c in channels]
    out += (
        1.0 if row.unsubscribes > 0 else 0.0,
        1.0 if row.last_use_ms > row.last_gone_ms and row.last_use_ms > _NO_TIME else 0.0,
    )
    if spec.order_days:
        out += _row_order_day_features(row.days, now_ms, spec)
    return out


def _row_order_day_features(days: dict[int, list[float]], now_ms: int, spec: FeatureSpec) -> list[float]:
    """One profile's order-day features (see ``_order_day_features``), in plain floats."""
    log1p = math.log1p
    ages = [(now_ms - (day - DAY_BIAS) * 86_400_000) / _DAY_MS for day in days]
    power = spec.order_day_value_power
    weights = [max(r, 1.0) ** power if power != 0.0 else 1.0 for r, _ in days.values()]
    count = len(ages)
    since_first = max([0.0, *ages])
    since_last = min(ages) if count else 0.0
    mean_gap = (since_first - since_last) / max(count - 1, 1) if count >= 2 else since_first
    out = [
        log1p(sum(w * 0.5 ** (a / (h / 86_400.0)) for w, a in zip(weights, ages, strict=True)))
        for h in spec.half_lives_s
    ]
    out += (
        log1p(count),
        log1p(mean_gap),
        log1p(since_last / max(mean_gap, 1.0)) if count > 0 else 0.0,
        log1p(7.0 * count / (since_first + 1.0)),
    )
    return out
