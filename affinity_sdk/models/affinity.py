r"""Affinity: what each customer loves (category, brand, price band), discount sensitivity, lookalikes.

Product-level events (views, cart adds, wishlist adds, order lines) feed a time-decayed,
weighted engagement :math:`d_{uv}` per (profile ``u``, dimension value ``v``). The state is
*sparse*: per dimension a sorted run of int64 keys ``u << 32 | v`` with one forward-decay
accumulator per half-life group (a CSR matrix whose row pointer comes from the keys), so memory
grows with the (profile, value) pairs actually seen, never with profiles × values. New events
land as small sorted runs that are merged into the main run on demand (on a query, or when the
pending runs grow past a quarter of it).

Decay is exact forward decay (as in :class:`~affinity_sdk.profile.decay.DecayState`): an event of type
``e`` at time ``t`` adds :math:`w_e\, e^{\lambda_e (t - L)}` to its half-life group's accumulator,
``L`` the landmark, so updates are scatter-adds, event order does not matter, two models merge by
addition and the landmark moves forward before any exponent nears float64's range.

**Affinity score** (a shrunk lift), at time ``now``:

.. math::

    d_{uv} = \sum_h A_{uvh}\, e^{-\lambda_h (now - L)},\quad D_u = \sum_v d_{uv},\quad
    P_v = \frac{\sum_u d_{uv}}{\sum_{u, v} d_{uv}},\quad
    \mathrm{affinity}_{uv} = \frac{d_{uv} + \kappa}{D_u P_v + \kappa}

Without ``κ`` this is the lift :math:`(d_{uv} / D_u) / P_v`: the profile's share of value ``v``
over the population's share. ``κ`` (``shrinkage``, in weighted-event units; a view weighs 1) pads
observed and expected engagement alike, the posterior mean of a Gamma(κ, κ) prior on the ratio,
so thin profiles sit near 1 ("average"): one view of anything gives at most
:math:`1 + 1/\kappa` (1.2 with the default κ = 5), while 2.0 means twice the expected engagement.

**Price band**: per category, cut points at the ``price_quantiles`` (default 1/3, 2/3) of the
catalogue's product prices; a line is ``low`` below the first, ``premium`` at or above the second
(``mid`` between), so "premium" is relative to the category. Cut points are fitted per category
the first time it is seen (or explicitly with :meth:`AffinityModel.fit_price_bands`) and then kept,
so the band of an ingested event never changes.

**Discount sensitivity**: how much more likely a customer buys with a discount or coupon than
without, against the population. With :math:`k_u` the decayed count of orders with a discount or
coupon (on the order or any line), :math:`n_u` all decayed orders, :math:`p = \sum k / \sum n` and
``m`` = ``discount_shrinkage`` pseudo-orders at the population rate,

.. math::

    r_u = \frac{k_u + m p}{n_u + m},\qquad
    \mathrm{sensitivity}_u = \frac{r_u / (1 - r_u)}{p / (1 - p)}

(the customer's discounted : full-price odds over the population's). High at or above
``discount_high``, Medium at or above ``discount_medium``, else Low; no orders is Low.

**Lookalikes**: each profile is a vector of blocks (per dimension: the IDF-weighted shares
:math:`s_{uv} / \sqrt{P_v}`; plus a standardised behaviour block: event-type mix, activity level
and discount sensitivity), each block L2-normalised; non-seed profiles are ranked by cosine
similarity to the centroid of the seeds' vectors.

Examples
--------
>>> from affinity_sdk.capture.events import Product, ProductViewed
>>> from affinity_sdk.ingest.batch import EventBatch
>>> shoe = Product(product_id="p1", category="shoes", brand="acme", price=80.0)
>>> hat = Product(product_id="p2", category="hats", brand="zed", price=20.0)
>>> events = [ProductViewed(user_id="ann", timestamp=1_700_000_000_000 + i, product=shoe) for i in range(5)]
>>> events += [ProductViewed(user_id="bob", timestamp=1_700_000_000_000, product=hat)]
>>> model = AffinityModel(backend="reference").ingest(EventBatch.from_events(events))
>>> [(name, round(score, 2)) for name, score in model.top_affinities("ann", "category", k=1)]
[('shoes', 1.09)]
>>> model.audience("brand", "acme", min_affinity=1.05)
['ann']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import BackendName, native, resolve_backend
from affinity_sdk._units import parse_duration
from affinity_sdk.capture.events import EVENT_TYPE_CODES, EVENT_TYPES
from affinity_sdk.config import AffinityConfig, AffinitySignal
from affinity_sdk.errors import ConfigError, StateError
from affinity_sdk.ingest.batch import EventBatch, Interners
from affinity_sdk.kernels import REBASE_EXPONENT
from affinity_sdk.kernels import _affinity_reference as _reference

__all__ = [
    "DIMENSIONS",
    "DISCOUNT_CLASSES",
    "PRICE_BANDS",
    "AffinityConfig",
    "AffinityModel",
    "AffinityScores",
    "AffinitySignal",
    "Dimension",
    "DiscountSensitivity",
    "TopAffinities",
    "affinities_table",
    "catalogue_price_cuts",
    "lookalikes_table",
    "top_affinities_from_totals",
]

Dimension = Literal["category", "brand", "price_band"]
DIMENSIONS: Final[tuple[Dimension, ...]] = ("category", "brand", "price_band")
PRICE_BANDS: Final[tuple[str, ...]] = ("low", "mid", "premium")
#: Discount-sensitivity class names by code (0, 1, 2).
DISCOUNT_CLASSES: Final[tuple[str, ...]] = ("Low", "Medium", "High")
_ORDER: Final = EVENT_TYPE_CODES["order_completed"]
_VALUE_BITS: Final = 32
_VALUE_MASK: Final = (1 << _VALUE_BITS) - 1
_FORMAT_KIND: Final = "affinity_sdk.AffinityModel"
_FORMAT_VERSION: Final = 1


# --- kernel dispatch ----------------------------------------------------------------------------
def _impl(backend: BackendName) -> Any:
    if backend == "reference":
        return _reference
    if backend == "numba":
        from affinity_sdk.kernels import _affinity_numba

        return _affinity_numba
    module: ModuleType | None = native()
    assert module is not None  # resolve_backend checked it
    return module.affinity


def _lam_per_ms(half_lives_s: Sequence[float]) -> NDArray[np.float64]:
    lam: NDArray[np.float64] = np.log(2.0) / (np.asarray(half_lives_s, dtype=np.float64) * 1000.0)
    return lam


def _decay(lam: NDArray[np.float64], delta_ms: int) -> NDArray[np.float64]:
    if delta_ms == 0:
        return np.ones_like(lam)
    with np.errstate(over="ignore"):
        return np.exp(-lam * float(delta_ms))


# --- the sparse table ---------------------------------------------------------------------------
class _Table:
    """Sorted unique keys ``u << 32 | v`` with accumulator rows, plus pending sorted runs."""

    __slots__ = ("acc", "keys", "pending", "pending_n")

    def __init__(self, width: int) -> None:
        self.keys = np.empty(0, dtype=np.int64)
        self.acc = np.empty((0, width), dtype=np.float64)
        self.pending: list[tuple[NDArray[np.int64], NDArray[np.float64]]] = []
        self.pending_n = 0

    def add_run(self, keys: NDArray[np.int64], acc: NDArray[np.float64], impl: Any) -> None:
        self.pending.append((keys, acc))
        self.pending_n += keys.shape[0]
        if self.pending_n > max(self.keys.shape[0] // 4, 1 << 20):
            self.compact(impl)

    def compact(self, impl: Any) -> None:
        if not self.pending:
            return
        if len(self.pending) == 1:
            run_keys, run_acc = self.pending[0]
        else:
            keys = np.concatenate([k for k, _ in self.pending])
            acc = np.concatenate([a for _, a in self.pending])
            run_keys = np.empty_like(keys)
            run_acc = np.empty_like(acc)
            m = impl.group_sum(keys, acc, run_keys, run_acc)
            run_keys, run_acc = _trim(run_keys, run_acc, m)
        if self.keys.shape[0] == 0:
            self.keys, self.acc = run_keys, run_acc
            self.pending, self.pending_n = [], 0
            return
        n = self.keys.shape[0] + run_keys.shape[0]
        out_keys = np.empty(n, dtype=np.int64)
        out_acc = np.empty((n, self.acc.shape[1]), dtype=np.float64)
        m = impl.merge_runs(self.keys, self.acc, run_keys, run_acc, out_keys, out_acc)
        self.keys, self.acc = _trim(out_keys, out_acc, m)
        self.pending, self.pending_n = [], 0

    def scale(self, factors: NDArray[np.float64]) -> None:
        self.acc *= factors
        for _, acc in self.pending:
            acc *= factors

    def copy(self) -> _Table:
        clone = _Table(self.acc.shape[1])
        clone.keys, clone.acc = self.keys.copy(), self.acc.copy()
        clone.pending = [(k.copy(), a.copy()) for k, a in self.pending]
        clone.pending_n = self.pending_n
        return clone


def _trim(
    keys: NDArray[np.int64], acc: NDArray[np.float64], m: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The first ``m`` rows; copied when that frees much of the buffer, else a view (no copy)."""
    if 4 * m >= 3 * keys.shape[0]:
        return keys[:m], acc[:m]
    return keys[:m].copy(), acc[:m].copy()


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AffinityScores:
    """Affinity of every stored (profile, value) pair of one dimension at ``now_ms``, as CSR.

    Profile ``u``'s entries are ``indptr[u]:indptr[u + 1]``: value codes ``cols``, decayed
    engagement ``decayed`` and the shrunk lift ``affinity`` (see the module docstring); pairs not
    stored have affinity :math:`\\kappa / (D_u P_v + \\kappa) \\le 1`. ``population_share[v]`` is
    :math:`P_v` and ``names[v]`` the value's name.
    """

    dimension: Dimension
    now_ms: int
    indptr: NDArray[np.int64]
    cols: NDArray[np.int64]
    decayed: NDArray[np.float64]
    affinity: NDArray[np.float64]
    population_share: NDArray[np.float64]
    names: Sequence[str]

    @property
    def n_profiles(self) -> int:
        return int(self.indptr.shape[0] - 1)

    def dense(self) -> NDArray[np.float64]:
        """The (profiles × values) affinity matrix with implied entries filled (small data only)."""
        rows = np.repeat(np.arange(self.n_profiles), np.diff(self.indptr))
        totals = np.bincount(rows, weights=self.decayed, minlength=self.n_profiles)
        expected = totals[:, None] * self.population_share[None, :] + self.kappa
        out = np.divide(self.kappa, expected, out=np.ones_like(expected), where=expected > 0)
        out[rows, self.cols] = self.affinity
        return out

    kappa: float = 0.0


