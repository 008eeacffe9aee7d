"""RFM: recency, frequency and monetary scores 1-5 and the named customer segments.

At a cutoff ``T``, every customer with at least one order at or before ``T`` gets

- ``recency_days``: whole days from their last order to ``T`` (``(T - last) // 1 day``);
- ``orders``: the number of orders (``order_completed`` events, or order-log rows);
- ``revenue``: the summed order revenue (missing revenue counts 0);

and a 1-5 score for each, by quintile over those customers (5 = best: most recent, most orders,
most revenue). **Ties**: a customer's score is set by the share of customers strictly worse than
them, ``score = 1 + floor(5 * worse / n)``; equal values therefore get equal scores, the worst
value always scores 1, and with no ties each score holds a fifth of the customers. With many
ties (most customers have one order) a score may be skipped: one-order customers all score
F = 1, and two-order customers score by how many are below them.

The named segments read R and FM, the mean of F and M rounded half up (``(F + M + 1) // 2``), on
the usual 5 x 5 grid (R rows, FM columns), so every customer lands in exactly one:

======  ==============  ==============  ==============  ===============  ===============
R \\ FM  1               2               3               4                5
======  ==============  ==============  ==============  ===============  ===============
5       New             Pot. loyalist   Pot. loyalist   Champions        Champions
4       Promising       Pot. loyalist   Pot. loyalist   Loyal            Loyal
3       About to sleep  About to sleep  Need attention  Loyal            Loyal
2       Hibernating     Hibernating     At risk         At risk          Can't lose them
1       Lost            Hibernating     At risk         At risk          Can't lose them
======  ==============  ==============  ==============  ===============  ===============

:func:`rfm_segments` gives them as ready-made :class:`~affinity_sdk.activate.segments.Segment`
rules over :meth:`RFMTable.frame`, so they are evaluated, exported and diffed like any other
segment. Sources: an order log (:func:`rfm_from_orders`), an event batch
(:func:`rfm_from_batch`) or a profile store with the ``"propensity"`` view
(:func:`rfm_from_store`). Opted-out and forgotten customers never appear.

Examples
--------
>>> day = 86_400_000
>>> table = rfm_from_orders(["a", "a", "b", "c"], [0, 9 * day, 2 * day, 8 * day], [10.0, 30.0, 5.0, 50.0],
...                         cutoff=10 * day)
>>> table.customer_id.tolist(), table.r.tolist(), table.f.tolist(), table.m.tolist()
(['a', 'b', 'c'], [4, 1, 2], [4, 1, 1], [2, 1, 4])
>>> table.fm.tolist(), table.segment.tolist()
([3, 1, 3], ['potential_loyalist', 'lost', 'at_risk'])
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from affinity_sdk._units import to_epoch_ms
from affinity_sdk.activate.segments import Rule, Segment, col, evaluate_segments
from affinity_sdk.capture.events import EVENT_TYPE_CODES
from affinity_sdk.errors import ConfigError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.score.results import write_columns

if TYPE_CHECKING:
    from affinity_sdk.models.visibility import Visibility
    from affinity_sdk.profile.store import ProfileStore
    from affinity_sdk.score.scorer import Scorer

__all__ = [
    "RFM_SEGMENTS",
    "RFMSegment",
    "RFMTable",
    "quintile_scores",
    "rfm_from_batch",
    "rfm_from_orders",
    "rfm_from_store",
    "rfm_segments",
]

_DAY_MS: Final = 86_400_000


@dataclass(frozen=True)
class RFMSegment:
    """One named RFM segment: the cells of the R x FM grid it covers, as inclusive
    ``(r_low, r_high, fm_low, fm_high)`` rectangles, and what it means and what to do."""

    name: str
    label: str
    cells: tuple[tuple[int, int, int, int], ...]
    description: str
    action: str

    def rule(self) -> Rule:
        """The segment's rule over an :meth:`RFMTable.frame`."""
        rules = [
            col("r_score").isin(range(r0, r1 + 1)) & col("fm_score").isin(range(f0, f1 + 1))
            for r0, r1, f0, f1 in self.cells
        ]
        out = rules[0]
        for more in rules[1:]:
            out = out | more
        return out


