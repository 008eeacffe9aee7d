"""Custom goals: propensity outcomes beyond the five built-in ones.

A goal says which profiles are eligible at a cutoff ``T`` and whether the goal was reached in
``(T, T + H]``. It goes wherever a built-in outcome name goes
(:func:`~affinity_sdk.models.training.outcome_labels`,
:func:`~affinity_sdk.models.training.build_training_set`), so a goal model gets the same
features (read from events at or before ``T`` only), fit, calibration, evaluation, tiers and live
scoring as the built-in ones. Three kinds, one tagged union (``kind``):

- :class:`EventGoal`: an event of ``event_type`` in the horizon, optionally only with a product
  line in ``category``, only ``discounted`` (an order discount, a coupon or a discounted product
  line) or not, only with revenue of at least ``min_revenue``;
- :class:`CartAbandonmentGoal`: a ``started`` event (default ``checkout_started``) with no order
  in the ``within`` hours after it; the abandonment counts in the horizon once those hours have
  passed inside it (a start at ``t`` counts when ``T < t`` and ``t + within <= T + H``);
- :class:`VipGoal`: order revenue summed over the horizon of at least ``min_revenue``.

``eligible`` is ``"active"`` (anything the person did at or before ``T``, like purchase and churn) or
``"buyers"`` (an order at or before ``T``, like repurchase). An event goal on ``order_completed``
with no filter is the built-in ``purchase`` outcome (``repurchase`` with ``eligible="buyers"``):
same labels, same model.

Goals are frozen msgspec Structs validated on construction (:class:`~affinity_sdk.errors.ConfigError`
naming the field); :func:`parse_goal` reads one from JSON or a dict, e.g. a config file.

Examples
--------
>>> from affinity_sdk.capture.events import CheckoutStarted, OrderCompleted, PageViewed
>>> hour, day = 3_600_000, 86_400_000
>>> events = [PageViewed(user_id="a", timestamp=0), PageViewed(user_id="b", timestamp=0),
...           CheckoutStarted(user_id="a", timestamp=day + hour),
...           CheckoutStarted(user_id="b", timestamp=day + hour),
...           OrderCompleted(user_id="b", timestamp=day + 2 * hour, order_id="1", products=[], revenue=9.0)]
>>> goal = CartAbandonmentGoal(name="abandoned_checkout", within="24h")
>>> eligible, y = goal_labels(EventBatch.from_events(events), goal, day, "7d")
>>> eligible.tolist(), y.tolist()
([True, True], [True, False])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk._units import parse_duration, to_epoch_ms
from affinity_sdk.capture.events import EVENT_TYPE_CODES, EVENT_TYPES, MAX_AMOUNT
from affinity_sdk.errors import ConfigError
from affinity_sdk.ingest.batch import IS_ACTIVITY, EventBatch

__all__ = [
    "AnyGoal",
    "CartAbandonmentGoal",
    "EventGoal",
    "Goal",
    "VipGoal",
    "goal_labels",
    "parse_goal",
]

_ORDER: Final = EVENT_TYPE_CODES["order_completed"]
#: Event types that carry product lines (a category filter needs them).
_WITH_PRODUCTS: Final = frozenset(
    {
        "product_viewed",
        "product_added",
        "product_removed",
        "product_added_to_wishlist",
        "product_list_viewed",
        "cart_viewed",
        "checkout_started",
        "order_completed",
        "order_refunded",
    }
)
#: Event types that carry a discount, a coupon or discounted product lines.
_WITH_DISCOUNT: Final = _WITH_PRODUCTS | {"coupon_applied"}
#: Event types that carry a revenue (order, refund, checkout, or price x quantity of one product).
_WITH_REVENUE: Final = frozenset(
    {
        "product_viewed",
        "product_added",
        "product_removed",
        "product_added_to_wishlist",
        "checkout_started",
        "order_completed",
        "order_refunded",
    }
)


class Goal(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    """What every goal has: a ``name`` (the model's outcome name) and who is ``eligible``."""

    name: str
    eligible: Literal["active", "buyers"] = "active"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 0 < len(self.name.strip()) <= 80:
            raise ConfigError(
                f"goal `name`: need a non-empty name of at most 80 characters (got {self.name!r})"
            )
        if self.eligible not in ("active", "buyers"):
            raise ConfigError(
                f"goal {self.name!r}: `eligible` must be 'active' or 'buyers' (got {self.eligible!r})"
            )

    def describe(self) -> str:
        """The goal in plain words, for reports."""
        raise NotImplementedError


class EventGoal(Goal, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="event"):
    """An ``event_type`` event in the horizon, optionally filtered.

    Examples
    --------
    >>> EventGoal(name="shoe_order", category="shoes").describe()
    "an order_completed with a product in category 'shoes' within the horizon"
    >>> EventGoal(name="x", event_type="page_viewed", category="shoes")
    Traceback (most recent call last):
    ...
    affinity_sdk.errors.ConfigError: goal 'x': `category` needs an event type with products, not 'page_viewed'
    """

    event_type: str = "order_completed"
    #: Only events with a product line in this category (by name).
    category: str | None = None
    #: True: only discounted events (discount > 0, a coupon or a discounted line); False: only full price.
    discounted: bool | None = None
    #: Only events whose revenue is at least this.
    min_revenue: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.event_type not in EVENT_TYPE_CODES:
            raise ConfigError(
                f"goal {self.name!r}: unknown `event_type` {self.event_type!r}; "
                f"choose one of {', '.join(EVENT_TYPES)}"
            )
        if self.category is not None and self.event_type not in _WITH_PRODUCTS:
            raise ConfigError(
                f"goal {self.name!r}: `category` needs an event type with products, not {self.event_type!r}"
            )
        if self.discounted is not None and self.event_type not in _WITH_DISCOUNT:
            raise ConfigError(
                f"goal {self.name!r}: `discounted` needs an event type with discounts, "
                f"not {self.event_type!r}"
            )
        if self.min_revenue is not None:
            if self.event_type not in _WITH_REVENUE:
                raise ConfigError(
                    f"goal {self.name!r}: `min_revenue` needs an event type with a revenue, "
                    f"not {self.event_type!r}"
                )
            _check_amount(self.name, "min_revenue", self.min_revenue)

    def describe(self) -> str:
        parts = [f"an {self.event_type}" if self.event_type[0] in "aeiou" else f"a {self.event_type}"]
        if self.category is not None:
            parts.append(f"with a product in category {self.category!r}")
        if self.discounted is not None:
            parts.append("with a discount or coupon" if self.discounted else "at full price")
        if self.min_revenue is not None:
            parts.append(f"of at least {self.min_revenue:g} revenue")
        return " ".join(parts) + " within the horizon"


class CartAbandonmentGoal(
    Goal, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="cart_abandonment"
):
    """A ``started`` event followed by no order within ``within``.

    Examples
    --------
    >>> CartAbandonmentGoal(name="abandon", started="product_added", within="12h").describe()
    'a product_added with no order in the next 12h, within the horizon'
    """

    started: str = "checkout_started"
    within: str = "24h"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.started not in EVENT_TYPE_CODES or self.started == "order_completed":
            raise ConfigError(
                f"goal {self.name!r}: `started` must be an event type other than order_completed "
                f"(got {self.started!r})"
            )
        try:
            seconds = parse_duration(self.within)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"goal {self.name!r}: `within`: {exc}") from exc
        if not 0 < seconds < math.inf:
            raise ConfigError(
                f"goal {self.name!r}: `within` must be a positive, finite duration (got {self.within!r})"
            )

    @property
    def within_ms(self) -> int:
        return round(parse_duration(self.within) * 1000)

    def describe(self) -> str:
        return f"a {self.started} with no order in the next {self.within}, within the horizon"


