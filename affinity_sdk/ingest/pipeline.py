"""The one ingest pipeline: every input takes the same path into the profile store.

``decode -> screen (bad numbers, future events) -> forget suppression -> dedupe (event_id) ->
consent (global codes to the flags, per-medium ones to the channel consent table) -> fold into
every view``. A call that raises changes nothing: ids interned while decoding
are rolled back, the dedupe window and the flags are touched only after the last step that can
raise, and the views fold last. Users whose events were all dropped (replays, suppressed,
rejected) are not interned, so a dropped event never creates a profile.

Examples
--------
>>> from affinity_sdk.profile.store import ProfileStore
>>> store = ProfileStore()
>>> line = b'{"type":"app_opened","user_id":"ann","timestamp":1767225600000,"event_id":"e1"}'
>>> report = store.ingest(line + b"\\n" + line)
>>> report.accepted, report.n_duplicates, store.n_users
(1, 1, 1)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk.capture.events import Event as EventStruct
from affinity_sdk.errors import SchemaError
from affinity_sdk.ingest.batch import EventBatch, Interners, SourcePositions, take_rows
from affinity_sdk.ingest.frames import frame_kind
from affinity_sdk.ingest.interner import INTERNER_KINDS
from affinity_sdk.ingest.ndjson import ndjson_batch, resolve_threads
from affinity_sdk.ingest.screen import screen_rows
from affinity_sdk.profile.channel_consent import decode_channel_rows
from affinity_sdk.profile.suppression import NOT_SUPPRESSED

if TYPE_CHECKING:
    from affinity_sdk.profile.store import ProfileStore

__all__ = ["Errors", "IngestInput", "IngestReport", "run_ingest"]

Errors = Literal["raise", "skip", "collect"]
#: What ``ingest`` takes: a batch, Structs, NDJSON / JSON / MessagePack bytes or text, or a
#: pandas / polars DataFrame or pyarrow Table / RecordBatch (the ``[arrow]`` extra; columns as in
#: ``EventBatch.from_arrow``, see :mod:`affinity_sdk.ingest.frames`).
IngestInput = EventBatch | EventStruct | Iterable[EventStruct] | bytes | bytearray | memoryview | str | Any
_NONE_REBORN: Final = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class IngestReport:
    """What one ``ingest`` call did: events accepted (folded), how many of them matched a scored
    signal, how many were rejected (``errors="skip"`` / ``"collect"``) and, with ``"collect"``,
    the ``(position, message)`` of each rejected one. ``n_duplicates`` counts replays dropped by
    the event-id window and ``n_suppressed`` events of forgotten users stamped before the forget
    (neither is a rejection); ``n_future`` the events dropped (and counted in ``n_rejected``) for
    lying more than ``max_future`` ahead; ``n_later`` the events set aside for lying after an
    ``until`` time (:meth:`Scorer.ingest_segment <affinity_sdk.score.scorer.Scorer.ingest_segment>`).
    ``user_codes`` holds the distinct store codes of the
    users whose events were folded, ascending (empty when none were)."""

    accepted: int
    scored: int
    n_rejected: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    n_duplicates: int = 0
    n_future: int = 0
    n_suppressed: int = 0
    n_later: int = 0
    user_codes: NDArray[np.int64] = field(
        default_factory=lambda: _NONE_REBORN.copy(), repr=False, compare=False
    )


def run_ingest(
    store: ProfileStore,
    data: IngestInput,
    *,
    format: Literal["ndjson", "json", "msgpack"] = "ndjson",
    errors: Errors = "raise",
    threads: int | None = 1,
) -> IngestReport:
    """Take ``data`` through the pipeline into ``store`` (the caller holds the store's lock).
    NDJSON bytes are parsed on ``threads`` threads (``None``: every core; the same result for
    any count, see :func:`~affinity_sdk.ingest.ndjson.ndjson_batch`)."""
    if errors not in ("raise", "skip", "collect"):
        raise ValueError(f"errors must be 'raise', 'skip' or 'collect' (got {errors!r})")
    threads = resolve_threads(threads)
    names = store.interners
    marks = [(interner, len(interner)) for interner in (getattr(names, name) for name in INTERNER_KINDS)]
    try:
        batch, n_rejected, rejected = _decode(data, names, format, errors, threads)
        n_decoded = len(batch)
        batch, n_future = _screen(store, batch, errors, rejected)
        n_rejected += n_decoded - len(batch)
    except BaseException:
        for interner, mark in marks:
            interner.truncate(mark)
        raise
    n_users_before = marks[0][1]
    batch, reborn_ms, n_suppressed = _drop_suppressed(store, batch, n_users_before)
    n_duplicates = 0
    if store.dedupe is not None and len(batch):
        replay = store.dedupe.seen(batch.event_id)
        n_duplicates = int(np.count_nonzero(replay))
        if n_duplicates:
            batch = take_rows(batch, ~replay)
    if len(batch) != n_decoded or n_rejected:
        # Rows were dropped after their users were interned: un-intern users left with none.
        batch, reborn_ms = _keep_used_new_users(names, batch, n_users_before, reborn_ms)
    scored, user_codes = _fold(store, batch, n_users_before, reborn_ms)
    return IngestReport(
        accepted=len(batch),
        scored=scored,
        n_rejected=n_rejected,
        rejected=rejected,
        n_duplicates=n_duplicates,
        n_future=n_future,
        n_suppressed=n_suppressed,
        user_codes=user_codes,
    )


def _decode(
    data: Any, names: Interners, fmt: str, errors: Errors, threads: int | None = 1
) -> tuple[EventBatch, int, list[tuple[int, str]]]:
    """Any accepted input as a batch in the store's interners, with the decoder's rejects."""
    if isinstance(data, EventBatch):
        return adopt(data, names), 0, []
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, bytes | bytearray | memoryview):
        from affinity_sdk.capture import decode

        if fmt == "ndjson":
            batch = ndjson_batch(data, names, errors=errors, threads=threads)
            return batch, batch.rejects.total, batch.rejects.errors
        decoders = {"json": decode.decode_json, "msgpack": decode.decode_msgpack}
        if fmt not in decoders:
            raise ValueError(f"unknown format {fmt!r}: use 'ndjson', 'json' or 'msgpack'")
        decoded = decoders[fmt](data, errors=errors)
        batch = EventBatch.from_events(decoded.events, names)
        batch.source = SourcePositions(
            np.asarray(decoded.positions, dtype=np.int64), lines=False, single=decoded.single
        )
        return batch, decoded.rejects.total, decoded.rejects.errors
    if frame_kind(data) is not None:  # a pandas / polars DataFrame, a pyarrow Table / RecordBatch
        return EventBatch.from_frame(data, names), 0, []
    if isinstance(data, msgspec.Struct):  # one event: its fields are at `$.field`
        batch = EventBatch.from_events([cast(EventStruct, data)], names)
        batch.source = SourcePositions(np.zeros(1, np.int64), lines=False, single=True)
        return batch, 0, []
    return EventBatch.from_events(data, names), 0, []


def adopt(batch: EventBatch, names: Interners, *, user_map: NDArray[np.int64] | None = None) -> EventBatch:
    """``batch`` with every code column expressed in ``names`` (interning what is new); with
    ``user_map`` (batch user code -> code in ``names``) users are mapped by it instead.

    Examples
    --------
    >>> ours = Interners()
    >>> _ = ours.users.intern("zed")
    >>> batch = EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"ann","timestamp":0}')
    >>> adopt(batch, ours).user.tolist()
    [1]
    """
    if batch.interners is names or len(batch) == 0:
        return batch
    theirs = batch.interners
    if user_map is not None:
        users = user_map[batch.user]
    else:
        # Only the users with events here: an id without events never makes a profile.
        their_names = theirs.users.names
        has_events = np.zeros(len(their_names), dtype=np.bool_)
        has_events[batch.user] = True
        present = np.flatnonzero(has_events)
        codes = np.full(len(their_names), -1, dtype=np.int64)
        codes[present] = names.users.intern_many([their_names[c] for c in present.tolist()])
        users = codes[batch.user]

    def remap(codes: NDArray[Any], kind: str) -> NDArray[Any]:
        mapping = getattr(names, kind).intern_many(getattr(theirs, kind).names)
        if np.array_equal(mapping, np.arange(mapping.shape[0])):
            return codes  # same codes on both sides (e.g. a fresh store): nothing to rewrite
        mapping = np.append(mapping, -1)  # code -1 (missing) stays -1
        remapped: NDArray[Any] = mapping[codes].astype(codes.dtype, copy=False)
        return remapped

    adopted = replace(
        batch,
        user=users,
        campaign=remap(batch.campaign, "campaigns"),
        item_product=remap(batch.item_product, "products"),
        item_category=remap(batch.item_category, "categories"),
        item_brand=remap(batch.item_brand, "brands"),
    )
    adopted.interners = names
    return adopted


def _screen(
    store: ProfileStore, batch: EventBatch, errors: Errors, rejected: list[tuple[int, str]]
) -> tuple[EventBatch, int]:
    """Drop rows :func:`~affinity_sdk.ingest.screen.screen_rows` flags (bad numbers, or later than
    ``max_future`` past the newest event and the clock); positions are input positions."""
    if len(batch) == 0:
        return batch, 0
    limit = None
    if store.max_future_ms is not None:
        limit = max(int(time.time() * 1000), store.latest_ms or 0) + store.max_future_ms
    bad, future, message = screen_rows(batch, max_ts_ms=limit)
    if not bad.any():
        return batch, 0
    rows = np.flatnonzero(bad).tolist()
    if errors == "raise":
        raise SchemaError(message(rows[0]), batch.position(rows[0]))
    if errors == "collect":
        rejected.extend((batch.position(row), message(row)) for row in rows)
    return take_rows(batch, ~bad), int(future.sum())


def _drop_suppressed(
    store: ProfileStore, batch: EventBatch, n_before: int
) -> tuple[EventBatch, NDArray[np.int64], int]:
    """Drop events of forgotten ids stamped at or before their forget. Returns the batch, the
    forget time of each user new to this call (``NOT_SUPPRESSED`` if never forgotten) and the
    number of events dropped."""
    n_new = len(store.interners.users) - n_before
    if len(store.suppression) == 0:
        return batch, _NONE_REBORN if n_new == 0 else np.full(n_new, NOT_SUPPRESSED, dtype=np.int64), 0
    new_names = store.interners.users.names[n_before:]
    reborn_new = store.suppression.forget_ms_of(new_names)
    if len(batch) == 0:
        return batch, reborn_new, 0
    until = np.concatenate([store.flags.reborn_ms[:n_before], reborn_new])
    suppressed = batch.ts_ms <= until[batch.user]
    n = int(np.count_nonzero(suppressed))
    return (take_rows(batch, ~suppressed) if n else batch), reborn_new, n


def _keep_used_new_users(
    names: Interners, batch: EventBatch, n_before: int, reborn_ms: NDArray[np.int64]
) -> tuple[EventBatch, NDArray[np.int64]]:
    """Un-intern the users new to this call whose every event was dropped, renumbering the rest."""
    users = names.users
    n_new = len(users) - n_before
    if n_new == 0:
        return batch, reborn_ms
    used = np.zeros(n_new, dtype=np.bool_)
    fresh = batch.user >= n_before
    used[batch.user[fresh] - n_before] = True
    if used.all():
        return batch, reborn_ms
    kept = np.flatnonzero(used)
    new_names = users.names[n_before:]
    users.truncate(n_before)
    users.intern_many([new_names[i] for i in kept.tolist()])
    renumber = np.full(n_new, -1, dtype=np.int64)
    renumber[kept] = np.arange(n_before, n_before + kept.shape[0])
    user = batch.user.copy()
    user[fresh] = renumber[batch.user[fresh] - n_before]
    return replace(batch, user=user), reborn_ms[kept]


def _fold(
    store: ProfileStore, batch: EventBatch, n_before: int, reborn_ms: NDArray[np.int64]
) -> tuple[int, NDArray[np.int64]]:
    """Grow the flags and views to the interner, set up reborn profiles, apply consent, fold.
    Returns how many events matched a scored signal and the distinct codes of the batch's users,
    ascending."""
    n_users = len(store.interners.users)
    store.grow(n_users)
    reborn = np.flatnonzero(reborn_ms != NOT_SUPPRESSED) if reborn_ms.shape[0] else _NONE_REBORN
    if reborn.shape[0]:
        store.flags.mark_reborn(n_before + reborn, reborn_ms[reborn])
    if len(batch) == 0:
        return 0, _NONE_REBORN
    consent_rows = batch.consent >= 0
    if consent_rows.any() if len(batch) > 1 else consent_rows[0]:
        users, ts_ms, codes = batch.user[consent_rows], batch.ts_ms[consent_rows], batch.consent[consent_rows]
        store.flags.apply_consent(users, ts_ms, codes)  # global decisions (codes 0 / 1)
        on_medium, media, revoked = decode_channel_rows(codes)
        if on_medium.any():
            store.channel_consent.apply(users[on_medium], media, ts_ms[on_medium], revoked)
    store.flags.touch(batch.user, batch.ts_ms)
    scored = 0
    for view in store.views.values():
        used = view.fold(batch)
        if view.name == "signals":
            scored = used
    if store.journal is not None and store.dedupe is not None and (len(batch) > 1 or batch.event_id[0]):
        store.journal.append(batch, rotations=store.dedupe.rotations)
    newest = int(batch.ts_ms.max())
    store.latest_ms = newest if store.latest_ms is None else max(store.latest_ms, newest)
    store.events_ingested += len(batch)
    return scored, _distinct_users(batch.user, n_users)


def _distinct_users(users: NDArray[np.int64], n_users: int) -> NDArray[np.int64]:
    """The distinct codes in ``users`` (all below ``n_users``), ascending: a sort for a batch much
    smaller than the store, else a mask over the store's codes (``np.unique`` costs as much as
    half a large fold)."""
    n = users.shape[0]
    if n == 1:
        return users.astype(np.int64, copy=True)
    if n * 256 < n_users:
        ordered = np.sort(users)
        keep = np.ones(n, dtype=np.bool_)
        np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
        few: NDArray[np.int64] = ordered[keep].astype(np.int64, copy=False)
        return few
    seen = np.zeros(n_users, dtype=np.bool_)
    seen[users] = True
    many: NDArray[np.int64] = np.flatnonzero(seen).astype(np.int64, copy=False)
    return many