#: The named segments, best first.
RFM_SEGMENTS: Final[tuple[RFMSegment, ...]] = (
    RFMSegment(
        "champions",
        "Champions",
        ((5, 5, 4, 5),),
        "Bought recently, buy often and spend the most.",
        "Reward them: early access, reviews and referrals; no discounts needed.",
    ),
    RFMSegment(
        "loyal",
        "Loyal",
        ((3, 4, 4, 5),),
        "Buy often and spend well, a little less recently than champions.",
        "Upsell higher-value products and invite them to the loyalty programme.",
    ),
    RFMSegment(
        "potential_loyalist",
        "Potential loyalist",
        ((4, 5, 2, 3),),
        "Recent customers with average frequency and spend.",
        "Offer membership or loyalty perks and recommend related products.",
    ),
    RFMSegment(
        "new",
        "New",
        ((5, 5, 1, 1),),
        "Bought very recently, but only once or for little.",
        "Onboard them well: welcome series, support, a reason for a second order.",
    ),
    RFMSegment(
        "promising",
        "Promising",
        ((4, 4, 1, 1),),
        "Fairly recent shoppers who have not bought much yet.",
        "Build awareness: bestsellers, samples, a small first-repeat incentive.",
    ),
    RFMSegment(
        "need_attention",
        "Need attention",
        ((3, 3, 3, 3),),
        "Average recency, frequency and spend.",
        "Send a limited-time offer and recommendations from their past orders.",
    ),
    RFMSegment(
        "about_to_sleep",
        "About to sleep",
        ((3, 3, 1, 2),),
        "Below-average recency, few orders, low spend.",
        "Reconnect with popular products and a discount before they lapse.",
    ),
    RFMSegment(
        "at_risk",
        "At risk",
        ((1, 2, 3, 4),),
        "Used to buy often and spend well, but not for a long time.",
        "Win them back with personalised emails and relevant offers.",
    ),
    RFMSegment(
        "cant_lose_them",
        "Can't lose them",
        ((1, 2, 5, 5),),
        "Among the biggest and most frequent buyers, but long ago.",
        "Reach out personally with a strong offer or what is new; ask what went wrong.",
    ),
    RFMSegment(
        "hibernating",
        "Hibernating",
        ((2, 2, 1, 2), (1, 1, 2, 2)),
        "Last order long ago, few orders, low spend.",
        "Offer relevant products and special discounts; keep contact light.",
    ),
    RFMSegment(
        "lost",
        "Lost",
        ((1, 1, 1, 1),),
        "Lowest recency, frequency and spend.",
        "Try one reactivation campaign, then stop spending on them.",
    ),
)


def _segment_grid() -> NDArray[np.int8]:
    """Index in :data:`RFM_SEGMENTS` per (R, FM), both 1-5 (row / column 0 unused)."""
    grid = np.full((6, 6), -1, dtype=np.int8)
    for i, seg in enumerate(RFM_SEGMENTS):
        for r0, r1, f0, f1 in seg.cells:
            grid[r0 : r1 + 1, f0 : f1 + 1] = i
    return grid


_GRID: Final = _segment_grid()


def rfm_segments() -> list[Segment]:
    """The named RFM segments as :class:`~affinity_sdk.activate.segments.Segment` rules over
    :meth:`RFMTable.frame` (columns ``r_score`` and ``fm_score``); the description says what
    they are and what to do.

    Examples
    --------
    >>> from affinity_sdk.activate.segments import evaluate_segments
    >>> frame = {"user_id": np.array(["a", "b"]), "r_score": np.array([5, 1]), "fm_score": np.array([5, 1])}
    >>> {k: v.tolist() for k, v in evaluate_segments(rfm_segments(), frame).items() if v.any()}
    {'champions': [True, False], 'lost': [False, True]}
    """
    return [Segment(s.name, s.rule(), f"{s.description} {s.action}") for s in RFM_SEGMENTS]


