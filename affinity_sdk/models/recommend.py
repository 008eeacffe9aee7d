r"""Product recommendations and similar products over the ``"products"`` view of a profile store.

Everything below is computed from the interaction rows of the profiles the store shows
(:meth:`~affinity_sdk.profile.store.ProfileStore.visible`), so an opted-out or forgotten user
gets nothing and **their events reach no one else's output either**: they count in no pair,
no popularity and no repeat-purchase share. The rows are exact and additive
(:mod:`affinity_sdk.profile.product_view`), so everything here is the same whether the events
came one at a time, in one batch, or in shards merged later.

**Co-occurrence** (per pair of products, over visible users; recomputed on the first query after
the state or the consent changed): :math:`B^{b}_{uj} = 1` if ``u`` bought ``j`` and
:math:`B^{e}_{uj} = 1` if ``u`` viewed, carted or bought it; :math:`C = B^\top B` (sparse,
compiled), :math:`n_j = C_{jj}`, ``N`` the users with at least one such row and
:math:`E_{ij} = n_i n_j / N` the co-occurrence expected under independence. The **lift** is
shrunk like the affinity lift (``κ`` = ``shrinkage`` pseudo co-occurrences padding observed and
expected alike, so a single shared buyer gives only :math:`1 + 1/\kappa`):

.. math::

    \mathrm{lift}_{ij} = \frac{C_{ij} + \kappa}{E_{ij} + \kappa},\qquad
    S_{ij} = w_b \max(\mathrm{lift}^{b}_{ij} - 1, 0) + w_e \max(\mathrm{lift}^{e}_{ij} - 1, 0)
    \quad (i \ne j,\ C_{ij} > 0)

(co-purchase weight :math:`w_b`, co-view weight :math:`w_e`). ``S`` is symmetric;
:meth:`Recommender.similar_products` ranks a product's row of it.

**Recommendation score** of product ``j`` for user ``u`` at ``now``:

.. math::

    s_{uj} = A_{uj}^{\beta}\,\Big(\frac{\sum_{i \in H_u} g_{ui} S_{ij}}{\sum_{i \in H_u} g_{ui}}
             + \rho\,\frac{b_{uj}}{\max_k b_{uk}} [j \in R_u]
             + \mu\,\frac{n^{b}_j}{\max_k n^{b}_k}\Big)

with :math:`g_{ui}` the user's decayed engagement with ``i`` (views, cart adds and purchases,
weighted and decayed as the affinity signals ``product_viewed``, ``product_added``,
``order_completed``), :math:`H_u` their ``max_history`` most engaged products,
:math:`A_{uj}` the geometric mean of the user's category, brand and price-band affinity
(:class:`~affinity_sdk.models.affinity.AffinityModel`; 1 when the store keeps no affinity view)
at the candidate's attributes, :math:`R_u` the user's repeat purchases (below), brought back by
their decayed purchases :math:`b_{uj}` over the user's largest (weight ``ρ``), and the
popularity term :math:`n^b_j` (visible buyers of ``j``) weighted by ``μ``. A user without
history scores popularity alone: the **popularity fallback**. Candidates are products some
visible user interacted with; a product ``u`` bought is left out unless it is a **repeat
purchase** for them: a repeat-purchase product of the population (at least
``min_repeat_buyers`` visible buyers, at least ``repeat_share`` of whom bought it in two or
more orders), or one ``u`` bought in two or more orders.

Examples
--------
>>> from affinity_sdk.capture.events import OrderCompleted, Product
>>> from affinity_sdk.profile.store import ProfileStore
>>> tea, cup, pot = (Product(product_id=p, category="kitchen", brand="b", price=9.0)
...                  for p in ("tea", "cup", "pot"))
>>> orders = [OrderCompleted(user_id=u, timestamp=1_767_225_600_000, order_id=u, revenue=18.0,
...                          products=basket) for u, basket in
...           [("ann", [tea, cup]), ("bob", [tea, cup]), ("cy", [pot]), ("dee", [tea])]]
>>> store = ProfileStore(views=("affinity", "products"))
>>> _ = store.ingest(orders)
>>> rec = Recommender(store)
>>> [p for p, _ in rec.recommend("dee", k=2)]
['cup', 'pot']
>>> [p for p, _ in rec.similar_products("tea", k=1)]
['cup']
>>> store.opt_out("dee")
>>> rec.recommend("dee")
[]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.errors import ConfigError
from affinity_sdk.profile.product_view import KINDS, ProductView
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.profile.suppression import NOT_SUPPRESSED

__all__ = ["Recommender"]

Now = datetime | str | int | None
#: Cells of the (users × products) score block held at once.
_BLOCK_CELLS: Final = 1 << 22
_BOUGHT: Final = len(KINDS) + 2  # the purchase count column
_AFFINITY_DIMENSIONS: Final = ("category", "brand", "price_band")


@dataclass(frozen=True, eq=False)
class _Population:
    """What the visible users' rows say about products (see the module docstring)."""

    similarity: Any  # scipy CSR (products × products), zero diagonal
    buyers: NDArray[np.float64]
    engaged: NDArray[np.float64]
    popularity: NDArray[np.float64]
    repeat: NDArray[np.bool_]
    users: NDArray[np.int64]
    products: NDArray[np.int64]
    acc: NDArray[np.float64]
    indptr: NDArray[np.int64]


