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

**Price band** (:mod:`affinity_sdk.profile.price_bands`): per category, cut points at the
``price_quantiles`` (default 1/3, 2/3) of the catalogue's product prices; a line is ``low`` below
the first, ``premium`` at or above the second (``mid`` between), so "premium" is relative to the
category. Cut points are fitted per category the first time it is seen (or explicitly with
:meth:`AffinityModel.fit_price_bands`) and then kept, so the band of an ingested event never
changes. They describe the catalogue, not a customer, so a forget leaves them.

**Discount sensitivity** (:mod:`affinity_sdk.models.discount_sensitivity`): how much more likely
a customer buys with a discount or coupon than without, against the population. With :math:`k_u`
the decayed count of orders with a discount or coupon (on the order or any line), :math:`n_u` all
decayed orders, :math:`p = \sum k / \sum n` and ``m`` = ``discount_shrinkage`` pseudo-orders at
the population rate,

.. math::

    r_u = \frac{k_u + m p}{n_u + m},\qquad
    \mathrm{sensitivity}_u = \frac{r_u / (1 - r_u)}{p / (1 - p)}

(the customer's discounted : full-price odds over the population's). High at or above
``discount_high``, Medium at or above ``discount_medium``, else Low; no orders is Low.

**Lookalikes** (:mod:`affinity_sdk.models.lookalikes`): each profile is a vector of blocks (per
dimension: the IDF-weighted shares :math:`s_{uv} / \sqrt{P_v}`; plus a standardised behaviour
block: event-type mix, activity level and discount sensitivity), each block L2-normalised;
non-seed profiles are ranked by cosine similarity to the centroid of the seeds' vectors.

The model's store side (ingest, consent, forget, merge, price-band fitting, save and load) is
:class:`~affinity_sdk.models.affinity_base.AffinityModelBase`; results as tables (CLI output, top
values from totals reduced elsewhere) are in :mod:`affinity_sdk.models.affinity_tables`.

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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.config import AffinityConfig, AffinitySignal
from affinity_sdk.models import lookalikes as _lookalikes
from affinity_sdk.models.affinity_base import AffinityModelBase, Now
from affinity_sdk.models.affinity_tables import affinities_table, lookalikes_table, top_affinities_from_totals
from affinity_sdk.models.discount_sensitivity import (
    DISCOUNT_CLASSES,
    DiscountSensitivity,
    discount_sensitivity_of,
)
from affinity_sdk.profile.affinity_view import (
    DIMENSIONS,
    PRICE_BANDS,
    VALUE_BITS,
    VALUE_MASK,
    AffinityView,
    Dimension,
    catalogue_price_cuts,
)
from affinity_sdk.profile.affinity_view import _impl as _impl  # re-exported: tests run kernels by backend

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


# --- the model ----------------------------------------------------------------------------------
class AffinityModel(AffinityModelBase):
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

    # --- queries ----------------------------------------------------------------------------
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
            return discount_sensitivity_of(self.view, visible, now)

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
