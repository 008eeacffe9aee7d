r"""The products view of the profile store: per (profile, product) decayed and counted interactions,
and the catalogue facts (category, brand, price) the product lines carried.

This module keeps the *state* and implements the store's
:class:`~affinity_sdk.profile.views.View` protocol; the queries (co-purchase and co-view lift,
popularity, repeat-purchase products, recommendations, similar products) are
:class:`~affinity_sdk.models.recommend.Recommender`'s, whose docstring has the formulas.

- **interactions**: a :class:`~affinity_sdk.profile.sparse_table.SparseTable` keyed
  ``u << 32 | p`` (profile ``u``, product code ``p`` of the store's interners) with six columns
  (:data:`COLUMNS`): forward-decay accumulators of views, cart adds (cart or wishlist) and
  purchases (order lines), and the plain counts of each. An event of kind ``k`` at ``t`` adds
  :math:`e^{\lambda_k (t - L)}` to its decayed column and 1 to its count, so folding is adding
  (order does not matter), shards merge by addition and a replayed copy taken back by
  :meth:`~ProductView.unfold` leaves exactly what one copy left. The half-lives are the
  ``[affinity]`` ones of ``product_viewed``, ``product_added`` and ``order_completed``.
- **pair counts are not stored**: co-purchase and co-view counts between products are computed
  at query time from the interaction rows of the profiles the store shows (a sparse
  :math:`B^\top B`, compiled in scipy). So a forget (which erases the profile's rows) or an
  opt-out (which hides them) removes the user's contribution to every pair count at once, and
  merging shards that both saw a user is exact (their rows add, and the pairs are formed from
  the merged row), which stored per-shard pair counts would not be.
- **catalogue**: per product code, the category code, brand code and price of the line with
  the latest timestamp (ties: the higher price, then the higher category and brand codes), so
  the result does not depend on event order. They describe the product, not a customer, so a
  forget keeps them for products other profiles still hold (like the affinity view's price cut
  points) and clears them for products only the erased profiles touched.

Examples
--------
>>> from affinity_sdk.capture.events import Product, ProductViewed, OrderCompleted
>>> from affinity_sdk.ingest.batch import EventBatch
>>> shoe = Product(product_id="p1", category="shoes", brand="acme", price=80.0)
>>> view = ProductView(backend="reference")
>>> view.fold(EventBatch.from_events([
...     ProductViewed(user_id="ann", timestamp=0, product=shoe),
...     OrderCompleted(user_id="ann", timestamp=0, order_id="o1", revenue=80.0, products=[shoe]),
... ]))
2
>>> view.counts().tolist()
[[1.0, 0.0, 1.0]]
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import BackendName, resolve_backend
from affinity_sdk._units import parse_duration
from affinity_sdk.capture.events import EVENT_TYPE_CODES
from affinity_sdk.config import AffinityConfig
from affinity_sdk.errors import StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.kernels import decay_factors
from affinity_sdk.profile.affinity_view import _impl
from affinity_sdk.profile.decay import lam_per_ms, landmark_for
from affinity_sdk.profile.sparse_table import VALUE_BITS, VALUE_MASK, SparseTable, profile_mask

__all__ = ["COLUMNS", "KINDS", "ProductView"]

#: The interaction kinds, in column order.
KINDS: Final = ("viewed", "carted", "bought")
#: The table's columns: decayed accumulators of each kind, then their plain counts.
COLUMNS: Final = ("viewed", "carted", "bought", "n_viewed", "n_carted", "n_bought")
#: The ``[affinity]`` signal whose half-life and weight each kind takes.
KIND_SIGNALS: Final = ("product_viewed", "product_added", "order_completed")
_KIND_OF_TYPE: Final = {
    EVENT_TYPE_CODES["product_viewed"]: 0,
    EVENT_TYPE_CODES["product_added"]: 1,
    EVENT_TYPE_CODES["product_added_to_wishlist"]: 1,
    EVENT_TYPE_CODES["order_completed"]: 2,
}
_VIEW_FORMAT: Final = 1
_NO_TIME: Final = np.iinfo(np.int64).min


def _kind_signal(config: AffinityConfig, name: str) -> tuple[float, float]:
    """(half-life in seconds, weight) of ``name`` in ``config``, else in the built-in default."""
    signal = config.signals.get(name) or AffinityConfig().signals[name]
    return parse_duration(signal.half_life), float(signal.weight)


class ProductView:
    """Per (profile, product) interactions and the catalogue, exact and mergeable (a store view).

    Parameters
    ----------
    config
        The ``[affinity]`` configuration: the half-lives (and, for the recommender, the weights)
        of ``product_viewed``, ``product_added`` and ``order_completed`` (built-in default when
        a signal or the config is missing).
    backend
        ``"auto"`` (fastest available), ``"cpp"``, ``"numba"`` or ``"reference"``: the kernels
        that sort and merge the table's runs.
    interners
        The store's interners (product, category and brand codes are theirs); a view that has
        none takes the first folded batch's.
    """

    name = "products"

    def __init__(
        self,
        config: AffinityConfig | None = None,
        *,
        backend: str | None = "auto",
        interners: Interners | None = None,
    ) -> None:
        self.config = config if config is not None else AffinityConfig()
        self.backend: BackendName = resolve_backend(backend)
        self.impl: Any = _impl(self.backend)
        self.interners = interners
        kinds = [_kind_signal(self.config, name) for name in KIND_SIGNALS]
        self.half_lives_s = tuple(h for h, _ in kinds)
        #: Weight of each kind in a profile's engagement with a product (the affinity weights).
        self.kind_weights = np.array([w for _, w in kinds])
        # counts never decay: rate 0, factor 1 on every rebase
        self.lam = np.concatenate([lam_per_ms(self.half_lives_s), np.zeros(len(KINDS))])
        self._kind = np.full(256, -1, dtype=np.int64)
        for code, kind in _KIND_OF_TYPE.items():
            self._kind[code] = kind
        self.table = SparseTable(len(COLUMNS))
        self.landmark_ms: int | None = None
        self.last_ms: int | None = None
        self.n_profiles = 0
        #: Per product code: category code, brand code (-1 unknown), price (NaN) and the
        #: timestamp of the line they come from.
        self.category = np.empty(0, dtype=np.int64)
        self.brand = np.empty(0, dtype=np.int64)
        self.price = np.empty(0, dtype=np.float64)
        self.seen_ms = np.empty(0, dtype=np.int64)
        #: Goes up on every change of the state (query caches compare it).
        self.version = 0

    def __repr__(self) -> str:
        return (
            f"ProductView(profiles={self.n_profiles}, entries={self.entries()}, "
            f"products={self.n_products}, backend={self.backend!r})"
        )

    def entries(self) -> int:
        """Stored (profile, product) pairs (pending runs counted as they are)."""
        return self.table.n_entries

    @property
    def n_products(self) -> int:
        """Product codes the catalogue has room for."""
        return int(self.category.shape[0])

    def touch(self) -> None:
        self.version += 1

    def rows(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """Every stored entry, sorted: profile codes, product codes and the :data:`COLUMNS` rows."""
        self.table.compact(self.impl)
        keys = self.table.keys
        return keys >> VALUE_BITS, keys & VALUE_MASK, self.table.acc

    def counts(self) -> NDArray[np.float64]:
        """The plain counts (views, cart adds, purchases) of every stored entry, as :meth:`rows`."""
        return self.rows()[2][:, len(KINDS) :]

    def factors(self, now_ms: int) -> NDArray[np.float64]:
        """Decay factor of each of :data:`COLUMNS` from the landmark to ``now_ms`` (1 for counts)."""
        if self.landmark_ms is None:
            return np.ones_like(self.lam)
        factors = decay_factors(self.lam, now_ms - self.landmark_ms)
        if not np.all(np.isfinite(factors)):
            raise ValueError(
                f"now={now_ms} ms is too far before the decay landmark {self.landmark_ms} ms "
                "to evaluate (the decay factor overflows float64)"
            )
        return factors

    # --- View protocol: grow / fold / unfold ----------------------------------------------------
    def grow(self, n_profiles: int) -> None:
        """Make room for profile codes below ``n_profiles`` (rows are sparse: nothing to allocate)."""
        self.n_profiles = max(self.n_profiles, n_profiles)

    def _adopt(self, interners: Interners) -> None:
        if self.interners is None:
            self.interners = interners
        elif interners is not self.interners:
            raise StateError(
                "this batch was interned with other Interners than the products view's; "
                "fold batches in the store's interners"
            )

    def _lines(self, batch: EventBatch) -> NDArray[np.int64]:
        """Item rows of the batch the view uses: a known product, a kind it keeps."""
        kind = self._kind[batch.event_type[batch.item_event]]
        return np.flatnonzero((kind >= 0) & (batch.item_product >= 0))

    def _runs(
        self, batch: EventBatch, lines: NDArray[np.int64], landmark: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        rows = batch.item_event[lines]
        kind = self._kind[batch.event_type[rows]]
        keys = (batch.user[rows].astype(np.int64) << VALUE_BITS) | batch.item_product[lines].astype(np.int64)
        contrib = np.zeros((lines.shape[0], len(COLUMNS)))
        at = np.arange(lines.shape[0])
        dt = (batch.ts_ms[rows] - landmark).astype(np.float64)
        contrib[at, kind] = np.exp(self.lam[kind] * dt)
        contrib[at, len(KINDS) + kind] = 1.0
        return keys, contrib

    def fold(self, batch: EventBatch) -> int:
        """Fold a batch (codes in :attr:`interners`); returns how many events it used."""
        if len(batch) == 0:
            return 0
        lines = self._lines(batch)
        if lines.shape[0] == 0:
            return 0
        self._adopt(batch.interners)
        self.grow(int(batch.user.max()) + 1)
        ts = batch.ts_ms[batch.item_event[lines]]
        newest = int(ts.max())
        target = landmark_for(self.landmark_ms, newest, float(self.lam.max()))
        if target is not None:
            self.rebase(target)
        self.last_ms = newest if self.last_ms is None else max(self.last_ms, newest)
        assert self.landmark_ms is not None
        self.table.add_unsorted(*self._runs(batch, lines, self.landmark_ms), self.impl)
        self._update_catalogue(
            batch.item_product[lines].astype(np.int64),
            batch.item_category[lines].astype(np.int64),
            batch.item_brand[lines].astype(np.int64),
            batch.item_price[lines].astype(np.float64),
            ts.astype(np.int64),
        )
        self.touch()
        used = np.zeros(len(batch), dtype=np.bool_)
        used[batch.item_event[lines]] = True
        return int(np.count_nonzero(used))

    def unfold(self, batch: EventBatch) -> None:
        """Take back events :meth:`fold` folded before (a copy both merged shards folded): each
        entry goes down by what they added; an entry left with no count is dropped. The
        catalogue stays (the copy carried the same facts)."""
        if len(batch) == 0 or self.landmark_ms is None:
            return
        lines = self._lines(batch)
        if lines.shape[0] == 0:
            return
        self._adopt(batch.interners)
        self.table.subtract(*self._runs(batch, lines, self.landmark_ms), self.impl)
        self.touch()

    def _update_catalogue(
        self,
        product: NDArray[np.int64],
        category: NDArray[np.int64],
        brand: NDArray[np.int64],
        price: NDArray[np.float64],
        ts: NDArray[np.int64],
    ) -> None:
        """Per product, keep the facts of the greatest (timestamp, price, category, brand)."""
        self._grow_catalogue(int(product.max()) + 1)
        # only lines at their product's latest time can win: a cheap pass before the sort
        latest = np.full(self.n_products, _NO_TIME, dtype=np.int64)
        np.maximum.at(latest, product, ts)
        top = np.flatnonzero(ts == latest[product])
        product, category, brand, price, ts = product[top], category[top], brand[top], price[top], ts[top]
        # the stored facts join the candidates, so the rule is one max over everything seen
        known = np.flatnonzero(latest != _NO_TIME)
        product = np.concatenate([known, product])
        category = np.concatenate([self.category[known], category])
        brand = np.concatenate([self.brand[known], brand])
        price = np.concatenate([self.price[known], price])
        ts = np.concatenate([self.seen_ms[known], ts])
        order = np.lexsort((brand, category, np.nan_to_num(price, nan=-np.inf), ts, product))
        last = order[np.r_[product[order][1:] != product[order][:-1], True]]
        chosen = product[last]
        self.category[chosen] = category[last]
        self.brand[chosen] = brand[last]
        self.price[chosen] = price[last]
        self.seen_ms[chosen] = ts[last]

    def _grow_catalogue(self, n_products: int) -> None:
        extra = n_products - self.n_products
        if extra <= 0:
            return
        self.category = np.concatenate([self.category, np.full(extra, -1, dtype=np.int64)])
        self.brand = np.concatenate([self.brand, np.full(extra, -1, dtype=np.int64)])
        self.price = np.concatenate([self.price, np.full(extra, np.nan)])
        self.seen_ms = np.concatenate([self.seen_ms, np.full(extra, _NO_TIME, dtype=np.int64)])

    # --- decay landmark -------------------------------------------------------------------------
    def rebase(self, landmark_ms: int) -> None:
        """Move the decay landmark to ``landmark_ms``, rescaling the decayed columns (exact)."""
        if self.landmark_ms is not None:
            delta = int(landmark_ms) - self.landmark_ms
            if delta != 0:
                self.table.scale(decay_factors(self.lam, delta))
        self.landmark_ms = int(landmark_ms)
        self.touch()

    # --- View protocol: erase / merge -----------------------------------------------------------
    def erase(self, codes: NDArray[np.int64]) -> None:
        """Remove every entry of profiles ``codes`` (their part of every pair count goes with them)."""
        gone = profile_mask(codes, self.n_profiles)
        if gone is None:
            return
        dropped = self.table.drop_profiles(gone, self.impl)
        if dropped.shape[0]:
            touched = np.unique(dropped & VALUE_MASK)
            # a product no remaining profile touched leaves no trace of the erased ones
            orphan = touched[~np.isin(touched, self.table.keys & VALUE_MASK)]
            self.category[orphan], self.brand[orphan] = -1, -1
            self.price[orphan], self.seen_ms[orphan] = np.nan, _NO_TIME
        self.touch()

    def fold_row(self, source: int, target: int) -> None:
        """Add profile ``source`` into ``target`` and empty ``source`` (an identity merge), in
        work proportional to their entries; the catalogue stays (``target`` now holds every
        product ``source`` touched)."""
        if source != target:
            self.grow(max(source, target) + 1)
            self.table.fold_row(source, target, self.impl)
            self.touch()

    def merge_rows(self, other: ProductView, theirs: NDArray[np.int64], mine: NDArray[np.int64]) -> None:
        """Add ``other``'s profiles ``theirs`` into this view's profiles ``mine`` (one to one),
        exactly: landmarks aligned, product / category / brand codes matched by name."""
        if other.half_lives_s != self.half_lives_s:
            raise StateError("cannot merge products views built with different half-lives")
        theirs = np.asarray(theirs, dtype=np.int64)
        mine = np.asarray(mine, dtype=np.int64)
        if theirs.shape != mine.shape:
            raise ValueError("theirs and mine must have the same length")
        if mine.shape[0]:
            self.grow(int(mine.max()) + 1)
        maps = {kind: self._code_map(other, kind) for kind in ("products", "categories", "brands")}
        row_map = np.full(max(other.n_profiles, int(theirs.max(initial=0)) + 1), -1, dtype=np.int64)
        row_map[theirs] = mine
        users, products, acc = other.rows()
        users = row_map[users]
        keep = users >= 0
        # only the catalogue rows of products the merged profiles touched: none of a dropped one
        held = np.unique(products[keep])
        if held.shape[0]:
            self._update_catalogue(
                _mapped(maps["products"], held),
                _mapped(maps["categories"], other.category[held]),
                _mapped(maps["brands"], other.brand[held]),
                other.price[held],
                other.seen_ms[held],
            )
        if other.landmark_ms is not None and keep.any():
            scale = None
            if self.landmark_ms is None or self.landmark_ms < other.landmark_ms:
                self.rebase(other.landmark_ms)
            elif self.landmark_ms > other.landmark_ms:
                scale = decay_factors(self.lam, self.landmark_ms - other.landmark_ms)
            keys = (users[keep] << VALUE_BITS) | _mapped(maps["products"], products[keep])
            self.table.add_unsorted(keys, acc[keep] if scale is None else acc[keep] * scale, self.impl)
        if other.last_ms is not None:
            self.last_ms = other.last_ms if self.last_ms is None else max(self.last_ms, other.last_ms)
        self.touch()

    def _code_map(self, other: ProductView, kind: str) -> NDArray[np.int64] | None:
        """Codes in this view's interner ``kind`` of ``other``'s codes (None: the same interner)."""
        if other.interners is None or other.interners is self.interners:
            return None
        if self.interners is None:
            raise StateError("the products view has no interners to merge into (set view.interners)")
        codes: NDArray[np.int64] = getattr(self.interners, kind).intern_many(
            list(getattr(other.interners, kind).names)
        )
        return np.asarray(codes, dtype=np.int64)

    # --- View protocol: save / load -------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """A MessagePack-able header and named arrays that :meth:`load_arrays` restores."""
        self.table.compact(self.impl)
        arrays: dict[str, NDArray[Any]] = {
            "keys": self.table.keys,
            "acc": self.table.acc,
            "category": self.category,
            "brand": self.brand,
            "price": self.price,
            "seen_ms": self.seen_ms,
        }
        header = {
            "format": _VIEW_FORMAT,
            "half_lives_s": list(self.half_lives_s),
            "landmark_ms": self.landmark_ms,
            "last_ms": self.last_ms,
            "n_profiles": self.n_profiles,
        }
        return header, arrays

    def load_arrays(self, header: dict[str, Any], arrays: dict[str, NDArray[Any]], n_profiles: int) -> None:
        """Restore :meth:`to_arrays` output for ``n_profiles`` profiles; :class:`StateError` if
        it is malformed or was written with other half-lives."""
        try:
            if header["format"] != _VIEW_FORMAT:
                raise StateError(f"products state format {header['format']} is not supported")
            if tuple(float(h) for h in header["half_lives_s"]) != self.half_lives_s:
                raise StateError("products state was built with other half-lives")
            stored_n, landmark, last = header["n_profiles"], header["landmark_ms"], header["last_ms"]
            keys = np.array(arrays["keys"], dtype=np.int64, order="C")
            acc = np.array(arrays["acc"], dtype=np.float64, order="C")
            category = np.array(arrays["category"], dtype=np.int64)
            brand = np.array(arrays["brand"], dtype=np.int64)
            price = np.array(arrays["price"], dtype=np.float64)
            seen_ms = np.array(arrays["seen_ms"], dtype=np.int64)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"products state is incomplete or foreign: {exc}") from None
        for value in (stored_n, landmark, last):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise StateError("products state: header times and sizes must be integers")
        if not isinstance(stored_n, int) or not 0 <= stored_n <= n_profiles:
            raise StateError(f"products state holds {stored_n} profiles, the store {n_profiles}")
        if keys.ndim != 1 or acc.shape != (keys.shape[0], len(COLUMNS)) or np.any(keys[1:] <= keys[:-1]):
            raise StateError("products state: the interaction table is malformed")
        if not (np.all(np.isfinite(acc)) and np.all(acc >= 0.0)):
            raise StateError("products state: the interaction table holds negative or non-finite values")
        n_products = category.shape[0]
        if any(a.shape != (n_products,) for a in (category, brand, price, seen_ms)):
            raise StateError("products state: the catalogue columns differ in length")
        if keys.shape[0] and (keys[0] < 0 or keys[-1] >> VALUE_BITS >= stored_n):
            raise StateError("products state: the interaction table names unknown profiles")
        if keys.shape[0] and int((keys & VALUE_MASK).max()) >= n_products:
            raise StateError("products state: the interaction table names products without a catalogue row")
        if keys.shape[0] and (landmark is None or last is None or landmark > last):
            raise StateError("products state: the decay landmark is missing or after the newest event")
        self.table = SparseTable(len(COLUMNS))
        self.table.keys, self.table.acc = keys, acc
        self.category, self.brand, self.price, self.seen_ms = category, brand, price, seen_ms
        self.landmark_ms, self.last_ms = landmark, last
        self.n_profiles = n_profiles
        self.touch()


def _mapped(code_map: NDArray[np.int64] | None, codes: NDArray[np.int64]) -> NDArray[np.int64]:
    """``codes`` through ``code_map`` (None: unchanged); -1 (unknown) stays -1."""
    if code_map is None:
        return codes
    out = np.full(codes.shape[0], -1, dtype=np.int64)
    ok = codes >= 0
    out[ok] = code_map[codes[ok]]
    return out