class VipGoal(Goal, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="vip"):
    """Order revenue over the horizon of at least ``min_revenue``.

    Examples
    --------
    >>> VipGoal(name="vip", min_revenue=500).describe()
    'order revenue of at least 500 within the horizon'
    >>> VipGoal(name="vip", min_revenue=-1)
    Traceback (most recent call last):
    ...
    affinity_sdk.errors.ConfigError: goal 'vip': `min_revenue` must be a finite amount in (0, 1e+12] (got -1)
    """

    min_revenue: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_amount(self.name, "min_revenue", self.min_revenue, positive=True)

    def describe(self) -> str:
        return f"order revenue of at least {self.min_revenue:g} within the horizon"


#: Any concrete goal: what :func:`parse_goal` decodes (tagged on ``kind``).
AnyGoal: TypeAlias = EventGoal | CartAbandonmentGoal | VipGoal


def _check_amount(goal: str, field: str, value: Any, *, positive: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0 < value if positive else 0 <= value) or value > MAX_AMOUNT:
        low = "(0" if positive else "[0"
        raise ConfigError(
            f"goal {goal!r}: `{field}` must be a finite amount in {low}, {MAX_AMOUNT:g}] (got {value!r})"
        )


def parse_goal(data: str | bytes | dict[str, Any]) -> AnyGoal:
    """A goal from JSON text or a dict (e.g. a TOML table), tagged by ``kind``:
    ``"event"``, ``"cart_abandonment"`` or ``"vip"``. Raises :class:`ConfigError` naming the field.

    Examples
    --------
    >>> parse_goal('{"kind": "vip", "name": "vip", "min_revenue": 250}')
    VipGoal(name='vip', eligible='active', min_revenue=250.0)
    >>> parse_goal({"kind": "event", "name": "x", "event_typ": "order_completed"})
    Traceback (most recent call last):
    ...
    affinity_sdk.errors.ConfigError: invalid goal: Object contains unknown field `event_typ`
    """
    try:
        goal: AnyGoal
        if isinstance(data, str | bytes):
            goal = msgspec.json.decode(data, type=AnyGoal)
        else:
            goal = msgspec.convert(data, AnyGoal)
        return goal
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"invalid goal: {exc}") from exc


