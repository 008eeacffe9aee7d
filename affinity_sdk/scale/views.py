"""Every view of the profile store on Dask: fold each input partition into its own
:class:`~affinity_sdk.profile.store.ProfileStore` in the workers, then tree-reduce the stores with
:meth:`ProfileStore.merge <affinity_sdk.profile.store.ProfileStore.merge>` into one store on the
client (:func:`fold_dataset`).

No shuffle: the merge is exact by construction (every view is additive, the latest consent
decision wins, suppression entries unite, and events both shards folded are taken back out of
every view through the event journal), and it is associative, so the stores can be merged in a
tree in lake order. The client then holds one ordinary store, on which
:func:`~affinity_sdk.models.channels.channel_table`,
:func:`~affinity_sdk.models.recommend.recommend`, the affinity and propensity models run as in one
process.

What one partition alone cannot know is settled on the client first and handed to every fold:

- **identity**: links are resolved once (:func:`~affinity_sdk.scale.identity.resolved_mapping`)
  and events re-keyed to canonical ids in the workers; the links are replayed into the merged
  store at the end (a canonical id without events gets its empty profile, aliases resolve);
- **forget**: the forgotten ids' keyed-hash :class:`~affinity_sdk.profile.suppression.Suppression`
  goes to every fold, whose pipeline drops their events stamped at or before the forget;
- **price bands** (affinity view): a catalogue pass in lake order (the one
  :func:`~affinity_sdk.scale.dask.score_affinities` runs) fits every category's cut points on
  the whole lake, as one store fed the lake in one batch does; each fold starts from them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from affinity_sdk.config import ScoringConfig, load_scoring_config
from affinity_sdk.errors import ConfigError
from affinity_sdk.ingest.dedupe import DEFAULT_WINDOW
from affinity_sdk.profile.store import VIEW_NAMES, ProfileStore, ViewName
from affinity_sdk.profile.suppression import Suppression
from affinity_sdk.scale._common import Format, Reader, Source, dask_module, tree_reduce
from affinity_sdk.scale.affinities import _catalogue_part, _merge_catalogues
from affinity_sdk.scale.identity import Links, gather_links, rekey
from affinity_sdk.scale.lake import batch_from_lean, read_events

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["Forgotten", "fold_dataset"]

#: What ``forgotten=`` takes: ids (forgotten now), ids with their forget times, or a store's
#: :class:`~affinity_sdk.profile.suppression.Suppression`.
Forgotten = Collection[str] | Mapping[str, "datetime | str | int"] | Suppression


@dataclass(frozen=True)
class _StoreSpec:
    """How every partition's store is built (one pickled task argument)."""

    config: ScoringConfig
    views: tuple[ViewName, ...]
    backend: str | None
    dedupe_window: int | None
    max_future: Any
    suppression_key: bytes | None

    def new(self) -> ProfileStore:
        return ProfileStore(
            self.config,
            views=self.views,
            backend=self.backend,
            dedupe_window=self.dedupe_window,
            max_future=self.max_future,
            suppression_key=self.suppression_key,
        )


#: A store between tasks: its state-file header and arrays (a store holds a lock: not picklable).
_Packed = tuple[dict[str, Any], dict[str, Any]]


def _pack(store: ProfileStore) -> _Packed:
    return store.to_container()


def _unpack(packed: _Packed, spec: _StoreSpec) -> ProfileStore:
    header, arrays = packed
    return ProfileStore.from_container(
        "<partition>", header, arrays, backend=spec.backend, suppression_key=spec.suppression_key
    )


def _unsuppressed(frame: Any, suppression: Suppression | None) -> Any:
    """``frame`` without the rows of forgotten ids stamped at or before their forget."""
    if suppression is None or len(suppression) == 0 or len(frame) == 0:
        return frame
    import pandas as pd

    codes, names = pd.factorize(frame["user_id"], sort=False)
    forget_ms = suppression.forget_ms_of(names.tolist())
    return frame[frame["ts_ms"].to_numpy() > forget_ms[codes]]


