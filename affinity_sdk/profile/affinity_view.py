r"""The affinity view of the profile store: sparse decayed engagement per (profile, category /
brand / price band), per-profile activity counters and per-category price cut points.

This module keeps the *state* and implements the store's
:class:`~affinity_sdk.profile.views.View` protocol (fold, erase, merge, save, load); the queries
(lift, top values, audiences, discount sensitivity, lookalikes) are
:class:`~affinity_sdk.models.affinity.AffinityModel`'s, whose docstring has the formulas.

- **tables**: per dimension, a sorted run of unique int64 keys ``u << 32 | v`` (profile ``u``,
  value code ``v``: a category or brand code of the store's interners, or a price band 0 low,
  1 mid, 2 premium) with one forward-decay accumulator per half-life group: a CSR matrix whose
  row pointer comes from the keys, so memory grows with the pairs seen, never with profiles ×
  values. New events land as small sorted runs that are merged in on demand
  (:class:`~affinity_sdk.profile.sparse_table.SparseTable`).
- **activity**: per profile, decayed orders, discounted orders and one count per configured
  event type (discount sensitivity and the lookalikes' behaviour block).
- **price cuts**: per category code, the (low|mid, mid|premium) cut points, fitted the first time
  the category is seen (or explicitly) and then kept, so the band of a folded event never changes
  (:mod:`affinity_sdk.profile.price_bands`).

Decay is exact forward decay (as in :class:`~affinity_sdk.profile.decay.DecayState`): an event
of type ``e`` at ``t`` adds :math:`w_e\, e^{\lambda_e (t - L)}` to its group's accumulator, ``L``
the landmark, so folding is adding, event order does not matter, views merge by addition and the
landmark moves forward before any exponent nears float64's range. The rates, decay factors and
landmark rule are the shared ones (:func:`~affinity_sdk.profile.decay.lam_per_ms`,
:func:`~affinity_sdk.kernels.decay_factors`, :func:`~affinity_sdk.profile.decay.landmark_for`).

Examples
--------
>>> from affinity_sdk.capture.events import Product, ProductViewed
>>> from affinity_sdk.ingest.batch import EventBatch
>>> shoe = Product(product_id="p1", category="shoes", brand="acme", price=80.0)
>>> view = AffinityView(backend="reference")
>>> view.fold(EventBatch.from_events([ProductViewed(user_id="ann", timestamp=0, product=shoe)]))
1
>>> view.entries()
{'category': 1, 'brand': 1, 'price_band': 1}
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Final, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import BackendName, native, resolve_backend
from affinity_sdk._units import parse_duration
from affinity_sdk.capture.events import EVENT_TYPE_CODES, EVENT_TYPES
from affinity_sdk.config import AffinityConfig
from affinity_sdk.errors import StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.kernels import _affinity_reference as _reference
from affinity_sdk.kernels import decay_factors
from affinity_sdk.profile.decay import lam_per_ms, landmark_for
from affinity_sdk.profile.price_bands import (
    PRICE_BANDS,
    band_codes,
    catalogue_price_cuts,
    merge_price_cuts,
    overlay_price_cuts,
    price_cuts_of,
    update_price_cuts,
    valid_price_cuts,
)
from affinity_sdk.profile.rows import ensure_capacity
from affinity_sdk.profile.sparse_table import (
    VALUE_BITS,
    VALUE_MASK,
    SparseTable,
    profile_mask,
    subtract_to_zero,
)

__all__ = [
    "DIMENSIONS",
    "PRICE_BANDS",
    "VALUE_BITS",
    "VALUE_MASK",
    "AffinityView",
    "Dimension",
    "catalogue_price_cuts",
    "price_cuts_of",
]

Dimension = Literal["category", "brand", "price_band"]
DIMENSIONS: Final[tuple[Dimension, ...]] = ("category", "brand", "price_band")
_ORDER: Final = EVENT_TYPE_CODES["order_completed"]
_VIEW_FORMAT: Final = 1
#: The interner each dimension's value codes refer to (price bands are fixed codes).
_VALUE_INTERNER: Final[dict[str, str]] = {"category": "categories", "brand": "brands"}


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


# --- the view -----------------------------------------------------------------------------------
class AffinityView:
    """The affinity state of every profile: sparse, exact, mergeable (a store view).

    Parameters
    ----------
    config
        The ``[affinity]`` configuration (built-in default when None).
    backend
        ``"auto"`` (fastest available), ``"cpp"``, ``"numba"`` or ``"reference"``.

    ``interners`` is the store's :class:`~affinity_sdk.ingest.interner.Interners` (the value codes
    of the category and brand tables and the rows of the price cuts are its codes); a view that
    has none takes the first folded batch's. :meth:`merge_rows` interns the other view's category
    and brand names into it, so a store must set it before merging into a view that never folded.
    Query caches (``cache``, kept by :class:`~affinity_sdk.models.affinity.AffinityModel`) are
    dropped whenever the state changes.
    """

    name = "affinity"

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
        self.landmark_ms: int | None = None
        #: Newest event time folded (ms).
        self.last_ms: int | None = None
        self.n_profiles = 0
        groups = self.config.half_life_groups_s
        self.group_lam = lam_per_ms(groups)
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
        discount_lam = lam_per_ms([parse_duration(self.config.discount_half_life)])[0]
        self.activity_lam = np.concatenate(
            [[discount_lam, discount_lam], lam_per_ms([self.config.signals[n].half_life_s for n in names])]
        )
        self._activity = np.zeros((0, self.activity_lam.shape[0]))
        self.tables = {dim: SparseTable(len(groups)) for dim in DIMENSIONS}
        #: Per category code: the (low|mid, mid|premium) price cut points; NaN until fitted.
        self.price_cuts_ = np.full((0, 2), np.nan)
        #: The cut points of the view merged in last (our codes), for :meth:`unfold`.
        self._their_cuts: NDArray[np.float64] | None = None
        #: Query results of the current state (see the class docstring).
        self.cache: dict[tuple[Any, ...], Any] = {}
        #: The visibility mask the cached results were computed under (the model's business).
        self.cache_mask: NDArray[np.bool_] | None = None
        self.cache_all_visible = True

    def __repr__(self) -> str:
        return f"AffinityView(profiles={self.n_profiles}, entries={self.entries()}, backend={self.backend!r})"

    def entries(self) -> dict[str, int]:
        """Stored (profile, value) pairs per dimension (pending runs counted as they are)."""
        return {dim: t.n_entries for dim, t in self.tables.items()}

    @property
    def activity(self) -> NDArray[np.float64]:
        """Per profile: decayed orders, discounted orders, then one column per configured type."""
        return self._activity[: self.n_profiles]

    def touch(self) -> None:
        """The state changed: drop cached query results."""
        self.cache.clear()

    # --- View protocol: grow / fold -------------------------------------------------------------
    def grow(self, n_profiles: int) -> None:
        """Make room for profile codes below ``n_profiles`` (empty rows)."""
        if n_profiles <= self.n_profiles:
            return
        width = self._activity.shape[1]
        self._activity = ensure_capacity(
            self._activity, self.n_profiles, n_profiles, lambda size: np.zeros((size, width))
        )
        self._activity[self.n_profiles : n_profiles] = 0.0
        self.n_profiles = n_profiles

    def shrink(self, n_profiles: int) -> None:
        """Drop profiles ``n_profiles ..`` (their entries included)."""
        if n_profiles < self.n_profiles:
            self.erase(np.arange(n_profiles, self.n_profiles, dtype=np.int64))
            self.n_profiles = n_profiles

    def fold(self, batch: EventBatch) -> int:
        """Fold a batch's events (codes in :attr:`interners`); returns how many it used: events
        of a configured affinity type (their product lines feed the tables) and orders."""
        if len(batch) == 0:
            return 0
        self._adopt(batch.interners)
        self.grow(int(batch.user.max()) + 1)
        newest = int(batch.ts_ms.max())
        self._maybe_rebase(newest)
        self.last_ms = newest if self.last_ms is None else max(self.last_ms, newest)
        landmark = self.landmark_ms
        assert landmark is not None
        self._their_cuts = None
        self._fit_missing_price_cuts(batch)
        self._fold_items(batch, landmark)
        used = self._fold_activity(batch, landmark)
        self.touch()
        return used

    def _adopt(self, interners: Interners) -> None:
        if self.interners is None:
            self.interners = interners
        elif interners is not self.interners:
            raise StateError(
                "this batch was interned with other Interners than the affinity view's; "
                "fold batches in the store's interners"
            )

    def _fold_items(self, batch: EventBatch, landmark: int) -> None:
        for dim, (keys, contrib) in self._item_runs(batch, landmark, self.price_cuts_).items():
            self.tables[dim].add_unsorted(keys, contrib, self.impl)

    def _item_runs(
        self, batch: EventBatch, landmark: int, cuts: NDArray[np.float64]
    ) -> dict[Dimension, tuple[NDArray[np.int64], NDArray[np.float64]]]:
        """Per dimension, the (unsorted) keys and accumulator rows the batch's lines add."""
        item_type = batch.event_type[batch.item_event].astype(np.int64)
        keep = np.flatnonzero(self._type_group[item_type] >= 0)
        if keep.shape[0] == 0:
            return {}
        rows = batch.item_event[keep]
        users = batch.user[rows].astype(np.int64)
        types = item_type[keep]
        groups = self._type_group[types]
        dt = (batch.ts_ms[rows] - landmark).astype(np.float64)
        contrib = np.zeros((keep.shape[0], self.group_lam.shape[0]))
        contrib[np.arange(keep.shape[0]), groups] = self._type_weight[types] * np.exp(
            self.group_lam[groups] * dt
        )
        category = batch.item_category[keep].astype(np.int64)
        bands = band_codes(cuts, category, batch.item_price[keep])
        codes = {"category": category, "brand": batch.item_brand[keep].astype(np.int64), "price_band": bands}
        prefix = users << VALUE_BITS
        runs = {}
        for dim in DIMENSIONS:
            valid = codes[dim] >= 0
            keys = prefix | codes[dim]
            part = contrib
            if not valid.all():
                keys, part = keys[valid], contrib[valid]
            runs[dim] = (keys, part)
        return runs

    def _fold_activity(self, batch: EventBatch, landmark: int) -> int:
        cells, values, used = self._activity_cells(batch, landmark)
        flat = self._activity[: self.n_profiles].reshape(-1)  # a view: rows are C-contiguous
        if cells.shape[0] * 8 >= flat.shape[0]:
            # a big batch: one dense bincount pass beats ufunc.at's per-element dispatch
            flat += np.bincount(cells, weights=values, minlength=flat.shape[0])
        else:
            np.add.at(flat, cells, values)
        return used

    def _activity_cells(
        self, batch: EventBatch, landmark: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], int]:
        """Flat activity cells and the values the batch adds, and how many events it uses."""
        types = batch.event_type.astype(np.int64)
        is_order = types == _ORDER
        order = np.flatnonzero(is_order)
        discounted = order[_discounted_orders(batch)[order]]
        typed_mask = self._type_column[types] >= 0
        typed = np.flatnonzero(typed_mask)
        rows = np.concatenate([order, discounted, typed])
        columns = np.concatenate(
            [
                np.zeros(order.shape[0], np.int64),
                np.ones(discounted.shape[0], np.int64),
                self._type_column[types[typed]],
            ]
        )
        dt = (batch.ts_ms[rows] - landmark).astype(np.float64)
        values = np.exp(self.activity_lam[columns] * dt)
        cells = batch.user[rows].astype(np.int64) * self._activity.shape[1] + columns
        return cells, values, int(np.count_nonzero(is_order | typed_mask))

    # --- View protocol: unfold ------------------------------------------------------------------
    def unfold(self, batch: EventBatch) -> None:
        """Take back events :meth:`fold` folded before (a copy both merged shards folded, in
        this view's codes): each table entry and activity cell goes down by what the events
        added. Lines are banded with the cut points of the view merged in last where it had
        some (its copy was banded with them), else with this view's.

        Without per-entry counts, a value left at most ``1e-12`` of what was taken out (float
        cancellation: no other event, or only ones some 40 half-lives older) is taken as 0,
        and an entry whose every accumulator is 0 is dropped, as if never folded."""
        if len(batch) == 0 or self.landmark_ms is None:
            return
        self._adopt(batch.interners)
        landmark = self.landmark_ms
        cuts = self.price_cuts_
        if self._their_cuts is not None:
            cuts = overlay_price_cuts(cuts, self._their_cuts)
        for dim, (keys, contrib) in self._item_runs(batch, landmark, cuts).items():
            self.tables[dim].subtract(keys, contrib, self.impl)
        cells, values, _ = self._activity_cells(batch, landmark)
        cells_ok = cells < self.n_profiles * self._activity.shape[1]
        cells, values = cells[cells_ok], values[cells_ok]
        taken = np.bincount(cells, weights=values).astype(np.float64, copy=False)
        touched = np.flatnonzero(taken)
        flat = self._activity[: self.n_profiles].reshape(-1)
        flat[touched] = subtract_to_zero(flat[touched], taken[touched])
        self.touch()

    # --- decay landmark -------------------------------------------------------------------------
    def _maybe_rebase(self, newest_ms: int) -> None:
        """Move the landmark as :func:`~affinity_sdk.profile.decay.landmark_for` says."""
        lam_max = float(max(self.group_lam.max(initial=0.0), self.activity_lam.max(initial=0.0)))
        target = landmark_for(self.landmark_ms, newest_ms, lam_max)
        if target is not None:
            self.rebase(target)

    def rebase(self, landmark_ms: int) -> None:
        """Move the decay landmark to ``landmark_ms``, rescaling every accumulator (exact)."""
        if self.landmark_ms is None:
            self.landmark_ms = int(landmark_ms)
            return
        delta = int(landmark_ms) - self.landmark_ms
        if delta != 0:
            factors = decay_factors(self.group_lam, delta)
            for table in self.tables.values():
                table.scale(factors)
            self._activity *= decay_factors(self.activity_lam, delta)
        self.landmark_ms = int(landmark_ms)
        self.touch()

    def factors(self, lam: NDArray[np.float64], now_ms: int) -> NDArray[np.float64]:
        """Decay factors from the landmark to ``now_ms``; ``ValueError`` if they overflow."""
        if self.landmark_ms is None:
            return np.ones_like(lam)
        factors = decay_factors(lam, now_ms - self.landmark_ms)
        if not np.all(np.isfinite(factors)):
            raise ValueError(
                f"now={now_ms} ms is too far before the decay landmark {self.landmark_ms} ms "
                "to evaluate (the decay factor overflows float64)"
            )
        return factors

    # --- price bands ----------------------------------------------------------------------------
    def set_price_cuts(self, cuts: NDArray[np.float64], *, refit: bool = True) -> None:
        """Take the fitted (non-NaN) rows of ``cuts`` (per category code of :attr:`interners`);
        with ``refit=False`` only for categories without cut points yet."""
        self.price_cuts_ = update_price_cuts(self.price_cuts_, cuts, refit=refit)

    def _fit_missing_price_cuts(self, batch: EventBatch) -> None:
        if batch.n_items == 0:
            return
        seen = np.unique(batch.item_category[batch.item_category >= 0])
        known = self.price_cuts_.shape[0]
        if np.any(seen >= known) or np.any(np.isnan(self.price_cuts_[seen[seen < known], 0])):
            self.set_price_cuts(price_cuts_of(batch, self.config.price_quantiles), refit=False)

    def bands(self, category: NDArray[np.int64], price: NDArray[np.float64]) -> NDArray[np.int64]:
        """Price band code (0 low, 1 mid, 2 premium; -1 unknown) of lines by category and price."""
        return band_codes(self.price_cuts_, category, price)

    # --- View protocol: erase / merge -----------------------------------------------------------
    def erase(self, codes: NDArray[np.int64]) -> None:
        """Remove every entry of profiles ``codes`` and zero their activity (exactly)."""
        gone = profile_mask(codes, self.n_profiles)
        if gone is None:
            return
        for table in self.tables.values():
            table.drop_profiles(gone, self.impl)
        self._activity[np.flatnonzero(gone)] = 0.0
        self.touch()

    def fold_row(self, source: int, target: int) -> None:
        """Add profile ``source`` into profile ``target`` and empty ``source`` (an identity
        merge): :meth:`merge_rows` of the view into itself and :meth:`erase` of ``source``, in
        work proportional to the two profiles' entries (:meth:`SparseTable.fold_row
        <affinity_sdk.profile.sparse_table.SparseTable.fold_row>`: the moved entries wait as a
        pending run, the source's old ones are dropped at the next compaction).

        Examples
        --------
        >>> from affinity_sdk.capture.events import Product, ProductViewed
        >>> shoe = Product(product_id="p1", category="shoes", brand="acme", price=80.0)
        >>> view = AffinityView(backend="reference")
        >>> _ = view.fold(EventBatch.from_events([ProductViewed(user_id="a", timestamp=0, product=shoe)]))
        >>> view.grow(2)
        >>> view.fold_row(0, 1)
        >>> view.tables["brand"].compact(view.impl)
        >>> (view.tables["brand"].keys >> VALUE_BITS).tolist(), (view.activity.sum(axis=1) > 0).tolist()
        ([1], [False, True])
        """
        if source == target:
            return
        self.grow(max(source, target) + 1)
        for table in self.tables.values():
            table.fold_row(source, target, self.impl)
        self._activity[target] += self._activity[source]
        self._activity[source] = 0.0
        self.touch()

    def merge_rows(self, other: AffinityView, theirs: NDArray[np.int64], mine: NDArray[np.int64]) -> None:
        """Add ``other``'s profiles ``theirs`` into this view's profiles ``mine`` (one to one),
        exactly: landmarks aligned, category and brand codes matched by name (new names interned
        into :attr:`interners`), price cuts taken for categories this view has none for."""
        if other.config != self.config:
            raise StateError("cannot merge affinity views built with different configs")
        theirs = np.asarray(theirs, dtype=np.int64)
        mine = np.asarray(mine, dtype=np.int64)
        if theirs.shape != mine.shape:
            raise ValueError("theirs and mine must have the same length")
        if mine.shape[0]:
            self.grow(int(mine.max()) + 1)
        value_maps = {dim: self._value_map(other, kind) for dim, kind in _VALUE_INTERNER.items()}
        self.price_cuts_, self._their_cuts = merge_price_cuts(
            self.price_cuts_, other.price_cuts_, value_maps["category"]
        )
        if other.landmark_ms is not None and mine.shape[0]:
            self._merge_entries(other, theirs, mine, value_maps)
        if other.last_ms is not None:
            self.last_ms = other.last_ms if self.last_ms is None else max(self.last_ms, other.last_ms)
        self.touch()

    def _merge_entries(
        self,
        other: AffinityView,
        theirs: NDArray[np.int64],
        mine: NDArray[np.int64],
        value_maps: dict[str, NDArray[np.int64] | None],
    ) -> None:
        assert other.landmark_ms is not None
        group_scale = activity_scale = None
        if self.landmark_ms is None or self.landmark_ms < other.landmark_ms:
            self.rebase(other.landmark_ms)
        elif self.landmark_ms > other.landmark_ms:
            delta = self.landmark_ms - other.landmark_ms
            group_scale = decay_factors(self.group_lam, delta)
            activity_scale = decay_factors(self.activity_lam, delta)
        row_map = np.full(other.n_profiles, -1, dtype=np.int64)
        row_map[theirs] = mine
        for dim, table in other.tables.items():
            table.compact(other.impl)
            users = row_map[table.keys >> VALUE_BITS]
            keep = users >= 0
            values = table.keys[keep] & VALUE_MASK
            value_map = value_maps.get(dim)
            if value_map is not None:
                values = value_map[values]
            keys = (users[keep] << VALUE_BITS) | values
            acc = table.acc[keep] if group_scale is None else table.acc[keep] * group_scale
            if keys.shape[0] > 1 and not np.all(keys[1:] > keys[:-1]):
                self.tables[dim].add_unsorted(keys, acc, self.impl)  # remapped codes: sort (keys stay unique)
            elif keys.shape[0]:
                self.tables[dim].add_run(keys, acc, self.impl)
        activity = other.activity[theirs]
        self._activity[mine] += activity if activity_scale is None else activity * activity_scale

    def _value_map(self, other: AffinityView, kind: str) -> NDArray[np.int64] | None:
        """Codes in this view's interner ``kind`` of ``other``'s codes (None: the same interner)."""
        if other.interners is None or other.interners is self.interners:
            return None
        if self.interners is None:
            raise StateError("the affinity view has no interners to merge into (set view.interners)")
        names = list(getattr(other.interners, kind).names)
        codes: NDArray[np.int64] = getattr(self.interners, kind).intern_many(names)
        return codes

    # --- View protocol: save / load -------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """A MessagePack-able header and named arrays that :meth:`load_arrays` restores."""
        arrays: dict[str, NDArray[Any]] = {"activity": self.activity, "price_cuts": self.price_cuts_}
        for dim, table in self.tables.items():
            table.compact(self.impl)
            arrays[f"{dim}.keys"] = table.keys
            arrays[f"{dim}.acc"] = table.acc
        header = {
            "format": _VIEW_FORMAT,
            "config": msgspec.to_builtins(self.config),
            "landmark_ms": self.landmark_ms,
            "last_ms": self.last_ms,
            "n_profiles": self.n_profiles,
        }
        return header, arrays

    def load_arrays(self, header: dict[str, Any], arrays: dict[str, NDArray[Any]], n_profiles: int) -> None:
        """Restore :meth:`to_arrays` output for ``n_profiles`` profiles (fewer stored profiles
        are padded with empty ones); :class:`StateError` if it is malformed or foreign."""
        try:
            if header["format"] != _VIEW_FORMAT:
                raise StateError(f"affinity state format {header['format']} is not supported")
            if AffinityConfig.from_dict(header["config"]) != self.config:
                raise StateError("affinity state was built with another [affinity] config")
            stored_n = header["n_profiles"]
            landmark, last = header["landmark_ms"], header["last_ms"]
            activity = np.array(arrays["activity"], dtype=np.float64, order="C")
            cuts = np.array(arrays["price_cuts"], dtype=np.float64, order="C")
            tables = {
                dim: (
                    np.array(arrays[f"{dim}.keys"], dtype=np.int64, order="C"),
                    np.array(arrays[f"{dim}.acc"], dtype=np.float64, order="C"),
                )
                for dim in DIMENSIONS
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"affinity state is incomplete or foreign: {exc}") from None
        for value in (stored_n, landmark, last):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise StateError("affinity state: header times and sizes must be integers")
        if not isinstance(stored_n, int) or not 0 <= stored_n <= n_profiles:
            raise StateError(f"affinity state holds {stored_n} profiles, the store {n_profiles}")
        if activity.shape != (stored_n, self.activity_lam.shape[0]) or not _finite_nonnegative(activity):
            raise StateError(f"affinity state: activity of shape {activity.shape} is malformed")
        for dim, (keys, acc) in tables.items():
            self._check_table(dim, keys, acc, stored_n)
        if cuts.ndim != 2 or cuts.shape[1] != 2 or not valid_price_cuts(cuts):
            raise StateError("affinity state: price cuts are malformed")
        has_state = activity.any() or any(keys.shape[0] for keys, _ in tables.values())
        if has_state and (landmark is None or last is None or landmark > last):
            raise StateError("affinity state: the decay landmark is missing or after the newest event")
        self.n_profiles = 0
        self._activity = np.zeros((0, self.activity_lam.shape[0]))
        self.grow(n_profiles)
        self._activity[:stored_n] = activity
        for dim, (keys, acc) in tables.items():
            table = self.tables[dim] = SparseTable(self.group_lam.shape[0])
            table.keys, table.acc = keys, acc
        self.price_cuts_ = cuts
        self._their_cuts = None
        self.landmark_ms, self.last_ms = landmark, last
        self.touch()

    def _check_table(self, dim: str, keys: NDArray[np.int64], acc: NDArray[np.float64], n: int) -> None:
        width = self.group_lam.shape[0]
        if keys.ndim != 1 or acc.shape != (keys.shape[0], width) or np.any(keys[1:] <= keys[:-1]):
            raise StateError(f"affinity state: the {dim} table is malformed")
        if not _finite_nonnegative(acc):
            raise StateError(f"affinity state: the {dim} table holds negative or non-finite values")
        if keys.shape[0] == 0:
            return
        if keys[0] < 0 or keys[-1] >> VALUE_BITS >= n:
            raise StateError(f"affinity state: the {dim} table names unknown profiles")
        kind = _VALUE_INTERNER.get(dim)
        if kind is None:
            n_values: int | None = len(PRICE_BANDS)
        else:
            n_values = None if self.interners is None else len(getattr(self.interners, kind))
        if n_values is not None and int((keys & VALUE_MASK).max()) >= n_values:
            raise StateError(f"affinity state: the {dim} table names unknown values")


def _finite_nonnegative(values: NDArray[np.float64]) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values >= 0.0))


# --- helpers ------------------------------------------------------------------------------------
def _discounted_orders(batch: EventBatch) -> NDArray[np.bool_]:
    """Per event: a discount or coupon on the order itself or on any of its lines."""
    with np.errstate(invalid="ignore"):
        flagged = batch.has_coupon | (batch.discount > 0)
        line = np.zeros(len(batch), dtype=bool)
        line[batch.item_event[batch.item_discount > 0]] = True
    result: NDArray[np.bool_] = flagged | line
    return result