def quintile_scores(values: ArrayLike, *, higher_is_better: bool = True) -> NDArray[np.int8]:
    """Scores 1-5 by quintile: ``1 + floor(5 * worse / n)``, ``worse`` the number of values
    strictly worse than this one. Equal values get equal scores; the worst value scores 1.

    Examples
    --------
    >>> quintile_scores([10, 20, 30, 40, 50]).tolist(), quintile_scores([1, 1, 1, 2, 3]).tolist()
    ([1, 2, 3, 4, 5], [1, 1, 1, 4, 5])
    >>> quintile_scores([0, 3, 30], higher_is_better=False).tolist()
    [4, 2, 1]
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    ordered = np.sort(x)
    if higher_is_better:
        worse = np.searchsorted(ordered, x, side="left")
    else:
        worse = n - np.searchsorted(ordered, x, side="right")
    scores: NDArray[np.int8] = (1 + (5 * worse.astype(np.int64)) // n).astype(np.int8)
    return scores


@dataclass(frozen=True)
class RFMTable:
    """RFM per customer with an order at or before ``cutoff_ms``, sorted by ``customer_id``."""

    customer_id: NDArray[Any]
    recency_days: NDArray[np.int64]
    orders: NDArray[np.int64]
    revenue: NDArray[np.float64]
    r: NDArray[np.int8]
    f: NDArray[np.int8]
    m: NDArray[np.int8]
    fm: NDArray[np.int8]
    segment: NDArray[Any]
    cutoff_ms: int

    def __len__(self) -> int:
        return int(self.customer_id.shape[0])

    def frame(self) -> dict[str, NDArray[Any]]:
        """A segment frame (``user_id``, ``r_score``, ``f_score``, ``m_score``, ``fm_score``,
        ``recency_days``, ``orders``, ``revenue``) for :func:`rfm_segments` or any other rule."""
        return {
            "user_id": self.customer_id,
            "r_score": self.r,
            "f_score": self.f,
            "m_score": self.m,
            "fm_score": self.fm,
            "recency_days": self.recency_days,
            "orders": self.orders,
            "revenue": self.revenue,
        }

    def segment_counts(self) -> dict[str, int]:
        """Customers per named segment, in :data:`RFM_SEGMENTS` order (empty segments included)."""
        return {s.name: int(np.count_nonzero(self.segment == s.name)) for s in RFM_SEGMENTS}

    def members(self) -> dict[str, list[str]]:
        """Member ids per named segment, for :func:`~affinity_sdk.activate.segments.export_segments`
        and :func:`~affinity_sdk.activate.segments.diff_segments`."""
        masks = evaluate_segments(rfm_segments(), self.frame())
        return {name: self.customer_id[mask].tolist() for name, mask in masks.items()}

    def save(self, path: str | Path) -> Path:
        """Write one row per customer (CSV, JSON lines or Parquet by extension), atomically, with
        the cutoff in the metadata."""
        columns = {
            "customer_id": self.customer_id.tolist(),
            "recency_days": self.recency_days,
            "orders": self.orders,
            "revenue": np.round(self.revenue, 2),
            "r": self.r,
            "f": self.f,
            "m": self.m,
            "segment": self.segment.tolist(),
        }
        return write_columns(columns, path, metadata={"cutoff_ms": str(self.cutoff_ms)})


def _table(
    ids: NDArray[Any],
    orders: NDArray[np.int64],
    revenue: NDArray[np.float64],
    last_ms: NDArray[np.int64],
    cutoff_ms: int,
) -> RFMTable:
    """Score customers ``ids`` (each with at least one order) from their totals at ``cutoff_ms``."""
    by_id = np.argsort(ids, kind="stable")
    ids, orders, revenue, last_ms = ids[by_id], orders[by_id], revenue[by_id], last_ms[by_id]
    recency = (cutoff_ms - last_ms) // _DAY_MS
    r = quintile_scores(recency, higher_is_better=False)
    f = quintile_scores(orders)
    m = quintile_scores(revenue)
    fm = ((f.astype(np.int64) + m + 1) // 2).astype(np.int8)
    names = np.array([s.name for s in RFM_SEGMENTS], dtype=object)
    return RFMTable(
        customer_id=np.asarray(ids, dtype=object),
        recency_days=recency.astype(np.int64),
        orders=orders.astype(np.int64),
        revenue=revenue.astype(np.float64),
        r=r,
        f=f,
        m=m,
        fm=fm,
        segment=names[_GRID[r, fm]] if len(r) else np.zeros(0, dtype=object),
        cutoff_ms=cutoff_ms,
    )


def rfm_from_orders(
    customer: ArrayLike,
    ts_ms: ArrayLike,
    revenue: ArrayLike,
    *,
    cutoff: int | str | datetime | None = None,
) -> RFMTable:
    """RFM from a plain order log: one row per order (customer id, epoch-ms time or
    ``datetime64``, revenue). Orders after ``cutoff`` (default: the last order) are ignored.

    Examples
    --------
    >>> t = rfm_from_orders(["x", "y"], np.array(["2024-01-01", "2024-01-09"], dtype="datetime64[D]"), [5, 7])
    >>> t.recency_days.tolist(), t.cutoff_ms == to_epoch_ms("2024-01-09T00:00:00Z")
    ([8, 0], True)
    """
    cust = np.asarray(customer)
    raw_ts = np.asarray(ts_ms)
    ts = (
        raw_ts.astype("datetime64[ms]").astype(np.int64)
        if raw_ts.dtype.kind == "M"
        else raw_ts.astype(np.int64)
    )
    amount = np.nan_to_num(np.asarray(revenue, dtype=np.float64))
    if not cust.ndim == ts.ndim == amount.ndim == 1 or not cust.shape == ts.shape == amount.shape:
        raise ConfigError(
            "customer, ts_ms and revenue must be 1-D of one length "
            f"({cust.shape}, {ts.shape}, {amount.shape})"
        )
    cutoff_ms = (int(ts.max()) if ts.shape[0] else 0) if cutoff is None else to_epoch_ms(cutoff)
    keep = ts <= cutoff_ms
    ids, code = np.unique(cust[keep], return_inverse=True)
    code = code.reshape(-1)
    n = ids.shape[0]
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, code, ts[keep])
    return _table(
        ids,
        np.bincount(code, minlength=n).astype(np.int64),
        np.bincount(code, weights=amount[keep], minlength=n).astype(np.float64),
        last,
        cutoff_ms,
    )


def rfm_from_batch(
    batch: EventBatch, cutoff: int | str | datetime | None = None, *, visible: Visibility = None
) -> RFMTable:
    """RFM from a batch's ``order_completed`` events at or before ``cutoff`` (default: the
    batch's last event). Users whose latest consent decision in the batch is a revocation, or
    whom ``visible`` hides (a mask, a callable or a profile store / scorer, see
    :func:`~affinity_sdk.models.visibility.visible_users`), are left out.

    Examples
    --------
    >>> from affinity_sdk.capture.events import ConsentChanged, OrderCompleted
    >>> events = [OrderCompleted(user_id=u, timestamp=0, order_id=u, products=[], revenue=5.0) for u in "ab"]
    >>> events.append(ConsentChanged(user_id="b", timestamp=1, granted=False))
    >>> rfm_from_batch(EventBatch.from_events(events)).customer_id.tolist()
    ['a']
    """
    from affinity_sdk.models.visibility import visible_users

    allowed = visible_users(batch, visible)
    cutoff_ms = (int(batch.ts_ms.max()) if len(batch) else 0) if cutoff is None else to_epoch_ms(cutoff)
    rows = (batch.event_type == EVENT_TYPE_CODES["order_completed"]) & (batch.ts_ms <= cutoff_ms)
    rows &= allowed[batch.user]
    names = np.asarray(batch.interners.users.names, dtype=object)
    return rfm_from_orders(names[batch.user[rows]], batch.ts_ms[rows], batch.revenue[rows], cutoff=cutoff_ms)


def rfm_from_store(store: ProfileStore | Scorer, now: int | str | datetime | None = None) -> RFMTable:
    """RFM of every visible customer of a profile store (or a scorer's store) that keeps the
    ``"propensity"`` view, at ``now`` (default: the newest folded event; not before it). The same
    table :func:`rfm_from_batch` gives on the same events.

    Examples
    --------
    >>> from affinity_sdk.profile.store import ProfileStore
    >>> store = ProfileStore(views=("propensity",))
    >>> _ = store.ingest(b'{"type":"order_completed","user_id":"a","timestamp":0,"order_id":"1",'
    ...                  b'"products":[],"revenue":5}')
    >>> t = rfm_from_store(store, now=86_400_000)
    >>> t.customer_id.tolist(), t.recency_days.tolist(), t.revenue.tolist()
    (['a'], [1], [5.0])
    """
    from affinity_sdk.models.propensity_features import order_totals
    from affinity_sdk.profile.store import ProfileStore

    if not isinstance(store, ProfileStore):
        store = store.store
    if "propensity" not in store.views:
        raise ConfigError(
            "RFM from a profile store needs its 'propensity' view: ProfileStore(views=(..., 'propensity'))"
        )
    with store.lock:
        view = store.view("propensity")
        now_ms = store.now_ms(now)
        store.grow(store.n_users)
        shown = store.visible()
        orders, revenue, last_ms = order_totals(view.counts(now_ms))
        codes = np.flatnonzero(shown[: orders.shape[0]] & (orders > 0))
        names = np.asarray(store.interners.users.names, dtype=object)
    return _table(names[codes], orders[codes], revenue[codes], last_ms[codes], now_ms)
