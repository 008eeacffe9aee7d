r"""Affinity: what each customer loves (category, brand, price band), discount sensitivity, lookalikes.

Product-level events (views, cart adds, wishlist adds, order lines) feed a time-decayed,
weighted engagement :math:`d_{uv}` per (profile ``u``, dimension value ``v``), kept exactly and
sparsely by the profile store's affinity view (:class:`~affinity_sdk.profile.affinity_view.AffinityView`:
forward decay, sorted ``u << 32 | v`` keys, per-category price cut points). :class:`AffinityModel`
answers the queries over a :class:`~affinity_sdk.profile.store.ProfileStore`, so **consent and
forget hold in every output**: a user who opted out (an ``opt_out`` call or a ``consent_changed``
event with ``granted=false``) or was forgotten appears in no score table, top list, audience,
discount class or lookalike list, is no lookalike seed, and their data is not used at all: the
population statistics (:math:`P_v`, the discount base rate, the behaviour standardisation) are
computed over visible users only.

**Affinity score** (a shrunk lift), at time ``now``:

.. math::

    d_{uv} = \sum_h A_{uvh}\, e^{-\lambda_h (now - L)},\quad D_u = \sum_v d_{uv},\quad
    P_v = \frac{\sum_{u\ \mathrm{visible}} d_{uv}}{\sum_{u\ \mathrm{visible}, v} d_{uv}},\quad
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
so the band of an ingested event never changes. They describe the catalogue, not a customer, so
a forget leaves them.

**Discount sensitivity**: how much more likely a customer buys with a discount or coupon than
without, against the population. With :math:`k_u` the decayed count of orders with a discount or
coupon (on the order or any line), :math:`n_u` all decayed orders, :math:`p = \sum k / \sum n` and
``m`` = ``discount_shrinkage`` pseudo-orders at the population rate,

.. math::

    r_u = \frac{k_u + m p}{n_u + m},\qquad
    \mathrm{sensitivity}_u = \frac{r_u / (1 - r_u)}{p / (1 - p)}

(the customer's discounted : full-price odds over the population's). High at or above
``discount_high``, Medium at or above ``discount_medium``, else Low; no orders is Low.

**Lookalikes** (:mod:`affinity_sdk.models.lookalikes`): each profile is a vector of blocks (per
dimension: the IDF-weighted shares :math:`s_{uv} / \sqrt{P_v}`; plus a standardised behaviour
block: event-type mix, activity level and discount sensitivity), each block L2-normalised;
non-seed profiles are ranked by cosine similarity to the centroid of the seeds' vectors.

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
>>> model.opt_out("ann")
>>> model.audience("brand", "acme", min_affinity=1.05), model.top_affinities("ann", "category")
([], [])
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import BackendName, resolve_backend
from affinity_sdk.config import AffinityConfig, AffinitySignal, ScoringConfig, default_config
from affinity_sdk.errors import ConfigError, StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.ingest.pipeline import Errors, IngestInput
from affinity_sdk.models import lookalikes as _lookalikes
from affinity_sdk.profile.affinity_view import (
    DIMENSIONS,
    PRICE_BANDS,
    VALUE_BITS,
    VALUE_MASK,
    AffinityView,
    Dimension,
    _impl,
    catalogue_price_cuts,
    price_cuts_of,
)
from affinity_sdk.profile.store import ProfileStore

__all__ = [
    "DIMENSIONS",
    "DISCOUNT_CLASSES",
    "PRICE_BANDS",
    "AffinityConfig",
    "AffinityModel",
    "AffinityScores",
    "AffinitySignal",
    "AffinityView",
    "Dimension",
    "DiscountSensitivity",
    "TopAffinities",
    "affinities_table",
    "catalogue_price_cuts",
    "lookalikes_table",
    "top_affinities_from_totals",
]

#: Discount-sensitivity class names by code (0, 1, 2).
DISCOUNT_CLASSES: Final[tuple[str, ...]] = ("Low", "Medium", "High")
_FORMAT_KIND: Final = "affinity_sdk.AffinityModel"
_INTERNERS: Final = ("users", "products", "categories", "brands", "campaigns")
Now = int | datetime | str | None


@functools.cache
def _base_config() -> ScoringConfig:
    return default_config()


def _scoring_config(affinity: AffinityConfig) -> ScoringConfig:
    """The built-in config with ``affinity`` as its ``[affinity]`` section (same fingerprint)."""
    return msgspec.structs.replace(_base_config(), affinity=affinity)


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AffinityScores:
    """Affinity of every stored (profile, value) pair of one dimension at ``now_ms``, as CSR.

    Profile ``u``'s entries are ``indptr[u]:indptr[u + 1]``: value codes ``cols``, decayed
    engagement ``decayed`` and the shrunk lift ``affinity`` (see the module docstring); pairs not
    stored have affinity :math:`\\kappa / (D_u P_v + \\kappa) \\le 1`. ``population_share[v]`` is
    :math:`P_v` and ``names[v]`` the value's name. Hidden profiles (opted out, forgotten) have no
    entries and take no part in :math:`P_v`.
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
    (NaN padded), both shape ``(n_profiles, k)``, descending; ``names[code]`` is the value name.
    Rows of hidden profiles are all padding."""

    dimension: Dimension
    codes: NDArray[np.int64]
    affinity: NDArray[np.float64]
    names: Sequence[str]


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


# --- the model ----------------------------------------------------------------------------------
class AffinityModel:
    """Affinity queries over the ``"affinity"`` view of a :class:`~affinity_sdk.profile.store.ProfileStore`.

    ``AffinityModel(config)`` keeps a private store with only the affinity view (no event-id
    window, no future-time screen) whose first batch's interners it shares, as before the store;
    :meth:`of` reads an existing store (e.g. a Scorer's: ``scorer.affinity``). Every output leaves
    out the users the store hides (opted out, forgotten); see the module docstring.

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

    store: ProfileStore
    view: AffinityView

    def __init__(self, config: AffinityConfig | None = None, *, backend: str | None = "auto") -> None:
        affinity = config if config is not None else AffinityConfig()
        store = ProfileStore(
            _scoring_config(affinity),
            views=("affinity",),
            backend=backend,
            dedupe_window=None,
            max_future=None,
        )
        self._attach(store, private=True)

    @classmethod
    def of(cls, store: ProfileStore) -> AffinityModel:
        """A model reading ``store``'s affinity view (``KeyError`` if the store keeps none)."""
        model = cls.__new__(cls)
        model._attach(store, private=False)
        return model

    def _attach(self, store: ProfileStore, *, private: bool) -> None:
        view = store.view("affinity")
        if not isinstance(view, AffinityView):
            raise TypeError(f"the store's affinity view is a {type(view).__name__}, not an AffinityView")
        self.store, self.view, self._private = store, view, private
        with store.lock:
            view.interners = store.interners  # the view's codes are the store's

    def __repr__(self) -> str:
        return (
            f"AffinityModel(profiles={self.n_profiles}, entries={self.view.entries()}, "
            f"backend={self.backend!r})"
        )

    # --- what the model reads ---------------------------------------------------------------
    @property
    def config(self) -> AffinityConfig:
        return self.view.config

    @property
    def backend(self) -> BackendName:
        return self.view.backend

    @property
    def n_profiles(self) -> int:
        """Profile codes in the store (hidden and retired ones included)."""
        return self.store.n_users

    @property
    def last_ms(self) -> int | None:
        """Newest event time folded into the store (ms): the default ``now`` of every query."""
        return self.store.latest_ms

    @property
    def landmark_ms(self) -> int | None:
        return self.view.landmark_ms

    @property
    def price_cuts_(self) -> NDArray[np.float64]:
        """Per category code: the (low|mid, mid|premium) price cut points; NaN until fitted."""
        return self.view.price_cuts_

    @price_cuts_.setter
    def price_cuts_(self, cuts: NDArray[np.float64]) -> None:
        cuts = np.array(cuts, dtype=np.float64)
        if cuts.ndim != 2 or cuts.shape[1] != 2:
            raise ValueError(f"price cuts must have shape (categories, 2) (got {cuts.shape})")
        with self.store.lock:
            self.view.price_cuts_ = cuts
            self.view.touch()

    @property
    def interners(self) -> Interners:
        """The store's interners (build batches with them to skip re-interning on ingest)."""
        return self.store.interners

    @interners.setter
    def interners(self, interners: Interners) -> None:
        with self.store.lock:
            if interners is self.store.interners:
                return
            if not self._can_share(interners):
                raise StateError(
                    "only a model's own store can take other interners, and only ones that extend "
                    "its names (ingest batches with any interners instead: they are matched by name)"
                )
            self._share(interners)

    def _can_share(self, interners: Interners) -> bool:
        """May the private store use ``interners`` (every store name kept at its code)?"""
        store = self.store
        if not self._private or len(store.suppression):
            return False
        for kind in _INTERNERS:
            ours, theirs = getattr(store.interners, kind), getattr(interners, kind)
            if len(ours) > len(theirs) or list(ours.names) != list(theirs.names[: len(ours)]):
                return False
        return True

    def _share(self, interners: Interners) -> None:
        self.store.interners = interners
        self.view.interners = interners
        self.store.grow(len(interners.users))

    # legacy handles on the state (benches and tests read them)
    @property
    def _tables(self) -> Any:
        return self.view.tables

    @property
    def _impl(self) -> Any:
        return self.view.impl

    @property
    def _cache(self) -> dict[tuple[Any, ...], Any]:
        return self.view.cache

    def _bands(self, category: NDArray[np.int64], price: NDArray[np.float64]) -> NDArray[np.int64]:
        return self.view.bands(category, price)

    # --- ingest, consent, forget, merge -------------------------------------------------------
    def ingest(
        self,
        data: IngestInput,
        *,
        format: Literal["ndjson", "json", "msgpack"] = "ndjson",
        errors: Errors = "raise",
    ) -> AffinityModel:
        """Take events through the store's pipeline (consent, forget, screening; see
        :meth:`ProfileStore.ingest <affinity_sdk.profile.store.ProfileStore.ingest>`); returns ``self``.

        A batch built with other interners is matched by name. A private model's first batch
        lends the store its interners (when they extend the store's names), so profile and value
        codes stay those of the batch.
        """
        with self.store.lock:
            store = self.store
            if (
                isinstance(data, EventBatch)
                and data.interners is not store.interners
                and store.n_users == 0
                and store.events_ingested == 0
                and self._can_share(data.interners)
            ):
                self._share(data.interners)
            store.ingest(data, format=format, errors=errors)
        return self

    def opt_out(self, user_id: str, *, at: datetime | str | int | None = None) -> None:
        """Revoke ``user_id``'s consent (:meth:`ProfileStore.opt_out
        <affinity_sdk.profile.store.ProfileStore.opt_out>`): they leave every output."""
        self.store.opt_out(user_id, at=at)

    def opt_in(self, user_id: str, *, at: datetime | str | int | None = None) -> None:
        """Grant ``user_id``'s consent again (a later decision than the one in force)."""
        self.store.opt_in(user_id, at=at)

    def forget(self, user_id: str, *, at: datetime | str | int | None = None) -> bool:
        """Erase ``user_id`` from the store (:meth:`ProfileStore.forget
        <affinity_sdk.profile.store.ProfileStore.forget>`); returns whether they had a profile."""
        return self.store.forget(user_id, at=at)

    def merge(self, other: AffinityModel) -> AffinityModel:
        """Add ``other``'s store into this one (:meth:`ProfileStore.merge
        <affinity_sdk.profile.store.ProfileStore.merge>`: exact, users and values matched by
        name, the later consent decision wins); returns ``self``.

        Examples
        --------
        >>> AffinityModel(backend="reference").merge(AffinityModel(backend="reference")).n_profiles
        0
        """
        if other.config != self.config:
            raise StateError("cannot merge affinity models built with different configs")
        self.store.merge(other.store)
        return self

    def rebase(self, landmark_ms: int) -> None:
        """Move the decay landmark to ``landmark_ms``, rescaling every accumulator (exact)."""
        with self.store.lock:
            self.view.rebase(landmark_ms)

    # --- price bands ------------------------------------------------------------------------
    def fit_price_bands(self, batch: EventBatch, *, refit: bool = True) -> AffinityModel:
        """Fit per-category price cut points from the catalogue in ``batch``'s item table.

        Each product counts once (its first listed price). With ``refit=False`` only categories
        without cut points are fitted. Bands of events already ingested do not change. Categories
        are matched by name (new ones are added to the store's interners).

        Examples
        --------
        >>> from affinity_sdk.capture.events import Product, ProductViewed
        >>> events = [ProductViewed(user_id="u", timestamp=0, product=Product(
        ...     product_id=f"p{i}", category="c", brand="b", price=float(i))) for i in range(10)]
        >>> model = AffinityModel(backend="reference").fit_price_bands(EventBatch.from_events(events))
        >>> model.price_cuts_.round(2).tolist()
        [[3.0, 6.0]]
        """
        with self.store.lock:
            cuts = price_cuts_of(batch, self.config.price_quantiles)
            categories = self.store.interners.categories
            if batch.interners.categories is not categories:
                codes = categories.intern_many(list(batch.interners.categories.names))
                ours = np.full((len(categories), 2), np.nan)
                ours[codes] = cuts
                cuts = ours
            self.view.set_price_cuts(cuts, refit=refit)
        return self

    # --- queries ----------------------------------------------------------------------------
    def _sync(self) -> NDArray[np.bool_]:
        """Grow the view to the store's profiles and drop cached results if visibility changed
        (the caller holds the lock); returns the visibility mask."""
        store, view = self.store, self.view
        view.interners = store.interners
        view.grow(store.n_users)
        mask = store.visible()
        cached = view.cache_mask
        if cached is None or cached.shape != mask.shape or not np.array_equal(cached, mask):
            view.cache.clear()
            view.cache_mask = mask
            view.cache_all_visible = bool(mask.all())
        return mask

    def _now(self, now_ms: Now) -> int:
        """``now_ms`` in epoch ms, default the newest event; earlier than it raises
        :class:`~affinity_sdk.profile.store.NowBeforeDataError`."""
        if isinstance(now_ms, np.integer):
            now_ms = int(now_ms)
        return self.store.now_ms(now_ms)

    def _code(self, user_id: str) -> int | None:
        """The profile code of a visible user, else None (after :meth:`_sync`)."""
        code = self.store.interners.users.lookup(user_id)
        visible = self.view.cache_mask
        if code is None or visible is None or code >= visible.shape[0] or not visible[code]:
            return None
        return code

    def _names(self, dimension: str) -> Sequence[str]:
        if dimension == "price_band":
            return PRICE_BANDS
        if dimension not in DIMENSIONS:
            raise ValueError(f"unknown dimension {dimension!r}; choose one of {', '.join(DIMENSIONS)}")
        interners = self.store.interners
        return (interners.categories if dimension == "category" else interners.brands).names

    def _csr(self, dimension: Dimension) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """The visible profiles' entries of ``dimension`` as CSR (after :meth:`_sync`)."""
        view = self.view
        n = view.n_profiles
        key = ("csr", dimension, n)
        if key not in view.cache:
            table = view.tables[dimension]
            table.compact(view.impl)
            keys, acc = table.keys, table.acc
            if not view.cache_all_visible:
                assert view.cache_mask is not None
                keep = view.cache_mask[keys >> VALUE_BITS]
                keys, acc = keys[keep], acc[keep]
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(keys >> VALUE_BITS, minlength=n), out=indptr[1:])
            view.cache[key] = (indptr, keys & VALUE_MASK, acc)
        result: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]] = view.cache[key]
        return result

    def scores(self, dimension: Dimension, now_ms: Now = None) -> AffinityScores:
        """Affinity of every stored (visible profile, value) pair of ``dimension`` at ``now_ms``.

        ``now_ms`` defaults to the newest event. Results are cached until the state or the
        store's consent changes.

        Examples
        --------
        >>> AffinityModel(backend="reference").scores("brand").affinity.shape
        (0,)
        """
        with self.store.lock:
            names = self._names(dimension)
            now = self._now(now_ms)
            self._sync()
            view = self.view
            key = ("scores", dimension, now, view.n_profiles)
            if key not in view.cache:
                indptr, cols, acc = self._csr(dimension)
                n = cols.shape[0]
                n_values = max(len(names), int(cols.max()) + 1 if n else 0)
                totals = np.empty(n_values)
                decayed = np.empty(n)
                lift = np.empty(n)
                kappa = float(self.config.shrinkage)
                factors = view.factors(view.group_lam, now)
                view.impl.lift_scores(indptr, cols, acc, factors, kappa, totals, decayed, lift)
                grand = totals.sum()
                share = totals / grand if grand > 0 else np.zeros_like(totals)
                view.cache[key] = AffinityScores(
                    dimension, now, indptr, cols, decayed, lift, share, names, kappa=kappa
                )
            result: AffinityScores = view.cache[key]
            return result

    def top_affinities(
        self, user_id: str, dimension: Dimension, k: int = 3, now_ms: Now = None
    ) -> list[tuple[str, float]]:
        """The ``k`` values of ``dimension`` that ``user_id`` loves most, with their affinity.

        An unknown or hidden (opted-out, forgotten) user, or one without product events, gets ``[]``.

        Examples
        --------
        >>> AffinityModel(backend="reference").top_affinities("nobody", "brand")
        []
        """
        with self.store.lock:
            s = self.scores(dimension, now_ms)
            code = self._code(user_id)
            if code is None or code >= s.n_profiles:
                return []
            lo, hi = int(s.indptr[code]), int(s.indptr[code + 1])
            seg = s.affinity[lo:hi]
            order = np.argsort(-seg, kind="stable")[:k]
            return [(s.names[int(s.cols[lo + j])], float(seg[j])) for j in order]

    def top_affinities_all(self, dimension: Dimension, k: int = 3, now_ms: Now = None) -> TopAffinities:
        """Every profile's ``k`` highest-affinity values at once (compiled, one pass over the
        table); hidden profiles get padding only.

        Examples
        --------
        >>> AffinityModel(backend="reference").top_affinities_all("category", k=2).codes.shape
        (0, 2)
        """
        if k < 0:
            raise ValueError(f"k must be >= 0 (got {k})")
        with self.store.lock:
            s = self.scores(dimension, now_ms)
            codes = np.empty((s.n_profiles, k), dtype=np.int64)
            values = np.empty((s.n_profiles, k))
            self.view.impl.topk_segments(s.indptr, s.cols, s.affinity, int(k), codes, values)
            return TopAffinities(dimension, codes, values, s.names)

    def _value_index(
        self, dimension: Dimension, n_values: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        key = ("by_value", dimension, n_values)
        cache = self.view.cache
        if key not in cache:
            _, cols, _ = self._csr(dimension)
            ptr = np.empty(n_values + 1, dtype=np.int64)
            order = np.empty(cols.shape[0], dtype=np.int64)
            self.view.impl.transpose_index(cols, ptr, order)
            cache[key] = (ptr, order)
        result: tuple[NDArray[np.int64], NDArray[np.int64]] = cache[key]
        return result

    def audience_codes(
        self, dimension: Dimension, value: str | int, min_affinity: float = 2.0, now_ms: Now = None
    ) -> NDArray[np.int64]:
        """Codes (ascending) of visible profiles whose affinity to ``value`` is at least ``min_affinity``.

        Uses a by-value index built once per state, so a query touches only that value's entries.

        Examples
        --------
        >>> AffinityModel(backend="reference").audience_codes("price_band", "premium").tolist()
        []
        """
        with self.store.lock:
            s = self.scores(dimension, now_ms)
            code = self._value_code(dimension, value)
            if code is None:
                return np.empty(0, dtype=np.int64)
            ptr, order = self._value_index(dimension, s.population_share.shape[0])
            if not 0 <= code < ptr.shape[0] - 1:
                return np.empty(0, dtype=np.int64)
            entries = order[ptr[code] : ptr[code + 1]]
            hits = entries[s.affinity[entries] >= min_affinity]
            # entries are in key order, i.e. by profile: the profile codes come out sorted
            return np.searchsorted(s.indptr, hits, side="right") - 1

    def audience(
        self, dimension: Dimension, value: str | int, min_affinity: float = 2.0, now_ms: Now = None
    ) -> list[str]:
        """Ids of visible users with affinity to ``value`` (a name, or a code) of at least ``min_affinity``.

        Examples
        --------
        >>> AffinityModel(backend="reference").audience("brand", "acme")
        []
        """
        with self.store.lock:
            codes = self.audience_codes(dimension, value, min_affinity, now_ms)
            names = self.store.interners.users.names
            return [names[c] for c in codes.tolist()]

    def _value_code(self, dimension: Dimension, value: str | int) -> int | None:
        if isinstance(value, int | np.integer):
            return int(value)
        if dimension == "price_band":
            return PRICE_BANDS.index(value) if value in PRICE_BANDS else None
        interners = self.store.interners
        return (interners.categories if dimension == "category" else interners.brands).lookup(value)

    # --- discount sensitivity ---------------------------------------------------------------
    def discount_sensitivity(self, now_ms: Now = None) -> DiscountSensitivity:
        """Per-profile discount sensitivity with shrinkage and its High / Medium / Low tier
        (hidden profiles: no orders, Low; the population rate is the visible profiles').

        Examples
        --------
        >>> AffinityModel(backend="reference").discount_sensitivity().population_rate
        0.0
        """
        with self.store.lock:
            now = self._now(now_ms)
            visible = self._sync()
            view = self.view
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
                view.cache[key] = DiscountSensitivity(orders, discounted, rate, sensitivity, tier, p)
            result: DiscountSensitivity = view.cache[key]
            return result

    def discount_class(self, user_id: str, now_ms: Now = None) -> str:
        """``"High"``, ``"Medium"`` or ``"Low"`` discount sensitivity of one user (Low if
        unknown or hidden).

        Examples
        --------
        >>> AffinityModel(backend="reference").discount_class("nobody")
        'Low'
        """
        with self.store.lock:
            tiers = self.discount_sensitivity(now_ms).tier
            code = self._code(user_id)
            if code is None or code >= tiers.shape[0]:
                return DISCOUNT_CLASSES[0]
            return DISCOUNT_CLASSES[int(tiers[code])]

    # --- lookalikes -------------------------------------------------------------------------
    def _seeds(self, seed_codes: Iterable[int]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """The visible seeds (sorted, unique) and the visibility mask; ``ValueError`` for codes
        outside the profiles (the caller holds the lock)."""
        visible = self._sync()
        n = self.view.n_profiles
        seeds = np.unique(np.asarray(list(seed_codes), dtype=np.int64))
        if seeds.shape[0] and (seeds[0] < 0 or seeds[-1] >= n):
            raise ValueError(f"seed profile codes must lie in 0 .. {n - 1}")
        return seeds[visible[seeds]], visible

    def lookalike_scores(
        self, seed_codes: Iterable[int], *, now_ms: Now = None, behaviour_weight: float = 0.5
    ) -> NDArray[np.float64]:
        """Cosine similarity of every profile to the seeds' centroid (see the module docstring);
        hidden seeds are ignored and hidden profiles score NaN.

        Examples
        --------
        >>> AffinityModel(backend="reference").lookalike_scores([]).shape
        (0,)
        """
        with self.store.lock:
            now = self._now(now_ms)
            seeds, visible = self._seeds(seed_codes)
            scores = _lookalikes.lookalike_scores(self, seeds, now, behaviour_weight)
            if not self.view.cache_all_visible:
                scores[~visible] = np.nan
            return scores

    def lookalikes(
        self,
        seed_user_ids: Iterable[str],
        n: int = 100,
        *,
        now_ms: Now = None,
        behaviour_weight: float = 0.5,
    ) -> list[tuple[str, float]]:
        """The ``n`` visible non-seed users most similar to the seeds, with their cosine similarity.

        Unknown and hidden seed ids are ignored. Cut at a threshold on the returned scores if needed.

        Examples
        --------
        >>> AffinityModel(backend="reference").lookalikes(["nobody"], n=5)
        []
        """
        with self.store.lock:
            self._sync()
            codes = [self._code(u) for u in seed_user_ids]
            seeds = [c for c in codes if c is not None]
            if not seeds:
                return []
            found, scores = self.lookalike_codes(seeds, n, now_ms=now_ms, behaviour_weight=behaviour_weight)
            names = self.store.interners.users.names
            return [(names[c], s) for c, s in zip(found.tolist(), scores.tolist(), strict=True)]

    def lookalike_codes(
        self,
        seed_codes: Iterable[int],
        n: int = 100,
        *,
        now_ms: Now = None,
        behaviour_weight: float = 0.5,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Codes and scores of the ``n`` most similar visible non-seed profiles, best first.

        Examples
        --------
        >>> codes, scores = AffinityModel(backend="reference").lookalike_codes([], 3)
        >>> codes.tolist(), scores.tolist()
        ([], [])
        """
        with self.store.lock:
            now = self._now(now_ms)
            seeds, visible = self._seeds(seed_codes)
            if seeds.shape[0] == 0:
                return np.empty(0, dtype=np.int64), np.empty(0)
            scores = _lookalikes.lookalike_scores(self, seeds, now, behaviour_weight)
            return _lookalikes.top_lookalikes(scores, seeds, visible, n)

    # --- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model's store (profiles, consent, forget suppression, affinity state, the
        interners) atomically with a checksum.

        Examples
        --------
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "aff.afs")
        >>> AffinityModel(backend="reference").save(path)
        >>> AffinityModel.load(path, backend="reference").n_profiles
        0
        """
        from affinity_sdk._persist import write_container

        header, arrays = self.store.to_container()
        write_container(path, _FORMAT_KIND, header, arrays)

    @classmethod
    def load(
        cls,
        path: str | Path,
        interners: Interners | None = None,
        *,
        backend: str | None = "auto",
        suppression_key: bytes | None = None,
    ) -> AffinityModel:
        """Read a model written by :meth:`save`; corrupt or foreign files raise :class:`StateError`.

        ``interners`` (optional) that extend the saved names are shared, as :meth:`ingest` shares
        a first batch's; otherwise batches are matched by name.
        """
        from affinity_sdk._persist import read_container

        header, arrays = read_container(path, _FORMAT_KIND)
        store = ProfileStore.from_container(
            path, header, arrays, backend=backend, suppression_key=suppression_key
        )
        if list(store.views) != ["affinity"]:
            raise StateError(f"{path}: not an affinity model (its store keeps {list(store.views)})")
        model = cls.of(store)
        model._private = True
        if interners is not None and model._can_share(interners):
            model._share(interners)
        return model

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """The affinity view's header and arrays (no users, consent or interners: :meth:`save`
        writes the whole store)."""
        with self.store.lock:
            self._sync()
            return self.view.to_arrays()

    @classmethod
    def from_arrays(
        cls,
        header: Mapping[str, Any],
        arrays: Mapping[str, NDArray[Any]],
        interners: Interners | None = None,
        *,
        backend: str | None = "auto",
    ) -> AffinityModel:
        """Rebuild a model from :meth:`to_arrays` output and the ``interners`` it was built with
        (every profile visible); raises :class:`StateError` if invalid."""
        try:
            config = AffinityConfig.from_dict(header["config"])
        except (KeyError, TypeError, ConfigError) as exc:
            raise StateError(f"affinity state is incomplete or foreign: {exc}") from None
        model = cls(config, backend=backend)
        if interners is not None:
            model._share(interners)
        model.view.interners = interners
        n = header.get("n_profiles")
        if not isinstance(n, int) or (interners is not None and n > len(interners.users)):
            raise StateError("affinity state holds more profiles than its interners")
        model.view.load_arrays(dict(header), dict(arrays), n)
        model.view.interners = model.store.interners
        if interners is None and n > 0:
            raise StateError(f"affinity state of {n} profiles needs the Interners it was built with")
        model.store.latest_ms = model.view.last_ms
        return model


# --- helpers ------------------------------------------------------------------------------------
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
    model: AffinityModel, dimension: Dimension, top: int = 3, now_ms: Now = None
) -> dict[str, list[Any]]:
    """Long-format columns ``user_id, rank, value, affinity`` of every visible profile's top values.

    Profiles without product events are left out. For ``affinity affinities ... --out F``.

    Examples
    --------
    >>> affinities_table(AffinityModel(backend="reference"), "brand")
    {'user_id': [], 'rank': [], 'value': [], 'affinity': []}
    """
    with model.store.lock:
        result = model.top_affinities_all(dimension, top, now_ms)
        user_names = model.store.interners.users.names
    users, ranks = np.nonzero(result.codes >= 0)
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