def _catalogue(frame: Any, part: int, suppression: Suppression | None) -> dict[str, Any]:
    """The catalogue summary of one input partition: category and brand names from every line
    (the order a single store interns them), product prices from the lines that reach the
    views (events of forgotten ids are dropped before a store fits its price cuts)."""
    whole = _catalogue_part(frame, part)
    kept = frame if suppression is None else _unsuppressed(frame, suppression)
    if kept is not frame:
        whole["products"] = _catalogue_part(kept, part)["products"]
    return whole


def _price_cuts(catalogue: dict[str, Any], quantiles: tuple[float, float]) -> tuple[list[str], Any]:
    """The lake's categories in interning order and their price cut points."""
    import pandas as pd

    from affinity_sdk.profile.price_bands import catalogue_price_cuts

    categories = catalogue["categories"]["category"].tolist()
    products = catalogue["products"]
    cuts = catalogue_price_cuts(
        pd.Index(categories, dtype=object).get_indexer(products["category"].tolist()),
        products["price"].to_numpy(dtype=np.float64),
        len(categories),
        quantiles,
    )
    return categories, cuts


def _fold_partition(
    frame: Any, spec: _StoreSpec, mapping: Any, suppression: Suppression | None, bands: Any
) -> _Packed:
    """One input partition folded into a fresh store (a worker task)."""
    store = spec.new()
    if suppression is not None:
        store.suppression.merge(suppression)
    if bands is not None:
        categories, cuts = bands
        store.interners.categories.intern_many(categories)
        store.view("affinity").set_price_cuts(cuts)
    if mapping is not None:
        frame = rekey(frame, mapping)
    if len(frame):
        store.ingest(batch_from_lean(frame))
    return _pack(store)


def _merge_stores(spec: _StoreSpec, *parts: _Packed) -> _Packed:
    """The stores of consecutive partitions merged in lake order (a worker task)."""
    store = _unpack(parts[0], spec)
    for packed in parts[1:]:
        store.merge(_unpack(packed, spec))
    return _pack(store)


def _suppression_of(forgotten: Forgotten | None, spec: _StoreSpec) -> Suppression | None:
    """``forgotten`` as the keyed-hash entries a store's ``forget`` leaves."""
    if forgotten is None:
        return None
    if isinstance(forgotten, Suppression):
        if forgotten.key_id != Suppression(spec.suppression_key).key_id:
            raise ConfigError(
                "forgotten: this Suppression was built with another key; pass its suppression_key"
            )
        return forgotten
    if isinstance(forgotten, str):
        raise ConfigError("forgotten: expected a collection of ids, got one string")
    seed = ProfileStore(
        spec.config,
        views=spec.views[:1],
        backend="reference",
        dedupe_window=None,
        suppression_key=spec.suppression_key,
    )
    times = forgotten if isinstance(forgotten, Mapping) else dict.fromkeys(forgotten)
    for user_id, at in times.items():
        seed.forget(user_id, at=at)
    return seed.suppression


