"""The map-side fold behind :func:`~affinity_sdk.scale.scores.score_dataset`: each input partition
is folded into per-user *partial rows* of the scores view where it was read, and only those rows
(and the ids of the events that feed the view) cross the network, never the events.

Four steps, one graph:

1. **read** each input partition into :class:`~affinity_sdk.ingest.batch.EventBatch` es (Parquet
   row groups straight from Arrow, product lines only where a revenue-scored event needs them;
   NDJSON and DataFrames through the lean frame), and in the same task split the ``event_id`` s
   of the events that feed the view (scored types, consent decisions) by a hash of the id;
2. **dedupe**: a reduction per id bucket names, for each partition, the ids whose first copy
   (in lake order) is in an earlier partition and those repeated inside it, so every id folds
   once, its first copy, as in one ``Scorer`` fed the lake in order, whatever the distance
   between the copies. The batches wait in the worker that read them meanwhile (the whole lake
   is in the workers' memory once, as lean numpy columns);
3. **fold** each partition, without its dropped copies and re-keyed to canonical ids where there
   are identity links (:func:`~affinity_sdk.scale.identity.rekey` of its distinct user ids, not
   of every event), into a fresh signals-only :class:`~affinity_sdk.profile.store.ProfileStore`
   (the single process's pipeline: screening, consent, the forward-decay kernels) and split its
   users by a hash of their id into
   :class:`Partial` rows: forward-decayed sums per signal at the partition's landmark and the
   latest global consent decision;
4. **combine** per user bucket: the partials are rebased to the latest landmark and added (the
   decay state's merge: :meth:`DecayState.merge <affinity_sdk.profile.decay.DecayState.merge>`'s
   arithmetic), the latest consent decision wins (:class:`~affinity_sdk.profile.flags.UserFlags`),
   and the bucket's consenting users are scored at ``now``.

Examples
--------
>>> both, one = user_buckets(["ann", "bob", "ann"], 4), user_buckets(["bob"], 4)
>>> both[0] == both[2] and both[1] == one[0] and bool(((0 <= both) & (both < 4)).all())
True
>>> repeated_ids(np.array([7, 8], np.uint64), np.array([8, 9, 9], np.uint64))  # later copies of 8, 9
{1: (array([8], dtype=uint64), array([9], dtype=uint64))}
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from os import fspath
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk import kernels
from affinity_sdk.capture.events import EVENT_TYPE_CODES, EVENT_TYPES
from affinity_sdk.config import ScoringConfig
from affinity_sdk.ingest.batch import EventBatch, take_rows
from affinity_sdk.ingest.dedupe import EventIdWindow
from affinity_sdk.ingest.interner import Interner, Interners
from affinity_sdk.kernels._dedupe_reference import GOLDEN
from affinity_sdk.profile.decay import DecayState
from affinity_sdk.profile.flags import NO_TIME, UserFlags
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.scale._common import STR, empty_frame, require_dask
from affinity_sdk.scale.identity import rekey
from affinity_sdk.scale.lake import FLAT_COLUMNS, batch_from_lean, infer_format, parquet_parts, read_events
from affinity_sdk.score.tiers import TierPlan

__all__ = [
    "FoldSpec",
    "Partial",
    "Repeats",
    "combine_partials",
    "fold_partition",
    "id_buckets",
    "input_readers",
    "lean_batches",
    "now_of",
    "parquet_batches",
    "read_partition",
    "repeated_ids",
    "scored_meta",
    "user_buckets",
]

_MIX: Final = np.uint64(GOLDEN)  # Fibonacci hashing, as the dedupe window's: spreads ids over buckets


def user_buckets(names: Any, n: int) -> NDArray[np.int64]:
    """The bucket (``0 .. n - 1``) of each user id (a sequence or Arrow array of strings): the
    same in every worker and process (FNV-1a of the id, as event ids are hashed)."""
    import pyarrow as pa

    from affinity_sdk.ingest.arrow import hash_strings

    column = names if isinstance(names, pa.Array) else pa.array(list(names), type=pa.large_string())
    return _id_bucket(hash_strings(column.cast(pa.large_string())), n)


def _id_bucket(ids: NDArray[np.uint64], n: int) -> NDArray[np.int64]:
    with np.errstate(over="ignore"):
        return (((ids * _MIX) >> np.uint64(32)) % np.uint64(n)).astype(np.int64)


@dataclass(frozen=True)
class FoldSpec:
    """How every partition is folded and scored (one pickled task argument)."""

    config: ScoringConfig
    backend: str | None
    n_buckets: int
    now_ms: int | None  # an explicit ``now`` (checked against every partition), else None

    def _types(self, revenue_only: bool) -> NDArray[np.bool_]:
        table = np.zeros(len(EVENT_TYPES), dtype=np.bool_)
        for name, value in zip(self.config.signal_names, self.config.value_fields, strict=True):
            table[EVENT_TYPE_CODES[name]] = value == "revenue" or not revenue_only
        return table

    def feeds(self, batch: EventBatch) -> NDArray[np.bool_]:
        """Events the scores view reads: a scored type or a consent decision."""
        return self._types(False)[batch.event_type] | (batch.consent >= 0)

    def lacks_revenue(self, batch: EventBatch) -> bool:
        """Whether an event of a type scored by its revenue has none (then decoding falls back
        on its products' price × quantity)."""
        return bool((self._types(True)[batch.event_type] & np.isnan(batch.revenue)).any())


@dataclass(frozen=True, eq=False)
class Partial:
    """One input partition's users of one bucket: ids, forward-decayed sums per signal at
    ``landmark_ms`` (``None``: nothing folded) and the latest global consent decision
    (``consent_ms`` :data:`~affinity_sdk.profile.flags.NO_TIME` where there is none), and the
    partition's latest event time: every bucket gets a part of every partition, so each
    knows the default ``now`` without another task."""

    users: Any  # a pyarrow string array
    acc: NDArray[np.float64]
    landmark_ms: int | None
    consent_ms: NDArray[np.int64]
    opted_out: NDArray[np.bool_]
    latest_ms: int | None  # the partition's latest folded event (every bucket gets it)


# --- 1. read ------------------------------------------------------------------------------
#: One input partition: batches in lake order, all coded in one shared ``Interners``.
Batches = list[EventBatch]


def _nbytes(batch: EventBatch) -> int:
    """What a batch holds, for Dask's scheduler (its default guess, an object's header size,
    would make moving a partition between workers look free)."""
    return sum(v.nbytes for v in vars(batch).values() if isinstance(v, np.ndarray))


try:  # in every worker too: the task functions are imported from this module
    importlib.import_module("dask.sizeof").sizeof.register(EventBatch)(_nbytes)
except ImportError:  # the package imports without Dask
    pass


def parquet_batches(path: str, row_groups: list[int], filesystem: Any, spec: FoldSpec) -> Batches:
    """One Parquet input partition (whole row groups of one file), decoded by
    :meth:`EventBatch.from_arrow <affinity_sdk.ingest.batch.EventBatch.from_arrow>` from the
    columns :func:`~affinity_sdk.scale.lake.read_events` reads (a worker task).

    The nested ``products`` column (a third of the reading) is read only for a row group where
    an event scored by its revenue has none, as decoding then takes the products' price ×
    quantity: the other events' product lines feed no score."""
    import pyarrow.parquet as pq

    names = Interners()
    batches: Batches = []
    with pq.ParquetFile(path, filesystem=filesystem) as file:
        columns = [c for c in FLAT_COLUMNS if c in file.schema_arrow.names]
        lean = [c for c in columns if c != "products"]
        for g in row_groups:
            # Row group by row group: nested columns cannot be read into one table in one call.
            batch = EventBatch.from_arrow(file.read_row_group(g, columns=lean), names)
            if len(lean) < len(columns) and spec.lacks_revenue(batch):
                batch = EventBatch.from_arrow(file.read_row_group(g, columns=columns), names)
            batches.append(batch)
    return batches


def lean_batches(frame: Any, spec: FoldSpec) -> Batches:
    """A lean frame (NDJSON block, DataFrame partition) as batches (``spec`` is unused: its
    columns are read already)."""
    return [batch_from_lean(frame)]


def _rekeyed(batches: Batches, mapping: Any) -> Batches:
    """``batches`` with linked user ids replaced by canonical ids: a lookup per distinct user,
    not per event (ids that become one are recoded to one)."""
    import pandas as pd

    if mapping is None or not batches:
        return batches
    names = pd.DataFrame({"user_id": pd.Series(batches[0].interners.users.names, dtype=STR)})
    canonical = rekey(names, mapping)
    if canonical is names:
        return batches
    codes, uniques = pd.factorize(canonical["user_id"], sort=False)
    interners = copy.copy(batches[0].interners)
    interners.users = Interner(uniques.tolist())
    recode = codes.astype(np.int64)
    return [replace(b, user=recode[b.user], interners=interners) for b in batches]


# --- 2. dedupe ----------------------------------------------------------------------------
def _fed_ids(batches: Batches, spec: FoldSpec) -> tuple[NDArray[np.uint64], list[NDArray[np.bool_]]]:
    """The ids of the events that feed the view (in order), and per batch the mask of them."""
    masks = [spec.feeds(b) & (b.event_id != 0) for b in batches]
    ids = [b.event_id[m] for b, m in zip(batches, masks, strict=True)]
    return (ids[0] if len(ids) == 1 else np.concatenate(ids)) if ids else np.zeros(0, np.uint64), masks


def _split(keys: NDArray[np.int64], n: int) -> list[NDArray[np.int64]]:
    """Positions of each key ``0 .. n - 1`` in order (a stable counting sort)."""
    small = keys.astype(np.uint16) if n <= 1 << 16 else keys
    order = np.argsort(small, kind="stable")  # radix sort for 16-bit keys
    bounds = np.searchsorted(small[order], np.arange(n + 1))
    return [order[bounds[b] : bounds[b + 1]] for b in range(n)]


def id_buckets(batches: Batches, spec: FoldSpec) -> tuple[NDArray[np.uint64], ...]:
    """The partition's fed ids split into ``spec.n_buckets`` buckets by id hash, each in the
    partition's order (a worker task)."""
    ids, _ = _fed_ids(batches, spec)
    return tuple(ids[rows] for rows in _split(_id_bucket(ids, spec.n_buckets), spec.n_buckets))


#: Per partition that holds repeats: the ids whose first copy is in an earlier partition (drop
#: every copy) and those whose first copy is its own (keep that one).
Repeats = dict[int, tuple[NDArray[np.uint64], NDArray[np.uint64]]]


def _later_copies(ids: NDArray[np.uint64]) -> NDArray[np.bool_]:
    """Where an id (none 0) occurred before in ``ids``: the compiled probe of a dedupe window big
    enough to hold them all (a fifth of the time of pandas' ``duplicated`` on 3.4M ids)."""
    return EventIdWindow(max(1, ids.shape[0])).seen(ids)


def repeated_ids(*parts: NDArray[np.uint64]) -> Repeats:
    """One id bucket, its ids from each partition in lake order: the repeats (a worker task)."""
    import pandas as pd

    sizes = np.array([p.shape[0] for p in parts], dtype=np.int64)
    if sizes.sum() == 0:
        return {}
    ids = np.concatenate(parts)
    repeat = _later_copies(ids)
    again = np.flatnonzero(repeat)
    if again.shape[0] == 0:
        return {}
    owner = np.repeat(np.arange(sizes.shape[0]), sizes)
    # The first copy of each repeated id (few: a lookup of them only).
    firsts = np.flatnonzero(~repeat & pd.Series(ids).isin(pd.unique(ids[again])).to_numpy())
    first_owner = owner[firsts][pd.Index(ids[firsts]).get_indexer(ids[again])]
    mine = owner[again]
    out: Repeats = {}
    for i in np.unique(mine).tolist():
        here = mine == i
        out[int(i)] = (
            np.unique(ids[again[here & (first_owner < i)]]),
            np.unique(ids[again[here & (first_owner == i)]]),
        )
    return out


# --- 3. fold ------------------------------------------------------------------------------
def _first_copies(batches: Batches, spec: FoldSpec, repeats: list[Any]) -> tuple[Batches, bool]:
    """``batches`` without the later copies of their fed ids (``repeats``: this partition's
    entries of :func:`repeated_ids`), and whether any was dropped."""
    if not repeats:
        return batches, False
    ids, masks = _fed_ids(batches, spec)
    earlier = np.concatenate([r[0] for r in repeats])
    own = np.concatenate([r[1] for r in repeats])
    drop = np.isin(ids, earlier)
    if own.shape[0]:
        rows = np.flatnonzero(np.isin(ids, own))
        drop[rows[_later_copies(ids[rows])]] = True
    kept: Batches = []
    start = 0
    for batch, fed in zip(batches, masks, strict=True):
        rows = np.flatnonzero(fed)
        keep = np.ones(len(batch), dtype=np.bool_)
        keep[rows[drop[start : start + rows.shape[0]]]] = False
        start += rows.shape[0]
        kept.append(take_rows(batch, keep))
    return kept, True


def fold_partition(
    read: tuple[Any, ...], index: int, spec: FoldSpec, mapping: Any, *repeats: Repeats
) -> tuple[Any, ...]:
    """Input partition ``index`` (:func:`read_partition`'s output) folded, without the copies
    ``repeats`` (of every id bucket) name, and split by user bucket into ``n_buckets``
    :class:`Partial` s (a worker task)."""
    import pyarrow as pa

    batches = _rekeyed(read[0], mapping)
    batches, dropped = _first_copies(batches, spec, [r[index] for r in repeats if index in r])
    store = ProfileStore(spec.config, views=("signals",), backend=spec.backend, dedupe_window=None)
    if batches and not dropped:
        # The batches' ids are interned already, each user with events: the store takes them
        # as they are instead of interning every id again (a signals-only store holds no other
        # reference to its interners).
        store.interners = batches[0].interners
    for batch in batches:
        if len(batch):
            store.ingest(batch)
    if spec.now_ms is not None:
        store.now_ms(spec.now_ms)  # NowBeforeDataError, as a Scorer holding these events
    n = store.n_users
    store.grow(n)
    state = store.view("signals").state
    state.ensure_profiles(n)
    names = pa.array(store.interners.users.names, type=pa.large_string())
    flags = store.flags
    pieces: list[Any] = [
        Partial(
            users=names.take(pa.array(rows)),
            acc=state.acc[rows],
            landmark_ms=state.landmark_ms,
            consent_ms=flags.consent_ms[rows],
            opted_out=flags.opted_out[rows],
            latest_ms=store.latest_ms,
        )
        for rows in _split(user_buckets(names, spec.n_buckets), spec.n_buckets)
    ]
    return tuple(pieces)


def now_of(frame: Any) -> int:
    """The ``now`` a bucket's score table was scored at (a worker task)."""
    return int(frame.attrs["now_ms"])


# --- 4. combine ---------------------------------------------------------------------------
def scored_meta(config: ScoringConfig, with_tier: bool) -> Any:
    """The empty score table: ``user_id``, ``raw_score``, ``score``, [``tier``,] each signal."""
    tier = {"tier": STR} if with_tier else {}
    signals = dict.fromkeys(config.signal_names, np.float64)
    return empty_frame({"user_id": STR, "raw_score": np.float64, "score": np.float64, **tier, **signals})


def combine_partials(spec: FoldSpec, markers: Sequence[str], *parts: Partial) -> Any:
    """One user bucket: its partial rows (in lake order) added per user, the latest consent
    decision applied, and its consenting users scored at ``now`` (``spec.now_ms``, else the
    latest event of all partitions) as one ``Scorer`` would; ``markers`` are canonical ids of
    identity links, which exist even without events. The time scored at is in ``attrs``."""
    import pandas as pd
    import pyarrow as pa

    config = spec.config
    now_ms = spec.now_ms
    if now_ms is None:
        latest = [p.latest_ms for p in parts if p.latest_ms is not None]
        now_ms = max(latest) if latest else 0
    users = pa.concat_arrays([p.users for p in parts] + [pa.array(list(markers), type=pa.large_string())])
    encoded = users.dictionary_encode()
    codes = encoded.indices.to_numpy().astype(np.int64)
    n = len(encoded.dictionary)
    state = DecayState(config.half_lives_s, backend=spec.backend)
    state.ensure_profiles(n)
    landmarks = [p.landmark_ms for p in parts if p.landmark_ms is not None]
    state.landmark_ms = max(landmarks) if landmarks else None
    start = 0
    for part in parts:
        mine, start = codes[start : start + len(part.users)], start + len(part.users)
        if part.landmark_ms is None or mine.shape[0] == 0:
            continue
        theirs = part.acc
        if part.landmark_ms != state.landmark_ms:
            assert state.landmark_ms is not None
            theirs = theirs.copy()  # as DecayState.merge rebases the other side's sums
            delta = state.landmark_ms - part.landmark_ms
            kernels.rebase(theirs, kernels.decay_factors(state.lam_per_ms, delta), backend=state.backend)
        state.acc[mine] += theirs  # a user is in one row of a partial
    flags = UserFlags()
    flags.grow(n)
    decided = np.concatenate([p.consent_ms for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    has = decided != NO_TIME
    if has.any():
        out = np.concatenate([p.opted_out for p in parts])[has]
        flags.apply_consent(codes[: decided.shape[0]][has], decided[has], np.where(out, 0, 1).astype(np.int8))
    rows = np.flatnonzero(flags.visible())
    weights = np.asarray(config.weights, dtype=np.float64)
    raw = state.raw_scores(weights, now_ms)[rows]
    decayed = state.decayed(now_ms)[rows]
    names = encoded.dictionary.take(pa.array(rows))
    cols: dict[str, Any] = {
        "user_id": pd.Series(pd.array(names, dtype=STR)),
        "raw_score": raw,
        "score": TierPlan.from_config(config).to_score(raw),
    }
    for i, name in enumerate(config.signal_names):
        cols[name] = decayed[:, i]
    table = pd.DataFrame(cols)
    table.attrs["now_ms"] = now_ms
    return table


def input_readers(
    source: Any,
    *,
    format: Any,
    blocksize: str | int,
    rows_per_partition: int,
    errors: Any,
    reader: Any,
) -> list[tuple[Callable[..., Batches], tuple[Any, ...]]]:
    """How to read each input partition, in lake order: a function and its arguments (for
    :func:`read_partition`). Parquet row groups are decoded straight from Arrow, anything else
    through :func:`~affinity_sdk.scale.lake.read_events`' lean frames (delayed)."""
    dd = require_dask()
    if not isinstance(source, dd.DataFrame):
        many = source if isinstance(source, list | tuple) else [source]
        paths = [fspath(p) for p in many]
        if paths and (infer_format(paths) if format == "auto" else format) == "parquet":
            tasks = parquet_parts(paths, rows_per_partition)
            if not tasks:
                raise ValueError(f"no events found at {paths}")
            return [(parquet_batches, task) for task in tasks]
    events = read_events(
        source,
        format=format,
        blocksize=blocksize,
        rows_per_partition=rows_per_partition,
        errors=errors,
        reader=reader,
    )
    return [(lean_batches, (p,)) for p in events.to_delayed()]


def read_partition(
    read: Callable[..., Batches], args: tuple[Any, ...], spec: FoldSpec, dedupe: bool
) -> tuple[Any, ...]:
    """One input partition read (``read(*args, spec)``), and with ``dedupe`` its fed ids split
    by id bucket (:func:`id_buckets`) in the same task, where the batches are (a worker task)."""
    batches = read(*args, spec)
    return (batches, *id_buckets(batches, spec)) if dedupe else (batches,)