@dataclass(frozen=True, eq=False)
class TopAffinities:
    """Each profile's ``k`` highest-affinity values: ``codes`` (-1 padded) and ``affinity``
    (NaN padded), both shape ``(n_profiles, k)``, descending; ``names[code]`` is the value name."""

    dimension: Dimension
    codes: NDArray[np.int64]
    affinity: NDArray[np.float64]
    names: Sequence[str]


@dataclass(frozen=True, eq=False)
class DiscountSensitivity:
    """Per profile: decayed ``orders`` and ``discounted`` orders, the shrunk discounted-order
    ``rate``, ``sensitivity`` (its odds over the ``population_rate``'s odds; inf where every
    order is discounted and there is no shrinkage) and ``tier`` (0 Low, 1 Medium, 2 High)."""

    orders: NDArray[np.float64]
    discounted: NDArray[np.float64]
    rate: NDArray[np.float64]
    sensitivity: NDArray[np.float64]
    tier: NDArray[np.int8]
    population_rate: float


# --- the model ----------------------------------------------------------------------------------
class AffinityModel:
    """Sparse, exact, mergeable decayed affinity state over category, brand and price band.

    Parameters
    ----------
    config
        The ``[affinity]`` configuration (built-in default when None).
    backend
        ``"auto"`` (fastest available), ``"cpp"``, ``"numba"`` or ``"reference"``.

    Examples
    --------
    >>> model = AffinityModel(backend="reference")
    >>> model
    AffinityModel(profiles=0, entries={'category': 0, 'brand': 0, 'price_band': 0}, backend='reference')
    """

    def __init__(self, config: AffinityConfig | None = None, *, backend: str | None = "auto") -> None:
        self.config = config if config is not None else AffinityConfig()
        self.backend: BackendName = resolve_backend(backend)
        self._impl = _impl(self.backend)
        self.interners: Interners | None = None
        self.landmark_ms: int | None = None
        #: Newest event time seen (ms): the default ``now`` of every query.
        self.last_ms: int | None = None
        self.n_profiles = 0
        groups = self.config.half_life_groups_s
        self._group_lam = _lam_per_ms(groups)
        names = self.config.signal_names
        self._type_group = np.full(len(EVENT_TYPES), -1, dtype=np.int64)
        self._type_weight = np.zeros(len(EVENT_TYPES))
        self._type_column = np.full(len(EVENT_TYPES), -1, dtype=np.int64)
        for column, name in enumerate(names):
            code = EVENT_TYPE_CODES[name]
            self._type_group[code] = groups.index(self.config.signals[name].half_life_s)
            self._type_weight[code] = self.config.signals[name].weight
            self._type_column[code] = 2 + column
        # activity columns: orders, discounted orders, then one per configured event type
        discount_lam = _lam_per_ms([parse_duration(self.config.discount_half_life)])[0]
        self._activity_lam = np.concatenate(
            [[discount_lam, discount_lam], _lam_per_ms([self.config.signals[n].half_life_s for n in names])]
        )
        self._activity = np.zeros((0, self._activity_lam.shape[0]))
        self._tables = {dim: _Table(len(groups)) for dim in DIMENSIONS}
        #: Per category code: the (low|mid, mid|premium) price cut points; NaN until fitted.
        self.price_cuts_ = np.full((0, 2), np.nan)
        self._version = 0
        self._cache: dict[tuple[Any, ...], Any] = {}

    def __repr__(self) -> str:
        entries = {dim: int(t.keys.shape[0] + t.pending_n) for dim, t in self._tables.items()}
        return f"AffinityModel(profiles={self.n_profiles}, entries={entries}, backend={self.backend!r})"

    # --- ingest -----------------------------------------------------------------------------
    def ingest(self, batch: EventBatch) -> AffinityModel:
        """Fold a batch's product-level events into the state; returns ``self``.

        All batches must share one :class:`~affinity_sdk.ingest.batch.Interners` (the first one seen).
        """
        self._adopt(batch.interners)
        if len(batch) == 0:
            return self
        self._ensure_profiles(int(batch.user.max()) + 1)
        newest = int(batch.ts_ms.max())
        self._maybe_rebase(newest)
        self.last_ms = newest if self.last_ms is None else max(self.last_ms, newest)
        landmark = self.landmark_ms
        assert landmark is not None
        self._fit_missing_price_cuts(batch)
        self._ingest_items(batch, landmark)
        self._ingest_activity(batch, landmark)
        self._touch()
        return self

    def _adopt(self, interners: Interners) -> None:
        if self.interners is None:
            self.interners = interners
        elif interners is not self.interners:
            raise StateError(
                "this batch was interned with other Interners than the model's; "
                "build every batch with the model's `interners`"
            )

    def _ingest_items(self, batch: EventBatch, landmark: int) -> None:
        item_type = batch.event_type[batch.item_event].astype(np.int64)
        keep = np.flatnonzero(self._type_group[item_type] >= 0)
        if keep.shape[0] == 0:
            return
        rows = batch.item_event[keep]
        users = batch.user[rows].astype(np.int64)
        types = item_type[keep]
        groups = self._type_group[types]
        dt = (batch.ts_ms[rows] - landmark).astype(np.float64)
        contrib = np.zeros((keep.shape[0], self._group_lam.shape[0]))
        contrib[np.arange(keep.shape[0]), groups] = self._type_weight[types] * np.exp(
            self._group_lam[groups] * dt
        )
        category = batch.item_category[keep].astype(np.int64)
        bands = self._bands(category, batch.item_price[keep])
        codes = {"category": category, "brand": batch.item_brand[keep].astype(np.int64), "price_band": bands}
        prefix = users << _VALUE_BITS
        for dim in DIMENSIONS:
            valid = codes[dim] >= 0
            keys = prefix | codes[dim]
            part = contrib
            if not valid.all():
                keys, part = keys[valid], contrib[valid]
            out_keys = np.empty_like(keys)
            out_acc = np.empty_like(part)
            m = self._impl.group_sum(keys, part, out_keys, out_acc)
            self._tables[dim].add_run(*_trim(out_keys, out_acc, m), self._impl)

    def _ingest_activity(self, batch: EventBatch, landmark: int) -> None:
        types = batch.event_type.astype(np.int64)
        order = np.flatnonzero(types == _ORDER)
        discounted = order[_discounted_orders(batch)[order]]
        typed = np.flatnonzero(self._type_column[types] >= 0)
        rows = np.concatenate([order, discounted, typed])
        columns = np.concatenate(
            [
                np.zeros(order.shape[0], np.int64),
                np.ones(discounted.shape[0], np.int64),
                self._type_column[types[typed]],
            ]
        )
        dt = (batch.ts_ms[rows] - landmark).astype(np.float64)
        values = np.exp(self._activity_lam[columns] * dt)
        width = self._activity.shape[1]
        flat = self._activity[: self.n_profiles].reshape(-1)  # a view: rows are C-contiguous
        cells = batch.user[rows].astype(np.int64) * width + columns
        if rows.shape[0] * 8 >= flat.shape[0]:
            # a big batch: one dense bincount pass beats ufunc.at's per-element dispatch
            flat += np.bincount(cells, weights=values, minlength=flat.shape[0])
        else:
            np.add.at(flat, cells, values)

    def _ensure_profiles(self, n_profiles: int) -> None:
        if n_profiles <= self.n_profiles:
            return
        if n_profiles > self._activity.shape[0]:
            capacity = max(n_profiles, 2 * self._activity.shape[0], 1024)
            grown = np.zeros((capacity, self._activity.shape[1]))
            grown[: self.n_profiles] = self._activity[: self.n_profiles]
            self._activity = grown
        self.n_profiles = n_profiles

    def _maybe_rebase(self, newest_ms: int) -> None:
        if self.landmark_ms is None:
            self.landmark_ms = newest_ms
            return
        lam_max = float(max(self._group_lam.max(initial=0.0), self._activity_lam.max(initial=0.0)))
        ahead = newest_ms - self.landmark_ms
        if ahead > 0 and lam_max * ahead > REBASE_EXPONENT:
            self.rebase(newest_ms)

    def rebase(self, landmark_ms: int) -> None:
        """Move the decay landmark to ``landmark_ms``, rescaling every accumulator (exact)."""
        if self.landmark_ms is None:
            self.landmark_ms = int(landmark_ms)
            return
        delta = int(landmark_ms) - self.landmark_ms
        if delta != 0:
            factors = _decay(self._group_lam, delta)
            for table in self._tables.values():
                table.scale(factors)
            self._activity *= _decay(self._activity_lam, delta)
        self.landmark_ms = int(landmark_ms)
        self._touch()

    def _touch(self) -> None:
        self._version += 1
        self._cache.clear()

    # --- price bands ------------------------------------------------------------------------
    def fit_price_bands(self, batch: EventBatch, *, refit: bool = True) -> AffinityModel:
        """Fit per-category price cut points from the catalogue in ``batch``'s item table.

        Each product counts once (its first listed price). With ``refit=False`` only categories
        without cut points are fitted. Bands of events already ingested do not change.

        Examples
        --------
        >>> from affinity_sdk.capture.events import Product, ProductViewed
        >>> events = [ProductViewed(user_id="u", timestamp=0, product=Product(
        ...     product_id=f"p{i}", category="c", brand="b", price=float(i))) for i in range(10)]
        >>> model = AffinityModel(backend="reference").fit_price_bands(EventBatch.from_events(events))
        >>> model.price_cuts_.round(2).tolist()
        [[3.0, 6.0]]
        """
        self._adopt(batch.interners)
        cuts = _price_cuts(batch, self.config.price_quantiles)
        n = max(cuts.shape[0], self.price_cuts_.shape[0])
        merged = np.full((n, 2), np.nan)
        merged[: self.price_cuts_.shape[0]] = self.price_cuts_
        fitted = ~np.isnan(cuts[:, 0])
        if not refit:
            fitted &= np.isnan(merged[: cuts.shape[0], 0])
        merged[: cuts.shape[0]][fitted] = cuts[fitted]
        self.price_cuts_ = merged
        return self

    def _fit_missing_price_cuts(self, batch: EventBatch) -> None:
        if batch.n_items == 0:
            return
        seen = np.unique(batch.item_category[batch.item_category >= 0])
        known = self.price_cuts_.shape[0]
        if np.any(seen >= known) or np.any(np.isnan(self.price_cuts_[seen[seen < known], 0])):
            self.fit_price_bands(batch, refit=False)

    def _bands(self, category: NDArray[np.int64], price: NDArray[np.float64]) -> NDArray[np.int64]:
        bands = np.full(category.shape[0], -1, dtype=np.int64)
        ok = (category >= 0) & (category < self.price_cuts_.shape[0]) & np.isfinite(price)
        cuts = self.price_cuts_[category[ok]]
        p = price[ok]
        with np.errstate(invalid="ignore"):
            # ">" then ">=": a category whose products share one price is all "mid"
            band = (p > cuts[:, 0]).astype(np.int64) + (p >= cuts[:, 1])
        bands[ok] = np.where(np.isnan(cuts[:, 0]), -1, band)
        return bands

    # --- queries ----------------------------------------------------------------------------
    def _now(self, now_ms: int | None) -> int:
        if now_ms is not None:
            return int(now_ms)
        return self.last_ms if self.last_ms is not None else 0

    def _factors(self, lam: NDArray[np.float64], now_ms: int) -> NDArray[np.float64]:
        if self.landmark_ms is None:
            return np.ones_like(lam)
        factors = _decay(lam, now_ms - self.landmark_ms)
        if not np.all(np.isfinite(factors)):
            raise ValueError(
                f"now={now_ms} ms is too far before the decay landmark {self.landmark_ms} ms "
                "to evaluate (the decay factor overflows float64)"
            )
        return factors

    def _names(self, dimension: str) -> Sequence[str]:
        if dimension == "price_band":
            return PRICE_BANDS
        if dimension not in DIMENSIONS:
            raise ValueError(f"unknown dimension {dimension!r}; choose one of {', '.join(DIMENSIONS)}")
        if self.interners is None:
            return ()
        return (self.interners.categories if dimension == "category" else self.interners.brands).names

    def _profiles(self) -> int:
        if self.interners is not None:
            self._ensure_profiles(len(self.interners.users))
        return self.n_profiles

    def _csr(self, dimension: Dimension) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        n = self._profiles()  # the interners may have grown (shared with a Scorer)
        key = ("csr", dimension, n)
        if key not in self._cache:
            table = self._tables[dimension]
            table.compact(self._impl)
            rows = table.keys >> _VALUE_BITS
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
            self._cache[key] = (indptr, table.keys & _VALUE_MASK, table.acc)
        result: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]] = self._cache[key]
        return result

    def scores(self, dimension: Dimension, now_ms: int | None = None) -> AffinityScores:
        """Affinity of every stored (profile, value) pair of ``dimension`` at ``now_ms``.

        ``now_ms`` defaults to the newest event seen. Results are cached until the next ingest.

        Examples
        --------
        >>> AffinityModel(backend="reference").scores("brand").affinity.shape
        (0,)
        """
        names = self._names(dimension)
        now = self._now(now_ms)
        key = ("scores", dimension, now, self._profiles())
        if key not in self._cache:
            indptr, cols, acc = self._csr(dimension)
            n = cols.shape[0]
            n_values = max(len(names), int(cols.max()) + 1 if n else 0)
            totals = np.empty(n_values)
            decayed = np.empty(n)
            lift = np.empty(n)
            self._impl.lift_scores(
                indptr, cols, acc, self._factors(self._group_lam, now), float(self.config.shrinkage),
                totals, decayed, lift,
            )  # fmt: skip
            grand = totals.sum()
            share = totals / grand if grand > 0 else np.zeros_like(totals)
            self._cache[key] = AffinityScores(
                dimension, now, indptr, cols, decayed, lift, share, names, kappa=float(self.config.shrinkage)
            )
        result: AffinityScores = self._cache[key]
        return result

    def top_affinities(
        self, user_id: str, dimension: Dimension, k: int = 3, now_ms: int | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` values of ``dimension`` that ``user_id`` loves most, with their affinity.

        An unknown user, or one without product events, gets ``[]``.

        Examples
        --------
        >>> AffinityModel(backend="reference").top_affinities("nobody", "brand")
        []
        """
        code = None if self.interners is None else self.interners.users.lookup(user_id)
        if code is None:
            return []
        s = self.scores(dimension, now_ms)
        if code >= s.n_profiles:
            return []
        lo, hi = int(s.indptr[code]), int(s.indptr[code + 1])
        seg = s.affinity[lo:hi]
        order = np.argsort(-seg, kind="stable")[:k]
        return [(s.names[int(s.cols[lo + j])], float(seg[j])) for j in order]

    def top_affinities_all(
        self, dimension: Dimension, k: int = 3, now_ms: int | None = None
    ) -> TopAffinities:
        """Every profile's ``k`` highest-affinity values at once (compiled, one pass over the table).

        Examples
        --------
        >>> AffinityModel(backend="reference").top_affinities_all("category", k=2).codes.shape
        (0, 2)
        """
        if k < 0:
            raise ValueError(f"k must be >= 0 (got {k})")
        s = self.scores(dimension, now_ms)
        codes = np.empty((s.n_profiles, k), dtype=np.int64)
        values = np.empty((s.n_profiles, k))
        self._impl.topk_segments(s.indptr, s.cols, s.affinity, int(k), codes, values)
        return TopAffinities(dimension, codes, values, s.names)

    def _value_index(
        self, dimension: Dimension, n_values: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        key = ("by_value", dimension, n_values)
        if key not in self._cache:
            _, cols, _ = self._csr(dimension)
            ptr = np.empty(n_values + 1, dtype=np.int64)
            order = np.empty(cols.shape[0], dtype=np.int64)
            self._impl.transpose_index(cols, ptr, order)
            self._cache[key] = (ptr, order)
        result: tuple[NDArray[np.int64], NDArray[np.int64]] = self._cache[key]
        return result

    def audience_codes(
        self, dimension: Dimension, value: str | int, min_affinity: float = 2.0, now_ms: int | None = None
    ) -> NDArray[np.int64]:
        """Profile codes (ascending) whose affinity to ``value`` is at least ``min_affinity``.

        Uses a by-value index built once per ingest, so a query touches only that value's entries.

        Examples
        --------
        >>> AffinityModel(backend="reference").audience_codes("price_band", "premium").tolist()
        []
        """
        s = self.scores(dimension, now_ms)
        code = self._value_code(dimension, value, s.names)
        if code is None:
            return np.empty(0, dtype=np.int64)
        ptr, order = self._value_index(dimension, s.population_share.shape[0])
        if code >= ptr.shape[0] - 1:
            return np.empty(0, dtype=np.int64)
        entries = order[ptr[code] : ptr[code + 1]]
        hits = entries[s.affinity[entries] >= min_affinity]
        # entries are in key order, i.e. by profile: the profile codes come out sorted
        return np.searchsorted(s.indptr, hits, side="right") - 1

    def audience(
        self, dimension: Dimension, value: str | int, min_affinity: float = 2.0, now_ms: int | None = None
    ) -> list[str]:
        """User ids with affinity to ``value`` (a name, or a code) of at least ``min_affinity``.

        Examples
        --------
        >>> AffinityModel(backend="reference").audience("brand", "acme")
        []
        """
        codes = self.audience_codes(dimension, value, min_affinity, now_ms)
        if self.interners is None:
            return []
        names = self.interners.users.names
        return [names[c] for c in codes.tolist()]

    def _value_code(self, dimension: Dimension, value: str | int, names: Sequence[str]) -> int | None:
        if isinstance(value, int | np.integer):
            return int(value)
        if dimension == "price_band":
            return PRICE_BANDS.index(value) if value in PRICE_BANDS else None
        if self.interners is None:
            return None
        interner = self.interners.categories if dimension == "category" else self.interners.brands
        return interner.lookup(value)

    # --- discount sensitivity ---------------------------------------------------------------
    def discount_sensitivity(self, now_ms: int | None = None) -> DiscountSensitivity:
        """Per-profile discount sensitivity with shrinkage and its High / Medium / Low tier.

        Examples
        --------
        >>> AffinityModel(backend="reference").discount_sensitivity().population_rate
        0.0
        """
        now = self._now(now_ms)
        key = ("discount", now, self._profiles())
        if key not in self._cache:
            n = self._profiles()
            factors = self._factors(self._activity_lam[:2], now)
            orders = self._activity[:n, 0] * factors[0]
            discounted = self._activity[:n, 1] * factors[1]
            total = float(orders.sum())
            p = float(discounted.sum()) / total if total > 0 else 0.0
            m = self.config.discount_shrinkage
            with np.errstate(divide="ignore", invalid="ignore"):
                rate = np.where(orders + m > 0, (discounted + m * p) / (orders + m), p)
                odds = rate / (1.0 - rate)
                sensitivity = odds / (p / (1.0 - p)) if 0.0 < p < 1.0 else np.ones(n)
            sensitivity = np.where(np.isnan(sensitivity), 1.0, sensitivity)
            tier = np.zeros(n, dtype=np.int8)
            tier[sensitivity >= self.config.discount_medium] = 1
            tier[sensitivity >= self.config.discount_high] = 2
            tier[orders <= 0] = 0
            self._cache[key] = DiscountSensitivity(orders, discounted, rate, sensitivity, tier, p)
        result: DiscountSensitivity = self._cache[key]
        return result

    def discount_class(self, user_id: str, now_ms: int | None = None) -> str:
        """``"High"``, ``"Medium"`` or ``"Low"`` discount sensitivity of one user (Low if unknown).

        Examples
        --------
        >>> AffinityModel(backend="reference").discount_class("nobody")
        'Low'
        """
        code = None if self.interners is None else self.interners.users.lookup(user_id)
        tiers = self.discount_sensitivity(now_ms).tier
        if code is None or code >= tiers.shape[0]:
            return DISCOUNT_CLASSES[0]
        return DISCOUNT_CLASSES[int(tiers[code])]

    # --- lookalikes -------------------------------------------------------------------------
    def _behaviour(self, now: int) -> NDArray[np.float64]:
        key = ("behaviour", now, self._profiles())
        if key not in self._cache:
            n = self._profiles()
            factors = self._factors(self._activity_lam, now)
            activity = self._activity[:n, 2:] * factors[2:]
            total = activity.sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                mix = np.where(total[:, None] > 0, activity / total[:, None], 0.0)
            sens = self.discount_sensitivity(now).sensitivity
            raw = np.column_stack([mix, np.log1p(total), np.log(np.clip(sens, 1e-3, 1e3))])
            std = raw.std(axis=0)
            z = (raw - raw.mean(axis=0)) / np.where(std > 0, std, 1.0)
            self._cache[key] = np.ascontiguousarray(z)
        result: NDArray[np.float64] = self._cache[key]
        return result

    def _features(self, dimension: Dimension, now: int) -> NDArray[np.float64]:
        key = ("features", dimension, now, self._profiles())
        if key not in self._cache:
            s = self.scores(dimension, now)
            rows = np.repeat(np.arange(s.n_profiles), np.diff(s.indptr))
            totals = np.bincount(rows, weights=s.decayed, minlength=s.n_profiles)
            share = s.population_share[s.cols]
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.where(share > 0, s.decayed / totals[rows] / np.sqrt(share), 0.0)
            self._cache[key] = np.ascontiguousarray(x)
        result: NDArray[np.float64] = self._cache[key]
        return result

    def lookalike_scores(
        self,
        seed_codes: Iterable[int],
        *,
        now_ms: int | None = None,
        behaviour_weight: float = 0.5,
    ) -> NDArray[np.float64]:
        """Cosine similarity of every profile to the seeds' centroid (see the module docstring).

        Examples
        --------
        >>> AffinityModel(backend="reference").lookalike_scores([]).shape
        (0,)
        """
        now = self._now(now_ms)
        n = self._profiles()
        seeds = np.unique(np.asarray(list(seed_codes), dtype=np.int64))
        if seeds.shape[0] and (seeds[0] < 0 or seeds[-1] >= n):
            raise ValueError(f"seed profile codes must lie in 0 .. {n - 1}")
        dot = np.zeros(n)
        sq_total = np.zeros(n)
        centroid_sq = 0.0
        if seeds.shape[0] == 0:
            return dot
        for dimension in DIMENSIONS:
            s = self.scores(dimension, now)
            x = self._features(dimension, now)
            # the seeds' rows, gathered without a Python loop over seeds
            counts = np.diff(s.indptr)[seeds]
            entries = np.repeat(s.indptr[seeds] - np.cumsum(counts) + counts, counts) + np.arange(
                counts.sum()
            )
            owner = np.repeat(np.arange(seeds.shape[0]), counts)
            seed_norms = np.sqrt(np.bincount(owner, weights=x[entries] ** 2, minlength=seeds.shape[0]))
            seed_x = x[entries]
            unit = np.divide(
                seed_x, seed_norms[owner], out=np.zeros_like(seed_x), where=seed_norms[owner] > 0
            )
            centroid: NDArray[np.float64] = np.bincount(
                s.cols[entries], weights=unit, minlength=s.population_share.shape[0]
            ).astype(np.float64)
            centroid /= seeds.shape[0]
            block_dot = np.zeros(n)
            block_sq = np.zeros(n)
            self._impl.csr_dot(s.indptr, s.cols, x, centroid, block_dot, block_sq)
            with np.errstate(divide="ignore", invalid="ignore"):
                dot += np.where(block_sq > 0, block_dot / np.sqrt(block_sq), 0.0)
            sq_total += block_sq > 0
            centroid_sq += float(centroid @ centroid)
        if behaviour_weight > 0:
            z = self._behaviour(now)
            z_norm = np.sqrt((z * z).sum(axis=1))
            unit = np.divide(z, z_norm[:, None], out=np.zeros_like(z), where=z_norm[:, None] > 0)
            centroid_b = behaviour_weight * unit[seeds].mean(axis=0)
            dot += behaviour_weight * (unit @ centroid_b)
            sq_total += behaviour_weight**2 * (z_norm > 0)
            centroid_sq += float(centroid_b @ centroid_b)
        denominator = np.sqrt(sq_total * centroid_sq)
        return np.divide(dot, denominator, out=np.zeros(n), where=denominator > 0)

    def lookalikes(
        self,
        seed_user_ids: Iterable[str],
        n: int = 100,
        *,
        now_ms: int | None = None,
        behaviour_weight: float = 0.5,
    ) -> list[tuple[str, float]]:
        """The ``n`` non-seed users most similar to the seeds, with their cosine similarity.

        Unknown seed ids are ignored. Cut at a threshold on the returned scores if needed.

        Examples
        --------
        >>> AffinityModel(backend="reference").lookalikes(["nobody"], n=5)
        []
        """
        if self.interners is None:
            return []
        users = self.interners.users
        seeds = [c for c in (users.lookup(u) for u in seed_user_ids) if c is not None]
        if not seeds:
            return []
        codes, scores = self.lookalike_codes(seeds, n, now_ms=now_ms, behaviour_weight=behaviour_weight)
        names = users.names
        return [(names[c], s) for c, s in zip(codes.tolist(), scores.tolist(), strict=True)]

    def lookalike_codes(
        self,
        seed_codes: Iterable[int],
        n: int = 100,
        *,
        now_ms: int | None = None,
        behaviour_weight: float = 0.5,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Codes and scores of the ``n`` most similar non-seed profiles, best first.

        Examples
        --------
        >>> codes, scores = AffinityModel(backend="reference").lookalike_codes([], 3)
        >>> codes.tolist(), scores.tolist()
        ([], [])
        """
        seeds = np.unique(np.asarray(list(seed_codes), dtype=np.int64))
        scores = self.lookalike_scores(seeds, now_ms=now_ms, behaviour_weight=behaviour_weight)
        if seeds.shape[0] == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        scores[seeds] = -np.inf
        n = max(0, min(n, scores.shape[0] - seeds.shape[0]))
        top = (
            np.argpartition(-scores, n - 1)[:n] if 0 < n < scores.shape[0] else np.arange(scores.shape[0])[:n]
        )
        top = top[np.lexsort((top, -scores[top]))]
        return top.astype(np.int64), scores[top]

    # --- merge and persistence --------------------------------------------------------------
    def merge(self, other: AffinityModel) -> AffinityModel:
        """Add ``other`` (same config, same interners) into this model; returns ``self``.

        Examples
        --------
        >>> AffinityModel(backend="reference").merge(AffinityModel(backend="reference")).n_profiles
        0
        """
        if other.config != self.config:
            raise StateError("cannot merge affinity models built with different configs")
        if other.interners is not None:
            self._adopt(other.interners)
        if other.landmark_ms is None:
            return self
        theirs = {dim: t.copy() for dim, t in other._tables.items()}
        activity = other._activity[: other.n_profiles].copy()
        if self.landmark_ms is None or self.landmark_ms < other.landmark_ms:
            self.rebase(other.landmark_ms)
        elif self.landmark_ms > other.landmark_ms:
            delta = self.landmark_ms - other.landmark_ms
            for t in theirs.values():
                t.scale(_decay(self._group_lam, delta))
            activity *= _decay(self._activity_lam, delta)
        for dim, t in theirs.items():
            t.compact(self._impl)
            self._tables[dim].add_run(t.keys, t.acc, self._impl)
        self._ensure_profiles(other.n_profiles)
        self._activity[: other.n_profiles] += activity
        if other.last_ms is not None:
            self.last_ms = other.last_ms if self.last_ms is None else max(self.last_ms, other.last_ms)
        n = max(self.price_cuts_.shape[0], other.price_cuts_.shape[0])
        cuts = np.full((n, 2), np.nan)
        cuts[: other.price_cuts_.shape[0]] = other.price_cuts_
        mine = ~np.isnan(self.price_cuts_[:, 0])
        cuts[: self.price_cuts_.shape[0]][mine] = self.price_cuts_[mine]
        self.price_cuts_ = cuts
        self._touch()
        return self

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """A MessagePack-able header and named arrays that :meth:`from_arrays` restores (for the
        Scorer's container files; :meth:`save` writes them on their own)."""
        arrays: dict[str, NDArray[Any]] = {
            "activity": self._activity[: self.n_profiles],
            "price_cuts": self.price_cuts_,
        }
        for dim, table in self._tables.items():
            table.compact(self._impl)
            arrays[f"{dim}.keys"] = table.keys
            arrays[f"{dim}.acc"] = table.acc
        header = {
            "format": _FORMAT_VERSION,
            "config": msgspec.to_builtins(self.config),
            "landmark_ms": self.landmark_ms,
            "last_ms": self.last_ms,
            "n_profiles": self.n_profiles,
        }
        return header, arrays

    @classmethod
    def from_arrays(
        cls,
        header: Mapping[str, Any],
        arrays: Mapping[str, NDArray[Any]],
        interners: Interners | None = None,
        *,
        backend: str | None = "auto",
    ) -> AffinityModel:
        """Rebuild a model from :meth:`to_arrays` output; raises :class:`StateError` if invalid."""
        try:
            if header["format"] != _FORMAT_VERSION:
                raise StateError(f"affinity state format {header['format']} is not supported")
            model = cls(AffinityConfig.from_dict(header["config"]), backend=backend)
            n = int(header["n_profiles"])
            width = model._group_lam.shape[0]
            activity = np.asarray(arrays["activity"], dtype=np.float64)
            if activity.shape != (n, model._activity_lam.shape[0]):
                raise StateError(f"affinity state: activity has shape {activity.shape}")
            for dim in DIMENSIONS:
                keys = np.ascontiguousarray(arrays[f"{dim}.keys"], dtype=np.int64)
                acc = np.ascontiguousarray(arrays[f"{dim}.acc"], dtype=np.float64)
                if acc.shape != (keys.shape[0], width) or np.any(np.diff(keys) <= 0):
                    raise StateError(f"affinity state: the {dim} table is malformed")
                if keys.shape[0] and not 0 <= keys[-1] >> _VALUE_BITS < n:
                    raise StateError(f"affinity state: the {dim} table names unknown profiles")
                model._tables[dim].keys, model._tables[dim].acc = keys.copy(), acc.copy()
            cuts = np.asarray(arrays["price_cuts"], dtype=np.float64)
            if cuts.ndim != 2 or cuts.shape[1] != 2:
                raise StateError("affinity state: price cuts are malformed")
        except (KeyError, TypeError, ConfigError) as exc:
            raise StateError(f"affinity state is incomplete or foreign: {exc}") from None
        model._ensure_profiles(n)
        model._activity[:n] = activity
        model.price_cuts_ = cuts.copy()
        model.landmark_ms = header["landmark_ms"]
        model.last_ms = header["last_ms"]
        model.interners = interners
        return model

    def save(self, path: str | Path) -> None:
        """Write the model atomically with a checksum (interners are not included).

        Examples
        --------
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "aff.afs")
        >>> AffinityModel(backend="reference").save(path)
        >>> AffinityModel.load(path, backend="reference").n_profiles
        0
        """
        from affinity_sdk._persist import write_container

        header, arrays = self.to_arrays()
        write_container(path, _FORMAT_KIND, header, arrays)

    @classmethod
    def load(
        cls, path: str | Path, interners: Interners | None = None, *, backend: str | None = "auto"
    ) -> AffinityModel:
        """Read a model written by :meth:`save`; corrupt or foreign files raise :class:`StateError`."""
        from affinity_sdk._persist import read_container

        header, arrays = read_container(path, _FORMAT_KIND)
        return cls.from_arrays(header, arrays, interners, backend=backend)


# --- helpers ------------------------------------------------------------------------------------
def _discounted_orders(batch: EventBatch) -> NDArray[np.bool_]:
    """Per event: a discount or coupon on the order itself or on any of its lines."""
    with np.errstate(invalid="ignore"):
        flagged = batch.has_coupon | (batch.discount > 0)
        line = np.zeros(len(batch), dtype=bool)
        line[batch.item_event[batch.item_discount > 0]] = True
    result: NDArray[np.bool_] = flagged | line
    return result


def _price_cuts(batch: EventBatch, quantiles: tuple[float, float]) -> NDArray[np.float64]:
    """Per category code: price quantiles over distinct products (each at its first listed price)."""
    n_categories = len(batch.interners.categories)
    cuts = np.full((n_categories, 2), np.nan)
    ok = np.flatnonzero(
        (batch.item_product >= 0) & (batch.item_category >= 0) & np.isfinite(batch.item_price)
    )
    if ok.shape[0] == 0:
        return cuts
    product = batch.item_product[ok].astype(np.int64)
    # one row per product, so best-sellers do not skew the bands (O(n), no sort of the lines)
    first = np.full(int(product.max()) + 1, ok.shape[0], dtype=np.int64)
    np.minimum.at(first, product, np.arange(ok.shape[0]))
    first = ok[first[first < ok.shape[0]]]
    return catalogue_price_cuts(batch.item_category[first], batch.item_price[first], n_categories, quantiles)


def catalogue_price_cuts(
    categories: NDArray[np.integer[Any]],
    prices: NDArray[np.float64],
    n_categories: int,
    quantiles: tuple[float, float] = (1.0 / 3.0, 2.0 / 3.0),
) -> NDArray[np.float64]:
    """Per category code: the ``quantiles`` of a catalogue given as one (category code, finite
    price) pair per product; NaN for categories without products. What
    :meth:`AffinityModel.fit_price_bands` fits, for a catalogue gathered elsewhere (e.g. reduced
    across the partitions of an event lake).

    Examples
    --------
    >>> catalogue_price_cuts(np.array([0, 0, 0, 0]), np.array([4.0, 1.0, 3.0, 2.0]), 2).round(2).tolist()
    [[2.0, 3.0], [nan, nan]]
    """
    cuts = np.full((n_categories, 2), np.nan)
    if categories.shape[0] == 0:
        return cuts
    cat = np.asarray(categories, dtype=np.int64)
    price = np.asarray(prices, dtype=np.float64)
    order = np.lexsort((price, cat))
    cat, price = cat[order], price[order]
    start = np.flatnonzero(np.r_[True, cat[1:] != cat[:-1]])
    count = np.diff(np.r_[start, cat.shape[0]])
    for column, q in enumerate(quantiles):
        pos = q * (count - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, count - 1)
        frac = pos - lo
        cuts[cat[start], column] = price[start + lo] * (1 - frac) + price[start + hi] * frac
    return cuts


def top_affinities_from_totals(
    indptr: NDArray[np.int64],
    cols: NDArray[np.int64],
    decayed: NDArray[np.float64],
    value_totals: NDArray[np.float64],
    k: int,
    *,
    shrinkage: float,
    backend: str | None = "auto",
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    r"""Each CSR row's ``k`` highest shrunk lifts, the population totals :math:`\sum_u d_{uv}`
    given rather than summed from the rows.

    What :meth:`AffinityModel.top_affinities_all` computes (same formula, same top-k kernel and
    tie-breaking: lower column first) when the rows are only part of the population, e.g. one
    partition of a Dask job with ``value_totals`` reduced over all partitions. Rows hold
    ``decayed`` engagement :math:`d_{uv}` at columns ``cols`` (ascending within a row); returns
    codes (-1 padded) and affinities (NaN padded), shape ``(rows, k)``.

    Examples
    --------
    >>> from affinity_sdk.capture.events import Product, ProductViewed
    >>> p = [Product(product_id=f"p{i}", category=c, brand="b", price=1.0) for i, c in enumerate("xyx")]
    >>> pairs = [("a", 0), ("a", 1), ("b", 2)]
    >>> events = [ProductViewed(user_id=u, timestamp=0, product=p[i]) for u, i in pairs]
    >>> model = AffinityModel(backend="reference").ingest(EventBatch.from_events(events))
    >>> s = model.scores("category")
    >>> totals = np.bincount(s.cols, weights=s.decayed)
    >>> codes, lift = top_affinities_from_totals(s.indptr, s.cols, s.decayed, totals, 2, shrinkage=5.0)
    >>> bool((codes == model.top_affinities_all("category", 2).codes).all())
    True
    """
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    n_rows = indptr.shape[0] - 1
    totals = np.asarray(value_totals, dtype=np.float64)
    grand = totals.sum()
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    profile = np.bincount(rows, weights=decayed, minlength=n_rows)
    share = totals[cols] / grand if grand > 0 else np.zeros(cols.shape[0])
    expected = profile[rows] * share + shrinkage
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(expected > 0.0, (decayed + shrinkage) / expected, 1.0)
    codes = np.empty((n_rows, k), dtype=np.int64)
    values = np.empty((n_rows, k))
    _impl(resolve_backend(backend)).topk_segments(
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(cols, dtype=np.int64),
        np.ascontiguousarray(lift),
        int(k),
        codes,
        values,
    )
    return codes, values


# --- tables for the CLI -------------------------------------------------------------------------
def affinities_table(
    model: AffinityModel, dimension: Dimension, top: int = 3, now_ms: int | None = None
) -> dict[str, list[Any]]:
    """Long-format columns ``user_id, rank, value, affinity`` of every profile's top values.

    Profiles without product events are left out. For ``affinity affinities ... --out F``.

    Examples
    --------
    >>> affinities_table(AffinityModel(backend="reference"), "brand")
    {'user_id': [], 'rank': [], 'value': [], 'affinity': []}
    """
    result = model.top_affinities_all(dimension, top, now_ms)
    users, ranks = np.nonzero(result.codes >= 0)
    user_names = model.interners.users.names if model.interners is not None else ()
    codes = result.codes[users, ranks].tolist()
    return {
        "user_id": [user_names[u] for u in users.tolist()],
        "rank": (ranks + 1).tolist(),
        "value": [result.names[c] for c in codes],
        "affinity": result.affinity[users, ranks].tolist(),
    }


def lookalikes_table(
    model: AffinityModel, seed_user_ids: Iterable[str], n: int = 100, *, min_score: float = -1.0
) -> dict[str, list[Any]]:
    """Columns ``user_id, rank, score`` of the ``n`` best lookalikes scoring ``>= min_score``.

    Examples
    --------
    >>> lookalikes_table(AffinityModel(backend="reference"), ["x"], n=3)
    {'user_id': [], 'rank': [], 'score': []}
    """
    rows = [(u, s) for u, s in model.lookalikes(seed_user_ids, n) if s >= min_score]
    return {
        "user_id": [u for u, _ in rows],
        "rank": list(range(1, len(rows) + 1)),
        "score": [s for _, s in rows],
    }