class Recommender:
    """Recommendations and similar products from a store's ``"products"`` view.

    Parameters
    ----------
    store
        A :class:`~affinity_sdk.profile.store.ProfileStore` keeping the ``"products"`` view (and
        ideally ``"affinity"``: without it the affinity factor is 1).
    shrinkage
        ``κ``: pseudo co-occurrences padding the lift (larger: rare pairs count less).
    purchase_weight, view_weight
        :math:`w_b`, :math:`w_e`: weight of co-purchase and co-view lift in the similarity.
    popularity_weight
        ``μ``: weight of popularity beside the item-to-item score.
    repeat_weight
        ``ρ``: weight of the user's own repeat purchases (decayed purchases over their largest).
    affinity_weight
        ``β``: exponent of the affinity factor (0 ignores affinity).
    repeat_share, min_repeat_buyers
        What makes a repeat-purchase product (see the module docstring).
    max_history
        The user's most engaged products that seed the item-to-item score.
    """

    def __init__(
        self,
        store: ProfileStore,
        *,
        shrinkage: float = 5.0,
        purchase_weight: float = 1.0,
        view_weight: float = 0.5,
        popularity_weight: float = 1.0,
        repeat_weight: float = 1.0,
        affinity_weight: float = 1.0,
        repeat_share: float = 0.3,
        min_repeat_buyers: int = 3,
        max_history: int = 50,
    ) -> None:
        view = store.view("products")
        if not isinstance(view, ProductView):
            raise TypeError(f"the store's products view is a {type(view).__name__}, not a ProductView")
        for name, value in (
            ("shrinkage", shrinkage),
            ("purchase_weight", purchase_weight),
            ("view_weight", view_weight),
            ("popularity_weight", popularity_weight),
            ("repeat_weight", repeat_weight),
            ("affinity_weight", affinity_weight),
        ):
            if not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0 (got {value!r})")
        if shrinkage <= 0:
            raise ConfigError(f"shrinkage must be > 0 (got {shrinkage!r})")
        if not 0.0 <= repeat_share <= 1.0:
            raise ConfigError(f"repeat_share must lie in [0, 1] (got {repeat_share!r})")
        if min_repeat_buyers < 1 or max_history < 1:
            raise ConfigError("min_repeat_buyers and max_history must be >= 1")
        self.store, self.view = store, view
        self.shrinkage, self.purchase_weight, self.view_weight = shrinkage, purchase_weight, view_weight
        self.popularity_weight, self.affinity_weight = popularity_weight, affinity_weight
        self.repeat_weight = repeat_weight
        self.repeat_share, self.min_repeat_buyers, self.max_history = (
            repeat_share,
            min_repeat_buyers,
            max_history,
        )
        self._cached: tuple[int, bytes, _Population] | None = None

    def __repr__(self) -> str:
        return f"Recommender(store={self.store!r})"

    # --- the population side ----------------------------------------------------------------
    def _population(self) -> _Population:
        """The visible users' co-occurrence, popularity and repeat flags (cached per state and
        consent; the caller holds the store's lock)."""
        store, view = self.store, self.view
        view.interners = store.interners
        mask = store.visible()
        key = mask.tobytes()
        if self._cached is not None and self._cached[0] == view.version and self._cached[1] == key:
            return self._cached[2]
        from scipy import sparse

        users, products, acc = view.rows()
        keep = mask[users]  # the store has a flag for every profile code the view holds
        users, products, acc = users[keep], products[keep], acc[keep]
        n_users = max(store.n_users, 1)
        n_products = max(len(store.interners.products), view.n_products)
        bought = acc[:, _BOUGHT] > 0
        sims = []
        counts = []
        for rows in (bought, np.ones(users.shape[0], dtype=np.bool_)):
            b = sparse.csr_matrix(
                (np.ones(int(rows.sum())), (users[rows], products[rows])), shape=(n_users, n_products)
            )
            co = (b.T @ b).tocoo()
            n_j = np.asarray(b.sum(axis=0)).ravel()
            n_all = float(np.unique(users[rows]).shape[0])
            off = co.row != co.col
            i, j, c = co.row[off], co.col[off], co.data[off]
            expected = n_j[i] * n_j[j] / max(n_all, 1.0)
            lift = (c + self.shrinkage) / (expected + self.shrinkage)
            sims.append((i, j, np.maximum(lift - 1.0, 0.0)))
            counts.append(n_j)
        (bi, bj, bs), (ei, ej, es) = sims
        similarity = sparse.csr_matrix(
            (
                np.concatenate([self.purchase_weight * bs, self.view_weight * es]),
                (np.concatenate([bi, ei]), np.concatenate([bj, ej])),
            ),
            shape=(n_products, n_products),
        )
        similarity.sum_duplicates()
        similarity.eliminate_zeros()
        buyers, engaged = counts
        repeaters = np.bincount(products[acc[:, _BOUGHT] >= 2], minlength=n_products).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(buyers > 0, repeaters / buyers, 0.0)
        repeat = (buyers >= self.min_repeat_buyers) & (share >= self.repeat_share)
        top = buyers.max(initial=0.0)
        popularity = buyers / top if top > 0 else np.zeros(n_products)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
        population = _Population(
            similarity, buyers, engaged, popularity, repeat, users, products, acc, indptr
        )
        self._cached = (view.version, key, population)
        return population

    def repeat_products(self) -> list[str]:
        """Ids of the repeat-purchase products (see the module docstring).

        Examples
        --------
        >>> Recommender(ProfileStore(views=("products",))).repeat_products()
        []
        """
        with self.store.lock:
            repeat = self._population().repeat
            names = self.store.interners.products.names
            return [names[j] for j in np.flatnonzero(repeat).tolist()]

    def popular(self, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` products with the most visible buyers (ties: more engaged users, then
        first interned), with their buyer counts: the popularity baseline.

        Examples
        --------
        >>> Recommender(ProfileStore(views=("products",))).popular()
        []
        """
        with self.store.lock:
            pop = self._population()
            order = _popularity_order(pop)[:k]
            names = self.store.interners.products.names
            return [(names[j], float(pop.buyers[j])) for j in order.tolist()]

    # --- queries ----------------------------------------------------------------------------
    def similar_products(self, product_id: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` products most similar to ``product_id`` (largest :math:`S_{ij}`, ties by
        code), with their similarity; ``[]`` for an unknown product or one no visible user touched.

        Examples
        --------
        >>> Recommender(ProfileStore(views=("products",))).similar_products("nothing")
        []
        """
        _check_k(k)
        with self.store.lock:
            code = self.store.interners.products.lookup(product_id)
            pop = self._population()
            if code is None or code >= pop.similarity.shape[0]:
                return []
            row = pop.similarity.getrow(code)
            cols, values = row.indices.astype(np.int64), row.data
            order = np.lexsort((cols, -values))[:k]
            names = self.store.interners.products.names
            return [(names[int(cols[i])], float(values[i])) for i in order]

    def recommend(self, user_id: str, k: int = 10, now: Now = None) -> list[tuple[str, float]]:
        """The ``k`` best products for ``user_id`` at ``now`` (default: the newest event), with
        their score. A user the store has never seen gets the popular products; an opted-out or
        forgotten one gets ``[]``.

        Examples
        --------
        >>> Recommender(ProfileStore(views=("products",))).recommend("ann")
        []
        """
        _check_k(k)
        with self.store.lock:
            store = self.store
            now_ms = store.now_ms(now)
            code = store.interners.users.lookup(user_id)
            if code is None:
                if len(store.suppression) and store.suppression.forget_ms_of([user_id])[0] != NOT_SUPPRESSED:
                    return []
                pop = self._population()
                order = _popularity_order(pop)
                order = order[pop.buyers[order] > 0][:k]
                names = store.interners.products.names
                return [(names[j], float(self.popularity_weight * pop.popularity[j])) for j in order.tolist()]
            if not store.is_visible(code):
                return []
            codes, scores = self._top_block(np.array([code], dtype=np.int64), k, now_ms)
            names = store.interners.products.names
            return [(names[int(j)], float(s)) for j, s in zip(codes[0], scores[0], strict=True) if j >= 0]

    def recommend_all(self, k: int = 10, now: Now = None) -> dict[str, list[Any]]:
        """Every visible user's top ``k`` as columns ``user_id, rank, product_id, score`` (rank
        1 is best), the table ``affinity recommend`` writes; equal to :meth:`recommend` per user.

        Examples
        --------
        >>> Recommender(ProfileStore(views=("products",))).recommend_all(k=3)["product_id"]
        []
        """
        _check_k(k)
        columns: dict[str, list[Any]] = {"user_id": [], "rank": [], "product_id": [], "score": []}
        with self.store.lock:
            store = self.store
            now_ms = store.now_ms(now)
            visible = np.flatnonzero(store.visible())
            n_products = max(len(store.interners.products), self.view.n_products, 1)
            step = max(1, _BLOCK_CELLS // n_products)
            users, products = store.interners.users.names, store.interners.products.names
            for start in range(0, visible.shape[0], step):
                block = visible[start : start + step]
                codes, scores = self._top_block(block, k, now_ms)
                for row, user in enumerate(block.tolist()):
                    ok = codes[row] >= 0
                    n = int(ok.sum())
                    columns["user_id"] += [users[user]] * n
                    columns["rank"] += list(range(1, n + 1))
                    columns["product_id"] += [products[int(j)] for j in codes[row][ok]]
                    columns["score"] += scores[row][ok].tolist()
        return columns

    # --- scoring a block of users -----------------------------------------------------------
    def _top_block(
        self, codes: NDArray[np.int64], k: int, now_ms: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Top ``k`` product codes (-1 padded) and scores of visible profiles ``codes``."""
        pop = self._population()
        scores = self._score_block(pop, codes, now_ms)
        codes_out = np.full((codes.shape[0], k), -1, dtype=np.int64)
        scores_out = np.full((codes.shape[0], k), np.nan)
        n_products = scores.shape[1]
        tie = np.arange(n_products)
        for row in range(codes.shape[0]):
            s = scores[row]
            ok = np.flatnonzero(s > 0)
            order = ok[np.lexsort((tie[ok], -s[ok]))][:k]
            codes_out[row, : order.shape[0]] = order
            scores_out[row, : order.shape[0]] = s[order]
        return codes_out, scores_out

    def _score_block(self, pop: _Population, codes: NDArray[np.int64], now_ms: int) -> NDArray[np.float64]:
        """:math:`s_{uj}` for profiles ``codes`` × every product; 0 where ``j`` is no candidate."""
        from scipy import sparse

        view = self.view
        n_products = pop.similarity.shape[0]
        # the block's rows: engagement g_ui, truncated to each user's max_history best
        rows, at, starts = _segments(pop.indptr, codes)
        factors = view.factors(now_ms)[: len(KINDS)]
        acc = pop.acc[at]
        g = acc[:, : len(KINDS)] @ (factors * view.kind_weights)
        products = pop.products[at]
        order = np.lexsort((products, -g, rows))
        rank = np.arange(order.shape[0]) - starts[rows]
        seed = order[rank < self.max_history]
        history = sparse.csr_matrix(
            (g[seed], (rows[seed], products[seed])), shape=(codes.shape[0], n_products)
        )
        totals = np.asarray(history.sum(axis=1)).ravel()
        item = np.asarray((history @ pop.similarity).todense())
        with np.errstate(invalid="ignore", divide="ignore"):
            item = np.where(totals[:, None] > 0, item / totals[:, None], 0.0)
        scores = item + self.popularity_weight * pop.popularity[None, :]
        # the user's repeat purchases: population repeat products and their own (2+ orders)
        n_bought = acc[:, _BOUGHT]
        repeat = pop.repeat[products] | (n_bought >= 2)
        recent = acc[:, KINDS.index("bought")] * factors[KINDS.index("bought")]
        top = np.zeros(codes.shape[0])
        np.maximum.at(top, rows, recent)
        again = np.flatnonzero((n_bought > 0) & repeat & (top[rows] > 0))
        # (row, product) pairs are unique: a plain fancy-index add is exact
        scores[rows[again], products[again]] += self.repeat_weight * recent[again] / top[rows[again]]
        if self.affinity_weight > 0 and "affinity" in self.store.views:
            scores *= self._affinity_block(codes, now_ms, n_products) ** self.affinity_weight
        scores[:, pop.engaged == 0] = 0.0
        owned = (n_bought > 0) & ~repeat
        scores[rows[owned], products[owned]] = 0.0
        return scores

    def _affinity_block(self, codes: NDArray[np.int64], now_ms: int, n_products: int) -> NDArray[np.float64]:
        """Geometric mean of the users' category, brand and price-band affinity at each product."""
        from affinity_sdk.models.affinity import AffinityModel

        model = AffinityModel.of(self.store)
        view = self.view
        category = np.full(n_products, -1, dtype=np.int64)
        brand = np.full(n_products, -1, dtype=np.int64)
        price = np.full(n_products, np.nan)
        m = min(n_products, view.n_products)
        category[:m], brand[:m], price[:m] = view.category[:m], view.brand[:m], view.price[:m]
        values = {"category": category, "brand": brand, "price_band": model.view.bands(category, price)}
        log_total = np.zeros((codes.shape[0], n_products))
        for dim in _AFFINITY_DIMENSIONS:
            s = model.scores(dim, now_ms)
            n_values = max(s.population_share.shape[0], int(values[dim].max(initial=-1)) + 1, 1)
            share = np.zeros(n_values)
            share[: s.population_share.shape[0]] = s.population_share
            rows, at, _ = _segments(s.indptr, codes)
            totals = np.bincount(rows, weights=s.decayed[at], minlength=codes.shape[0])
            expected = totals[:, None] * share[None, :] + s.kappa
            dense = np.divide(s.kappa, expected, out=np.ones_like(expected), where=expected > 0)
            dense[rows, s.cols[at]] = s.affinity[at]
            code = values[dim]
            known = code >= 0
            log_total[:, known] += np.log(dense[:, code[known]])
        result: NDArray[np.float64] = np.exp(log_total / len(_AFFINITY_DIMENSIONS))
        return result


def _segments(
    indptr: NDArray[np.int64], codes: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """The CSR entries of rows ``codes`` (rows past the matrix are empty): per entry its
    position in ``codes`` and in the matrix, and per code where its entries start in the result."""
    inside = codes < indptr.shape[0] - 1
    safe = np.where(inside, codes, 0)
    lo = np.where(inside, indptr[safe], 0)
    lengths = np.where(inside, indptr[safe + 1], 0) - lo
    starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    rows = np.repeat(np.arange(codes.shape[0], dtype=np.int64), lengths)
    at = np.repeat(lo - starts, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
    return rows, at, starts


def _popularity_order(pop: _Population) -> NDArray[np.int64]:
    """Products some visible user touched, most buyers first (then most engaged, then code)."""
    touched = np.flatnonzero(pop.engaged > 0)
    order: NDArray[np.int64] = touched[np.lexsort((touched, -pop.engaged[touched], -pop.buyers[touched]))]
    return order


def _check_k(k: int) -> None:
    if k < 0:
        raise ConfigError(f"k must be >= 0 (got {k})")
