"""Affinity top-k on Dask: a catalogue pass, a fold per partition of users, a totals reduction
and a top-k per partition give every user's top values of a dimension exactly as one
:class:`~affinity_sdk.models.affinity.AffinityModel` fed the whole lake would
(:func:`score_affinities`), consent included: opted-out users are neither listed nor counted in
the population totals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike, fspath
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.config import load_affinity_config
from affinity_sdk.ingest.interner import Interner, Interners
from affinity_sdk.scale._common import (
    STR,
    Format,
    Reader,
    Source,
    by_user,
    dask_module,
    empty_frame,
    require_dask,
    tree_reduce,
)
from affinity_sdk.scale.lake import batch_from_lean, drop_opted_out, lean_meta, read_events

__all__ = ["DaskAffinities", "score_affinities"]

#: Bits of an item row's position within its input partition in the lake-order key
#: ``partition << 40 | row`` (2**23 partitions of up to 2**40 product lines).
_POSITION_BITS: Final = 40


def _catalogue_part(frame: Any, part: int) -> dict[str, Any]:
    """What the catalogue pass needs from one *input* partition (before any shuffle): the first
    product line (in lake order, key ``pos``) of every category and brand name (their interning
    order in a single process), the first line with a price of every product (its category and
    the price ``fit_price_bands`` uses), and the latest event time. Every user's lines count,
    opted-out ones included, as in the single-process model, whose interners and price cuts
    describe the catalogue, not a customer (consent is applied after the shuffle)."""
    import pandas as pd

    is_item = frame["kind"].to_numpy() == 1
    events_ts = frame["ts_ms"].to_numpy()[~is_item]
    items = frame[is_item]
    lines = pd.DataFrame(
        {
            "pos": (np.int64(part) << np.int64(_POSITION_BITS)) + np.arange(len(items), dtype=np.int64),
            "product": items["item_product"].array,
            "category": items["item_category"].array,
            "brand": items["item_brand"].array,
            "price": items["item_price"].to_numpy(dtype=np.float64),
        }
    )
    # the rules of affinity._price_cuts: a product with a category and a finite price
    priced = lines["product"].notna() & lines["category"].notna() & np.isfinite(lines["price"])
    return {
        "categories": lines.loc[lines["category"].notna(), ["category", "pos"]].drop_duplicates("category"),
        "brands": lines.loc[lines["brand"].notna(), ["brand", "pos"]].drop_duplicates("brand"),
        "products": lines.loc[priced, ["product", "pos", "category", "price"]].drop_duplicates("product"),
        "max_ts": int(events_ts.max()) if events_ts.shape[0] else None,
    }


def _merge_catalogues(*parts: dict[str, Any]) -> dict[str, Any]:
    """Keep the first occurrence (smallest lake position) of every name across parts."""
    import pandas as pd

    out: dict[str, Any] = {}
    for key, name in (("categories", "category"), ("brands", "brand"), ("products", "product")):
        frame = pd.concat([p[key] for p in parts], ignore_index=True)
        out[key] = frame.sort_values("pos", kind="stable").drop_duplicates(name)
    stamps = [p["max_ts"] for p in parts if p["max_ts"] is not None]
    out["max_ts"] = max(stamps) if stamps else None
    return out


def _affinity_meta() -> Any:
    return empty_frame({"user_id": STR, "code": np.int64, "decayed": np.float64})


def _affinity_partition(
    frame: Any, now_ms: Any, config: Any, backend: str | None, dimension: str, shared: Any
) -> Any:
    """Fold the whole consenting users of one partition into an ``AffinityModel`` with the
    global value codes and price cut points, and return their decayed engagement per (user,
    value code) at ``now_ms``, rows grouped by user with codes ascending (the model's CSR order).

    The partition holds each of its users' signal events and consent events: opted-out users
    (latest decision a revocation) are dropped whole here, so they reach neither the output nor
    the population totals; the consent rows themselves are dropped too (the model then sees
    exactly the signal events of visible users)."""
    import dataclasses

    import pandas as pd

    from affinity_sdk.capture.events import EVENT_TYPE_CODES
    from affinity_sdk.models.affinity import AffinityModel

    categories, brands, cuts = shared
    frame = drop_opted_out(frame)
    frame = frame[frame["event_type"].isin([EVENT_TYPE_CODES[name] for name in config.signal_names])]
    if len(frame) == 0:
        return _affinity_meta()
    batch = batch_from_lean(frame)
    local = batch.interners

    def to_global(codes: NDArray[np.int32], interner: Interner, names: Sequence[str]) -> NDArray[np.int32]:
        table = np.append(pd.Index(names, dtype=object).get_indexer(list(interner.names)), -1)
        result: NDArray[np.int32] = table[codes].astype(np.int32)  # local -1 (none) stays -1
        return result

    batch = dataclasses.replace(
        batch,
        item_category=to_global(batch.item_category, local.categories, categories),
        item_brand=to_global(batch.item_brand, local.brands, brands),
        interners=Interners(
            users=local.users,
            products=local.products,
            categories=Interner(categories),
            brands=Interner(brands),
            campaigns=local.campaigns,
        ),
    )
    model = AffinityModel(config, backend=backend)
    model.price_cuts_ = np.array(cuts, dtype=np.float64)  # fitted on the whole catalogue
    model.ingest(batch)
    s = model.scores(dimension, int(now_ms))  # type: ignore[arg-type]
    rows = np.repeat(np.arange(s.n_profiles), np.diff(s.indptr))
    users = np.asarray(local.users.names, dtype=object)
    return pd.DataFrame({"user_id": pd.Series(users[rows], dtype=STR), "code": s.cols, "decayed": s.decayed})


def _affinity_totals(frame: Any, n_values: int) -> tuple[NDArray[np.float64], int]:
    """One partition's decayed engagement per value and its number of users (whole, visible
    users: the engagement table holds no opted-out user)."""
    codes = frame["code"].to_numpy(dtype=np.int64)
    totals = np.bincount(codes, weights=frame["decayed"].to_numpy(dtype=np.float64), minlength=n_values)
    return totals.astype(np.float64), int(frame["user_id"].nunique())


def _topk_meta() -> Any:
    return empty_frame({"user_id": STR, "rank": np.int64, "value": STR, "affinity": np.float64})


def _affinity_topk(frame: Any, shared: Any, k: int, shrinkage: float, backend: str | None) -> Any:
    """Long-format top ``k`` of the partition's users with the global population totals."""
    import pandas as pd

    from affinity_sdk.models.affinity import top_affinities_from_totals

    totals, names = shared
    if len(frame) == 0:
        return _topk_meta()
    user_codes, users = pd.factorize(frame["user_id"], sort=False)
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_codes, minlength=len(users)), out=indptr[1:])
    if np.any(np.diff(user_codes) < 0):  # rows come grouped by user from _affinity_partition
        raise AssertionError("affinity entries are not grouped by user")
    codes, values = top_affinities_from_totals(
        indptr,
        frame["code"].to_numpy(dtype=np.int64),
        frame["decayed"].to_numpy(dtype=np.float64),
        totals,
        k,
        shrinkage=shrinkage,
        backend=backend,
    )
    who, rank = np.nonzero(codes >= 0)
    return pd.DataFrame(
        {
            "user_id": pd.Series(np.asarray(users, dtype=object)[who], dtype=STR),
            "rank": (rank + 1).astype(np.int64),
            "value": pd.Series(np.asarray(names, dtype=object)[codes[who, rank]], dtype=STR),
            "affinity": values[who, rank],
        }
    )


