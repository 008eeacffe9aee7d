"""The store side of :class:`~affinity_sdk.models.affinity.AffinityModel`: its profile store and
everything that changes it.

:class:`AffinityModelBase` binds a model to the ``"affinity"`` view of a
:class:`~affinity_sdk.profile.store.ProfileStore` (a private store, or an existing one through
:meth:`~AffinityModelBase.of`) and holds what is not a query: ingest, consent, forget, merge,
the decay landmark, price-band fitting and persistence, plus the helpers every query starts with
(visibility sync, ``now``, user codes). The queries (affinity scores, top values, audiences,
discount sensitivity, lookalikes) are :class:`~affinity_sdk.models.affinity.AffinityModel`'s.

Examples
--------
>>> from affinity_sdk.models.affinity import AffinityModel
>>> issubclass(AffinityModel, AffinityModelBase)
True
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Self

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import BackendName
from affinity_sdk.config import AffinityConfig, ScoringConfig, default_config
from affinity_sdk.errors import ConfigError, StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import INTERNER_KINDS, Interners
from affinity_sdk.ingest.pipeline import Errors, IngestInput
from affinity_sdk.profile.affinity_view import AffinityView
from affinity_sdk.profile.price_bands import price_cuts_of
from affinity_sdk.profile.store import ProfileStore

__all__ = ["AffinityModelBase", "Now"]

_FORMAT_KIND: Final = "affinity_sdk.AffinityModel"
#: A query time: epoch ms, an aware datetime or ISO-8601 text; None is the newest event.
Now = int | datetime | str | None


@functools.cache
def _base_config() -> ScoringConfig:
    return default_config()


def _scoring_config(affinity: AffinityConfig) -> ScoringConfig:
    """The built-in config with ``affinity`` as its ``[affinity]`` section (same fingerprint)."""
    return msgspec.structs.replace(_base_config(), affinity=affinity)


class AffinityModelBase:
    """A model's handle on the ``"affinity"`` view of a profile store, and the operations that
    change the store (see the module docstring); :class:`~affinity_sdk.models.affinity.AffinityModel`
    adds the queries and documents the parameters."""

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
    def of(cls, store: ProfileStore) -> Self:
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
        for kind in INTERNER_KINDS:
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
    ) -> Self:
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

    def merge(self, other: AffinityModelBase) -> Self:
        """Add ``other``'s store into this one (:meth:`ProfileStore.merge
        <affinity_sdk.profile.store.ProfileStore.merge>`: exact, users and values matched by
        name, the later consent decision wins); returns ``self``.

        Examples
        --------
        >>> from affinity_sdk.models.affinity import AffinityModel
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
    def fit_price_bands(self, batch: EventBatch, *, refit: bool = True) -> Self:
        """Fit per-category price cut points from the catalogue in ``batch``'s item table.

        Each product counts once (its first listed price). With ``refit=False`` only categories
        without cut points are fitted. Bands of events already ingested do not change. Categories
        are matched by name (new ones are added to the store's interners).

        Examples
        --------
        >>> from affinity_sdk.capture.events import Product, ProductViewed
        >>> from affinity_sdk.models.affinity import AffinityModel
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

    # --- what every query starts with -------------------------------------------------------
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

    # --- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model's store (profiles, consent, forget suppression, affinity state, the
        interners) atomically with a checksum.

        Examples
        --------
        >>> import os, tempfile
        >>> from affinity_sdk.models.affinity import AffinityModel
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
    ) -> Self:
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
    ) -> Self:
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