def fold_dataset(
    source: Source,
    views: Sequence[ViewName] = VIEW_NAMES,
    config: ScoringConfig | str | Any = None,
    *,
    links: Links = None,
    forgotten: Forgotten | None = None,
    dedupe_window: int | None = DEFAULT_WINDOW,
    max_future: Any = "366d",
    suppression_key: bytes | None = None,
    backend: str | None = "auto",
    format: Format = "auto",
    blocksize: str | int = "64MiB",
    rows_per_partition: int = 2_000_000,
    errors: Literal["raise", "skip"] = "raise",
    reader: Reader = "auto",
    split_every: int = 8,
    **compute: Any,
) -> ProfileStore:
    """Fold an event lake into one :class:`~affinity_sdk.profile.store.ProfileStore` on Dask,
    every view included, exactly as one store fed the lake in one batch.

    Each input partition (Parquet row groups, NDJSON blocks, a DataFrame's partitions) is folded
    into its own store in the workers; the stores are merged
    (:meth:`~affinity_sdk.profile.store.ProfileStore.merge`) in a tree, in lake order, and the
    client gets the result. Replays of an ``event_id`` count once wherever they sit (the first
    copy in lake order is kept) while the lake's ids fit in ``dedupe_window``; a user's latest
    consent decision wins across partitions.

    Parameters
    ----------
    source
        Events: see :func:`~affinity_sdk.scale.lake.read_events`.
    views
        The store's views (default: all of
        :data:`~affinity_sdk.profile.store.VIEW_NAMES`).
    config
        A :class:`~affinity_sdk.config.ScoringConfig`, a TOML / JSON path, or ``None`` (default).
    links
        Identity links, as ``score_dataset`` takes them: ``(previous_id, user_id)`` pairs or
        Segment / RudderStack calls; applied as :meth:`ProfileStore.link
        <affinity_sdk.profile.store.ProfileStore.link>` in order.
    forgotten
        Ids forgotten before the fold: a collection (forgotten now), a mapping of id to forget
        time, or a store's ``suppression``. Their events stamped at or before the forget are
        dropped, and they are never linked, as in a store that forgot them first.
    dedupe_window, max_future, suppression_key, backend
        As for :class:`~affinity_sdk.profile.store.ProfileStore` (``max_future`` compares an
        event with the newest one in its partition).
    format, blocksize, rows_per_partition, errors, reader
        How the lake is read: see :func:`~affinity_sdk.scale.lake.read_events`.
    split_every
        Stores merged per reduction task.
    **compute
        Passed to ``dask.compute`` (e.g. ``scheduler="sync"``).

    Returns
    -------
    ProfileStore

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from affinity_sdk.models.channels import channel_table
    >>> from affinity_sdk.sim.shop import simulate_shop
    >>> sim = simulate_shop(30, weeks=2, horizon_weeks=1, seed=3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = sim.write_parquet(pathlib.Path(tmp) / "events.parquet")
    ...     store = fold_dataset(tmp, views=("signals", "engagement"), scheduler="sync")
    >>> one = ProfileStore(views=("signals", "engagement"))
    >>> _ = one.ingest(sim.batch)
    >>> store.n_users == one.n_users, store.events_ingested == one.events_ingested
    (True, True)
    >>> got, want = channel_table(store), channel_table(one)
    >>> [sorted(got[c]) == sorted(want[c]) for c in ("user_id", "best_channel")]
    [True, True]
    """
    dask = dask_module()
    delayed = dask.delayed
    scoring = load_scoring_config(config)
    unknown = [name for name in views if name not in VIEW_NAMES]
    if unknown or not views or len(set(views)) != len(views):
        raise ConfigError(f"views must be distinct names among {list(VIEW_NAMES)} (got {list(views)})")
    if split_every < 2:
        raise ConfigError(f"split_every must be at least 2 (got {split_every})")
    spec = _StoreSpec(scoring, tuple(views), backend, dedupe_window, max_future, suppression_key)
    spec.new()  # a bad backend, window or max_future fails here, not in every worker
    suppression = _suppression_of(forgotten, spec)
    pairs = gather_links(links, **compute)
    mapping = None
    if pairs:
        from affinity_sdk.scale.identity import resolved_mapping

        mapping = resolved_mapping(pairs, forgotten=suppression)
        mapping = mapping if len(mapping) else None
    events = read_events(
        source,
        format=format,
        blocksize=blocksize,
        rows_per_partition=rows_per_partition,
        errors=errors,
        reader=reader,
        detail=True,
    )
    inputs = events.to_delayed()
    shared_mapping = delayed(mapping, pure=True) if mapping is not None else None
    shared_suppression = delayed(suppression, pure=True) if suppression is not None else None
    bands: Any = None
    if "affinity" in views:
        # One graph: each input partition is read once and kept until the catalogue is known.
        catalogues = [delayed(_catalogue)(p, i, shared_suppression) for i, p in enumerate(inputs)]
        catalogue = tree_reduce(catalogues, _merge_catalogues, split_every)
        bands = delayed(_price_cuts)(catalogue, scoring.affinity.price_quantiles)
    stores = [delayed(_fold_partition)(p, spec, shared_mapping, shared_suppression, bands) for p in inputs]
    (packed,) = dask.compute(tree_reduce(stores, partial(_merge_stores, spec), split_every), **compute)
    store = _unpack(packed, spec)
    for user_id, into in pairs:
        store.link(user_id, into)
    return store