@dataclass(frozen=True, eq=False)
class DaskAffinities:
    """What :func:`score_affinities` returns.

    ``frame`` is a Dask DataFrame in the long format of
    :func:`~affinity_sdk.models.affinity.affinities_table`: ``user_id``, ``rank`` (1 = best),
    ``value`` and ``affinity``, rows grouped by user, built on persisted per-partition engagement
    (computing or writing it does not re-read the events). ``values`` are the dimension's value
    names (by code, in order of first appearance in the lake), ``population_share`` their
    population share :math:`P_v` at ``now_ms`` over visible users; ``categories`` and
    ``price_cuts`` the catalogue's categories and their (low|mid, mid|premium) price cut points.
    ``n_users``: visible users with at least one value of the dimension. Opted-out users have no
    row.
    """

    frame: Any
    dimension: str
    k: int
    now_ms: int
    n_users: int
    values: tuple[str, ...]
    population_share: NDArray[np.float64]
    categories: tuple[str, ...]
    price_cuts: NDArray[np.float64]
    config: Any
    backend: str | None

    @property
    def metadata(self) -> dict[str, str]:
        """Provenance written with :meth:`to_parquet`."""
        import msgspec

        return {
            "affinity_config": msgspec.json.encode(self.config).decode(),
            "dimension": self.dimension,
            "k": str(self.k),
            "now_ms": str(self.now_ms),
            "backend": str(self.backend),
        }

    def compute(self, **kwargs: Any) -> Any:
        """The whole table as one pandas DataFrame (it must fit on the client)."""
        return self.frame.compute(**kwargs)

    def to_parquet(self, path: str | PathLike[str], **kwargs: Any) -> None:
        """Write the table as a partitioned Parquet dataset, provenance in each file's metadata."""
        self.frame.to_parquet(fspath(path), custom_metadata=self.metadata, write_index=False, **kwargs)