def _window_ms(cutoff: int | str | datetime, horizon: str | float) -> tuple[int, int]:
    """``(cutoff_ms, horizon_ms)`` of a label window; raises :class:`ConfigError` for a horizon
    that is not positive."""
    cutoff_ms = to_epoch_ms(cutoff)
    horizon_ms = round(parse_duration(horizon) * 1000)
    if horizon_ms <= 0:
        raise ConfigError(f"horizon must be positive (got {horizon!r})")
    return cutoff_ms, horizon_ms


@dataclass(frozen=True)
class _Events:
    """The event and item columns a goal reads, ``batch`` and ``future`` stacked."""

    user: NDArray[np.int64]
    etype: NDArray[np.int64]
    ts: NDArray[np.int64]
    revenue: NDArray[np.float64]
    discount: NDArray[np.float64]
    has_coupon: NDArray[np.bool_]
    item_event: NDArray[np.int64]
    item_category: NDArray[np.int64]
    item_discount: NDArray[np.float64]

    @classmethod
    def stack(cls, parts: list[EventBatch]) -> _Events:
        offsets = np.cumsum([0, *(len(b) for b in parts[:-1])])
        return cls(
            user=np.concatenate([b.user for b in parts]).astype(np.int64, copy=False),
            etype=np.concatenate([b.event_type for b in parts]).astype(np.int64),
            ts=np.concatenate([b.ts_ms for b in parts]).astype(np.int64, copy=False),
            revenue=np.concatenate([b.revenue for b in parts]),
            discount=np.concatenate([b.discount for b in parts]),
            has_coupon=np.concatenate([b.has_coupon for b in parts]),
            item_event=np.concatenate(
                [b.item_event + o for b, o in zip(parts, offsets.tolist(), strict=True)]
            ),
            item_category=np.concatenate([b.item_category for b in parts]).astype(np.int64),
            item_discount=np.concatenate([b.item_discount for b in parts]),
        )

    def any_item(self, item_mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Per event: does it have a product line where ``item_mask`` holds?"""
        hit = np.zeros(self.user.shape[0], dtype=np.bool_)
        hit[self.item_event[item_mask]] = True
        return hit


def goal_labels(
    batch: EventBatch,
    goal: Goal,
    cutoff: int | str | datetime,
    horizon: str | float,
    *,
    future: EventBatch | None = None,
    n_profiles: int | None = None,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """``(eligible, label)`` per profile: eligible at ``T`` (see :class:`Goal`), and whether
    ``goal`` was reached in ``(T, T + H]``, reading ``batch`` and, if given, ``future``
    (later events with the same interners).

    Examples
    --------
    >>> from affinity_sdk.capture.events import OrderCompleted
    >>> day = 86_400_000
    >>> orders = (("a", 0, 5.0), ("a", 2, 300.0), ("b", 0, 5.0), ("b", 3, 80.0), ("b", 4, 90.0))
    >>> batch = EventBatch.from_events(
    ...     OrderCompleted(user_id=u, timestamp=t * day, order_id=f"{u}{t}", products=[], revenue=r)
    ...     for u, t, r in orders)
    >>> goal_labels(batch, VipGoal(name="vip", min_revenue=200), day, "7d")[1].tolist()
    [True, False]
    """
    if not isinstance(goal, EventGoal | CartAbandonmentGoal | VipGoal):
        raise ConfigError(f"expected an EventGoal, CartAbandonmentGoal or VipGoal, got {type(goal).__name__}")
    cutoff_ms, horizon_ms = _window_ms(cutoff, horizon)
    n = len(batch.interners.users) if n_profiles is None else n_profiles
    ev = _Events.stack([batch] if future is None else [batch, future])
    before = ev.ts <= cutoff_ms
    window = (ev.ts > cutoff_ms) & (ev.ts <= cutoff_ms + horizon_ms)
    eligible_rows = before & (ev.etype == _ORDER if goal.eligible == "buyers" else IS_ACTIVITY[ev.etype])
    eligible = _per_user(ev.user, eligible_rows, n)
    if isinstance(goal, EventGoal):
        return eligible, _per_user(ev.user, window & _event_match(ev, goal, batch), n)
    if isinstance(goal, VipGoal):
        orders = window & (ev.etype == _ORDER)
        spend = np.bincount(ev.user[orders], weights=np.nan_to_num(ev.revenue[orders]), minlength=n)[:n]
        return eligible, spend >= goal.min_revenue
    if goal.within_ms >= horizon_ms:
        raise ConfigError(
            f"goal {goal.name!r}: `within` ({goal.within}) must be shorter than the horizon ({horizon!r})"
        )
    return eligible, _per_user(ev.user, _abandoned(ev, goal, cutoff_ms, horizon_ms), n)


def _per_user(user: NDArray[np.int64], rows: NDArray[np.bool_], n: int) -> NDArray[np.bool_]:
    hit: NDArray[np.bool_] = np.bincount(user[rows], minlength=n)[:n] > 0
    return hit


def _event_match(ev: _Events, goal: EventGoal, batch: EventBatch) -> NDArray[np.bool_]:
    match: NDArray[np.bool_] = ev.etype == EVENT_TYPE_CODES[goal.event_type]
    if goal.category is not None:
        code = batch.interners.categories.lookup(goal.category)
        # A category nobody has touched matches nothing (no error: it may appear in later data).
        match &= ev.any_item(ev.item_category == code) if code is not None else False
    if goal.discounted is not None:
        discounted = (
            (np.nan_to_num(ev.discount) > 0)
            | ev.has_coupon
            | ev.any_item(np.nan_to_num(ev.item_discount) > 0)
        )
        match &= discounted if goal.discounted else ~discounted
    if goal.min_revenue is not None:
        match &= np.nan_to_num(ev.revenue, nan=-math.inf) >= goal.min_revenue
    return match


def _abandoned(ev: _Events, goal: CartAbandonmentGoal, cutoff_ms: int, horizon_ms: int) -> NDArray[np.bool_]:
    """Per event: a ``started`` event in the window whose ``within`` hours end inside it with no
    order by the same user at or after it within them."""
    within = goal.within_ms
    starts = (
        (ev.etype == EVENT_TYPE_CODES[goal.started])
        & (ev.ts > cutoff_ms)
        & (ev.ts + within <= cutoff_ms + horizon_ms)
    )
    orders = ev.etype == _ORDER
    rows = np.flatnonzero(starts | orders)
    # Sorted by user, then time, starts before orders at the same time (an order at the very
    # moment of the start completes it): each start's next order row is its user's first order
    # at or after it, if the next one belongs to the same user.
    order = np.lexsort((orders[rows], ev.ts[rows], ev.user[rows]))
    rows = rows[order]
    is_order = orders[rows]
    order_pos = np.flatnonzero(is_order)
    start_pos = np.flatnonzero(~is_order)
    nxt = np.searchsorted(order_pos, start_pos)
    has_next = nxt < order_pos.shape[0]
    target = (
        rows[order_pos[np.minimum(nxt, max(order_pos.shape[0] - 1, 0))]]
        if order_pos.shape[0]
        else rows[start_pos]
    )
    start_rows = rows[start_pos]
    completed = (
        has_next & (ev.user[target] == ev.user[start_rows]) & (ev.ts[target] <= ev.ts[start_rows] + within)
    )
    out: NDArray[np.bool_] = np.zeros(ev.user.shape[0], dtype=np.bool_)
    out[start_rows[~completed]] = True
    return out