def score_affinities(
    source: Source,
    config: Any = None,
    *,
    dimension: Literal["category", "brand", "price_band"],
    k: int = 3,
    now: Any = None,
    format: Format = "auto",
    npartitions: int | None = None,
    backend: str | None = "auto",
    shuffle_method: str | None = None,
    blocksize: str | int = "64MiB",
    rows_per_partition: int = 2_000_000,
    errors: Literal["raise", "skip"] = "raise",
    reader: Reader = "auto",
    **compute: Any,
) -> DaskAffinities:
    """Every user's top ``k`` values of ``dimension`` on Dask, exactly as one
    :class:`~affinity_sdk.models.affinity.AffinityModel` fed the whole lake in one batch would give them
    (:func:`~affinity_sdk.models.affinity.affinities_table`).

    Affinities are lifts against the *population*, and price bands are cut at quantiles of the
    *whole catalogue*, so one partition alone cannot compute them. Consent is the store's: a user
    whose latest ``consent_changed`` event revokes consent (a revocation wins a tie) is opted
    out, gets no row and adds nothing to the population totals; as in the single-process model,
    the catalogue (value codes, price cuts) and the default ``now`` are the lake's. Four steps:

    1. **Catalogue pass** over the input partitions (a tree reduction of small tables): the
       first appearance in the lake of every category and brand (their global codes, in the
       order a single process interns them), every product's first listed price (the
       per-category price cut points, by the model's own
       :func:`~affinity_sdk.models.affinity.catalogue_price_cuts`) and the latest event time.
    2. **Fold**: the events of the configured affinity signals with their product lines, and
       the consent events, are shuffled by user (in the same pass over the input as step 1, and
       persisted until the catalogue is known); each partition drops its opted-out users and is
       folded by an ``AffinityModel`` (compiled kernels) given the global codes and cut points,
       which keeps each visible (user, value)'s decayed engagement :math:`d_{uv}` at ``now``
       (persisted).
    3. **Totals**: per-value sums :math:`\\sum_u d_{uv}` over visible users are reduced over
       partitions.
    4. **Top-k** per partition with those totals
       (:func:`~affinity_sdk.models.affinity.top_affinities_from_totals`: same formula, same kernel,
       ties to the value seen first in the lake).

    The input is read once; the shuffled signal events are held in the workers' memory from
    step 1 to step 2, then only the catalogue, one float per value and the engagement table (one
    row per (user, value) pair) are kept.

    Parameters
    ----------
    source
        Events: see :func:`read_events`.
    config
        A :class:`~affinity_sdk.config.AffinityConfig`, a
        :class:`~affinity_sdk.config.ScoringConfig` (its ``[affinity]`` section), a TOML / JSON
        path, or ``None`` (default).
    dimension
        ``"category"``, ``"brand"`` or ``"price_band"``.
    k
        Values per user (users with fewer values get fewer rows; users without product events
        none).
    now
        Scoring time (``datetime``, ISO string or epoch ms); ``None``: the latest event time in
        the dataset, the model's default (found in the catalogue pass).
    format, npartitions, backend, shuffle_method, blocksize, rows_per_partition, errors, reader
        As in :func:`score_dataset`.

    Returns
    -------
    DaskAffinities

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from affinity_sdk.models.affinity import AffinityModel, affinities_table
    >>> from affinity_sdk.sim.shop import simulate_shop
    >>> sim = simulate_shop(40, weeks=2, horizon_weeks=1, seed=5)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = sim.write_parquet(pathlib.Path(tmp) / "events.parquet")
    ...     top = score_affinities(tmp, dimension="brand", k=2, scheduler="sync")
    ...     frame = top.compute(scheduler="sync")
    >>> list(frame.columns)
    ['user_id', 'rank', 'value', 'affinity']
    >>> single = affinities_table(AffinityModel().ingest(sim.batch), "brand", 2)
    >>> got = frame.set_index(["user_id", "rank"]).loc[list(zip(single["user_id"], single["rank"]))]
    >>> got["value"].tolist() == single["value"], bool(np.allclose(got["affinity"], single["affinity"]))
    (True, True)
    """
    dd = require_dask()
    dask = dask_module()
    from affinity_sdk._backends import resolve_backend
    from affinity_sdk._units import to_epoch_ms
    from affinity_sdk.capture.events import EVENT_TYPE_CODES
    from affinity_sdk.models.affinity import DIMENSIONS, PRICE_BANDS, catalogue_price_cuts

    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; choose one of {', '.join(DIMENSIONS)}")
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    config = load_affinity_config(config)
    if backend not in (None, "auto"):
        resolve_backend(backend)
    delayed = dask.delayed
    events = read_events(
        source,
        format=format,
        blocksize=blocksize,
        rows_per_partition=rows_per_partition,
        errors=errors,
        reader=reader,
        detail=True,
    )

    # 1. catalogue pass over the input partitions, in lake order, in the same graph as the
    # shuffle by user of the signal events (step 2), so each input partition is read once.
    # Consent: a user's latest decision may sit in another input partition than their events,
    # so it is decided after the shuffle, where each partition holds whole users: the consent
    # rows (a few per user at most) travel with the signal events and each fold task drops its
    # opted-out users (drop_opted_out) before anything is summed. That is exact and costs no
    # extra pass. The alternative, a global pass over the consent rows first, would read the
    # input a second time and send the opted-out ids to every task; it would only pay if the
    # catalogue had to leave out opted-out users, and it must not: the single-process model's
    # value codes and price cuts describe the whole catalogue (consent hides customers).
    signal_types = [EVENT_TYPE_CODES[name] for name in config.signal_names]
    wanted = events["event_type"].isin(signal_types) | (events["consent"] >= 0)
    shuffled = by_user(events[wanted], npartitions, shuffle_method)
    parts = [delayed(_catalogue_part)(p, i) for i, p in enumerate(events.to_delayed())]
    catalogue_root = tree_reduce(parts, _merge_catalogues)
    # (its partitions as Delayed: persisting an Expression with Delayed objects warns)
    *held, root = dask.persist(*shuffled.to_delayed(), catalogue_root, **compute)
    shuffled = dd.from_delayed(held, meta=lean_meta(True), verify_meta=False)
    catalogue = dask.compute(root, **compute)[0]
    categories = tuple(catalogue["categories"]["category"].tolist())
    brands = tuple(catalogue["brands"]["brand"].tolist())
    products = catalogue["products"]
    import pandas as pd

    cuts = catalogue_price_cuts(
        pd.Index(categories, dtype=object).get_indexer(products["category"].tolist()),
        products["price"].to_numpy(dtype=np.float64),
        len(categories),
        config.price_quantiles,
    )
    if now is not None:
        now_ms = to_epoch_ms(now)
    else:
        now_ms = catalogue["max_ts"] if catalogue["max_ts"] is not None else 0
    names = {"category": categories, "brand": brands, "price_band": PRICE_BANDS}[dimension]

    # 2. fold the persisted, shuffled signal events with the global codes and cut points
    shared = delayed((list(categories), list(brands), cuts), pure=True)
    engagement = shuffled.map_partitions(
        _affinity_partition, now_ms, config, backend, dimension, shared, meta=_affinity_meta()
    )
    (engagement,) = dask.persist(engagement, **compute)
    del shuffled, held  # the engagement table is all that steps 3 and 4 read

    # 3. population totals per value over all partitions
    n_values = len(names)
    sums = dask.compute(*[delayed(_affinity_totals)(p, n_values) for p in engagement.to_delayed()], **compute)
    totals = np.zeros(n_values)
    n_users = 0
    for part_totals, part_users in sums:
        totals += part_totals
        n_users += part_users
    grand = totals.sum()
    share = totals / grand if grand > 0 else np.zeros_like(totals)

    # 4. each user's top k with the global totals
    frame = engagement.map_partitions(
        _affinity_topk,
        delayed((totals, list(names)), pure=True),
        int(k),
        float(config.shrinkage),
        backend,
        meta=_topk_meta(),
    )
    assert isinstance(frame, dd.DataFrame)
    return DaskAffinities(
        frame=frame,
        dimension=dimension,
        k=int(k),
        now_ms=int(now_ms),
        n_users=n_users,
        values=tuple(names),
        population_share=share,
        categories=categories,
        price_cuts=cuts,
        config=config,
        backend=backend,
    )
