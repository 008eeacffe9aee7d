"""``Scorer``: the in-process API an app backend embeds.

Ingest events as they arrive (Structs, NDJSON / JSON / MessagePack bytes or an
:class:`~affinity_sdk.ingest.batch.EventBatch`), ask for one user's tier in microseconds, score everyone
in one vectorized pass, explain a score, save and load state atomically, merge shards exactly.
Late and out-of-order events give exactly the same state as in-order ones (forward decay).

Examples
--------
>>> from affinity_sdk import Scorer
>>> scorer = Scorer()   # the built-in default config
>>> _ = scorer.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":"2026-01-01T10:00:00Z"}')
>>> _ = scorer.ingest(b'{"type":"order_completed","user_id":"bob","timestamp":"2026-01-02T10:00:00Z",'
...                   b'"order_id":"o1","products":[],"revenue":30}')
>>> result = scorer.score()
>>> dict(zip(result.user_ids, result.tier.tolist()))
{'ann': 'low', 'bob': 'high'}
>>> scorer.tier_of("bob"), round(scorer.score_of("bob"), 1)
('high', 50.0)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard, cast

import msgspec
import numpy as np
from numpy.typing import NDArray

from affinity_sdk import kernels
from affinity_sdk.capture.events import EVENT_TYPE_CODES, EVENT_TYPES
from affinity_sdk.capture.events import Event as EventStruct
from affinity_sdk.config import ScoringConfig, default_config
from affinity_sdk.errors import ConfigError, SchemaError, StateError
from affinity_sdk.ingest.batch import TOMBSTONE, EventBatch, Interner, Interners, SourcePositions
from affinity_sdk.ingest.dedupe import DEFAULT_WINDOW, EventIdWindow, screen_rows, take_rows
from affinity_sdk.kernels import empty_records
from affinity_sdk.profile.decay import DecayState
from affinity_sdk.score.results import TIER_LABELS, ScoreResult

__all__ = ["Explanation", "IngestReport", "Scorer", "SignalExplanation", "TierChange"]

Errors = Literal["raise", "skip", "collect"]
TierLabel = Literal["low", "medium", "high"]
_NO_TIER = -1
_NO_CONSENT_MS = np.iinfo(np.int64).min
_STATE_KIND = "affinity_sdk.Scorer"


@dataclass(frozen=True)
class IngestReport:
    """What one ``ingest`` call did: events accepted, how many of them matched a scored signal,
    how many were rejected (``errors="skip"`` / ``"collect"``) and, with ``"collect"``, the
    ``(position, message)`` of each rejected one. ``n_duplicates`` counts replays dropped by the
    event-id window (not rejections); ``n_future`` the events dropped (and counted in
    ``n_rejected``) for lying more than ``max_future`` ahead."""

    accepted: int
    scored: int
    n_rejected: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    n_duplicates: int = 0
    n_future: int = 0


@dataclass(frozen=True)
class TierChange:
    """A user's tier moved between two ``score()`` runs (passed to ``on_tier_change`` callbacks)."""

    user_id: str
    old: TierLabel
    new: TierLabel
    score: float


class SignalExplanation(msgspec.Struct, frozen=True, kw_only=True):
    """One signal's part in a user's score."""

    signal: str
    weight: float
    decayed: float
    contribution: float
    count: int
    total: float
    first_seen_ms: int | None
    last_seen_ms: int | None


class Explanation(msgspec.Struct, frozen=True, kw_only=True):
    """Why a user has their score: contributions sorted by absolute size, largest first."""

    user_id: str
    now_ms: int
    raw_score: float
    score: float
    tier: TierLabel
    signals: list[SignalExplanation]


class Scorer:
    """Embeddable, thread-safe scorer over exact time-decayed per-user state.

    Parameters
    ----------
    config:
        A :class:`ScoringConfig`, a path to a TOML / JSON file, or ``None`` for the built-in default.
    backend:
        Kernel backend: ``"auto"`` (fastest available), ``"cpp"``, ``"numba"`` or ``"reference"``.
    dedupe_window:
        How many most recent distinct ``event_id`` values are remembered so a replayed event folds
        only once (default :data:`~affinity_sdk.ingest.dedupe.DEFAULT_WINDOW`, 16 MiB once used; ``None``
        turns it off). See :mod:`affinity_sdk.ingest.dedupe` for memory, eviction and collisions.
    max_future:
        Events stamped more than this (``"366d"``, seconds, a timedelta) after both the newest
        accepted event and the wall clock are rejected like schema errors, so one bad clock cannot
        drag the decay landmark and the default ``now`` decades ahead. ``None`` accepts any time.
    """

    def __init__(
        self,
        config: ScoringConfig | str | Path | None = None,
        *,
        backend: str | None = "auto",
        dedupe_window: int | None = DEFAULT_WINDOW,
        max_future: str | float | timedelta | None = "366d",
    ) -> None:
        if config is None:
            config = default_config()
        elif not isinstance(config, ScoringConfig):
            config = ScoringConfig.load(config)
        self.config: ScoringConfig = config
        self.interners = Interners()
        self._state = DecayState(config.half_lives_s, backend=backend)
        self._lock = threading.RLock()
        self._weights = np.asarray(config.weights, dtype=np.float64)
        self._signal_of_type = np.full(len(EVENT_TYPES), -1, dtype=np.int64)
        for i, name in enumerate(config.signal_names):
            self._signal_of_type[EVENT_TYPE_CODES[name]] = i
        self._decays_revenue = np.array([v == "revenue" for v in config.value_fields], dtype=np.bool_)
        self._opted_out = np.zeros(0, dtype=np.bool_)
        self._forgotten = np.zeros(0, dtype=np.bool_)
        self._tiers = np.zeros(0, dtype=np.int8)
        self._consent_ms = np.zeros(0, dtype=np.int64)  # time of the consent event in force
        self._cutoffs: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None
        self._callbacks: list[Callable[[TierChange], None]] = []
        self.latest_ms: int | None = None
        self.events_ingested = 0
        self.source_position: Any = None
        self._dedupe = EventIdWindow(dedupe_window) if dedupe_window is not None else None
        self._max_future_ms = _max_future_ms(max_future)

    def __repr__(self) -> str:
        return (
            f"Scorer(users={self.n_users}, signals={len(self.config.signals)}, "
            f"config={self.config.version!r}/{self.config.fingerprint}, backend={self.backend!r})"
        )

    @property
    def backend(self) -> str:
        """The kernel backend actually in use (``auto`` resolved)."""
        return self._state.backend

    @property
    def n_users(self) -> int:
        return len(self.interners.users)

    # --- ingest ----------------------------------------------------------------------------
    def ingest(
        self,
        data: EventBatch | EventStruct | Iterable[EventStruct] | bytes | str,
        *,
        format: Literal["ndjson", "json", "msgpack"] = "ndjson",
        errors: Errors = "raise",
    ) -> IngestReport:
        """Fold events into the state. Order and batching do not change the result.

        ``errors="raise"`` rejects the whole call on the first bad event (nothing is ingested);
        ``"skip"`` and ``"collect"`` ingest the good events and report the bad ones in
        :attr:`IngestReport.rejected` as ``(position, message)``.
        """
        with self._lock:
            batch, n_rejected, rejected = self._to_batch(data, format, errors)
            n_before = len(batch)
            batch, n_future = self._drop_future(batch, errors, rejected)
            n_rejected += n_before - len(batch)
            n_duplicates = 0
            if self._dedupe is not None and len(batch):
                replay = self._dedupe.seen(batch.event_id)
                n_duplicates = int(replay.sum())
                batch = take_rows(batch, ~replay)
            scored = self._fold(batch)
        return IngestReport(
            accepted=len(batch),
            scored=scored,
            n_rejected=n_rejected,
            rejected=rejected,
            n_duplicates=n_duplicates,
            n_future=n_future,
        )

    def _drop_future(
        self, batch: EventBatch, errors: Errors, rejected: list[tuple[int, str]]
    ) -> tuple[EventBatch, int]:
        """Drop rows :func:`~affinity_sdk.ingest.dedupe.screen_rows` flags (bad numbers, or later than
        ``max_future`` past the newest event and the clock); positions are input positions
        (:meth:`EventBatch.position <affinity_sdk.ingest.batch.EventBatch.position>`)."""
        if len(batch) == 0:
            return batch, 0
        limit = None
        if self._max_future_ms is not None:
            limit = max(int(time.time() * 1000), self.latest_ms or 0) + self._max_future_ms
        bad, future, message = screen_rows(batch, max_ts_ms=limit)
        if not bad.any():
            return batch, 0
        rows = np.flatnonzero(bad).tolist()
        if errors == "raise":
            raise SchemaError(message(rows[0]), batch.position(rows[0]))
        if errors == "collect":
            rejected.extend((batch.position(row), message(row)) for row in rows)
        return take_rows(batch, ~bad), int(future.sum())

    def _to_batch(self, data: Any, fmt: str, errors: Errors) -> tuple[EventBatch, int, list[tuple[int, str]]]:
        if isinstance(data, EventBatch):
            return self._adopt(data), 0, []
        if isinstance(data, str):
            data = data.encode()
        if isinstance(data, bytes | bytearray | memoryview):
            from affinity_sdk.capture import decode

            if fmt == "ndjson":
                batch = EventBatch.from_ndjson(data, self.interners, errors=errors)
                return batch, batch.rejects.total, batch.rejects.errors
            decoders = {"json": decode.decode_json, "msgpack": decode.decode_msgpack}
            if fmt not in decoders:
                raise ValueError(f"unknown format {fmt!r}: use 'ndjson', 'json' or 'msgpack'")
            decoded = decoders[fmt](data, errors=errors)
            batch = EventBatch.from_events(decoded.events, self.interners)
            batch.source = SourcePositions(
                np.asarray(decoded.positions, dtype=np.int64), lines=False, single=decoded.single
            )
            return batch, decoded.rejects.total, decoded.rejects.errors
        if isinstance(data, msgspec.Struct):  # one event: its fields are at `$.field`
            batch = EventBatch.from_events([cast(EventStruct, data)], self.interners)
            batch.source = SourcePositions(np.zeros(1, np.int64), lines=False, single=True)
            return batch, 0, []
        return EventBatch.from_events(data, self.interners), 0, []

    def _adopt(self, batch: EventBatch) -> EventBatch:
        """The batch with its user codes expressed in this scorer's interner."""
        if batch.interners is self.interners or len(batch) == 0:
            return batch
        mapping = np.fromiter(
            (self.interners.users.intern(name) for name in batch.interners.users.names),
            dtype=np.int64,
            count=len(batch.interners.users),
        )
        adopted = EventBatch(**{**batch.__dict__, "user": mapping[batch.user]})
        adopted.interners = self.interners
        return adopted

    def _fold(self, batch: EventBatch) -> int:
        n_users = self.n_users
        self._state.ensure_profiles(n_users)
        self._grow_flags(n_users)
        if len(batch) == 0:
            return 0
        self._apply_consent(batch)
        signal = self._signal_of_type[batch.event_type]
        keep = signal >= 0
        signal = signal[keep]
        revenue = batch.revenue[keep]
        revenue = np.where(np.isnan(revenue), 0.0, revenue)
        values = np.where(self._decays_revenue[signal], revenue, 1.0)
        self._state.add(batch.user[keep], signal, batch.ts_ms[keep], values)
        newest = int(batch.ts_ms.max())
        self.latest_ms = newest if self.latest_ms is None else max(self.latest_ms, newest)
        self.events_ingested += len(batch)
        return int(keep.sum())

    def _grow_flags(self, n_users: int) -> None:
        """Extend the per-user arrays to ``n_users`` rows. Each is a view of a buffer that doubles
        when full, so a stream of new users costs amortised O(1) per user, not a copy per call."""
        have = self._opted_out.shape[0]
        if have >= n_users:
            return
        capacity = max(n_users, 2 * have, 1024)
        fills = {"_opted_out": False, "_forgotten": False, "_tiers": _NO_TIER, "_consent_ms": _NO_CONSENT_MS}
        for name, fill in fills.items():
            current: NDArray[Any] = getattr(self, name)
            buffer = current.base
            if not _starts_with(buffer, current) or buffer.shape[0] < n_users:
                buffer = np.full(capacity, fill, dtype=current.dtype)
                buffer[:have] = current
            setattr(self, name, buffer[:n_users])

    def _apply_consent(self, batch: EventBatch) -> None:
        rows = np.flatnonzero(batch.consent >= 0)
        if rows.size == 0:
            return
        # The latest consent event per user wins, whatever order (or call) the events arrived in.
        order = rows[np.lexsort((batch.ts_ms[rows], batch.user[rows]))]
        users = batch.user[order]
        last = np.r_[users[1:] != users[:-1], True]
        users, rows = users[last], order[last]
        newer = batch.ts_ms[rows] >= self._consent_ms[users]
        users, rows = users[newer], rows[newer]
        self._consent_ms[users] = batch.ts_ms[rows]
        self._opted_out[users] = batch.consent[rows] == 0

    # --- scoring ---------------------------------------------------------------------------
    def _now_ms(self, now: datetime | str | int | None) -> int:
        if now is None:
            return self.latest_ms if self.latest_ms is not None else 0
        from affinity_sdk._units import to_epoch_ms

        return to_epoch_ms(now)

    def _eligible(self) -> NDArray[np.bool_]:
        n = self.n_users
        eligible: NDArray[np.bool_] = ~(self._opted_out[:n] | self._forgotten[:n])
        return eligible

    def _to_score(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        positive = np.maximum(raw, 0.0)
        score: NDArray[np.float64] = 100.0 * positive / (positive + self.config.score.half_point)
        return score

    def _raw_threshold(self, score: float) -> float:
        """The raw score whose 0-100 score is ``score`` (inverse of the mapping)."""
        if score >= 100.0:
            return float("inf")
        return self.config.score.half_point * score / (100.0 - score)

    def _compute_cutoffs(self, raw: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        t = self.config.tiers
        band = t.hysteresis
        if t.method == "absolute":
            up = np.array([self._raw_threshold(t.medium + band), self._raw_threshold(t.high + band)])
            down = np.array(
                [self._raw_threshold(max(t.medium - band, 0.0)), self._raw_threshold(max(t.high - band, 0.0))]
            )
            return up, down
        fractions = np.array([t.medium, t.high, min(t.medium + band, 1.0), min(t.high + band, 1.0)])
        fractions = np.concatenate([fractions, [max(t.medium - band, 0.0), max(t.high - band, 0.0)]])
        cuts = kernels.quantile_cutoffs(raw, fractions, backend=self.backend)
        if band == 0.0:
            return cuts[:2], cuts[:2]
        return cuts[2:4], cuts[4:6]

    def score(self, now: datetime | str | int | None = None) -> ScoreResult:
        """Score every consenting user at ``now`` (default: the latest event time seen).

        Tiers are assigned with hysteresis against the previous ``score()`` run, quantile
        cut-offs are refreshed for :meth:`tier_of`, and ``on_tier_change`` callbacks fire once
        per user whose tier changed (a user seen for the first time counts as coming from Low).
        """
        with self._lock:
            now_ms = self._now_ms(now)
            raw = self._state.raw_scores(self._weights, now_ms)
            decayed = self._state.decayed(now_ms)
            eligible = self._eligible()
            cut_up, cut_down = self._compute_cutoffs(raw[eligible])
            previous = self._tiers[: self.n_users]
            tiers = kernels.assign_tiers(raw, cut_up, cut_down, previous, backend=self.backend)
            before = np.where(previous == _NO_TIER, 0, previous)
            changed = np.flatnonzero(eligible & (tiers != before))
            self._tiers[: self.n_users] = np.where(eligible, tiers, previous)
            self._cutoffs = (cut_up, cut_down)
            score = self._to_score(raw)
            names = self.interners.users.names
            changes = [
                TierChange(
                    names[u], TIER_LABELS[before[u]].item(), TIER_LABELS[tiers[u]].item(), float(score[u])
                )
                for u in changed.tolist()
            ]
            callbacks = list(self._callbacks)
            rows = np.flatnonzero(eligible)
            result = ScoreResult(
                user_ids=[names[u] for u in rows.tolist()],
                raw_score=raw[rows],
                score=score[rows],
                tier_code=tiers[rows],
                signal_names=self.config.signal_names,
                decayed=decayed[rows],
                now_ms=now_ms,
                config_version=self.config.version,
                config_fingerprint=self.config.fingerprint,
                backend=self.backend,
            )
        for change in changes:
            for callback in callbacks:
                callback(change)
        return result

    def _raw_of(self, code: int, now_ms: int) -> float:
        coefs = self._weights * self._state.factors(now_ms)
        return float(self._state.records[code]["acc"] @ coefs)

    def _code(self, user_id: str) -> int | None:
        code = self.interners.users.lookup(user_id)
        if code is None or self._opted_out[code] or self._forgotten[code]:
            return None
        return code

    def score_of(self, user_id: str, now: datetime | str | int | None = None) -> float | None:
        """One user's 0-100 score, or ``None`` for an unknown, opted-out or forgotten user."""
        with self._lock:
            code = self._code(user_id)
            if code is None:
                return None
            return float(self._to_score(np.array([self._raw_of(code, self._now_ms(now))]))[0])

    def tier_of(self, user_id: str, now: datetime | str | int | None = None) -> TierLabel | None:
        """One user's tier against the cut-offs of the last :meth:`score` run (computed once on
        first use if there was none); ``None`` for an unknown, opted-out or forgotten user."""
        with self._lock:
            code = self._code(user_id)
            if code is None:
                return None
            now_ms = self._now_ms(now)
            if self._cutoffs is None:
                raw_all = self._state.raw_scores(self._weights, now_ms)
                self._cutoffs = self._compute_cutoffs(raw_all[self._eligible()])
            cut_up, cut_down = self._cutoffs
            raw = self._raw_of(code, now_ms)
            previous = int(self._tiers[code])
            tier = 0
            if raw > 0.0:
                for level in (1, 2):
                    threshold = cut_down[level - 1] if previous >= level else cut_up[level - 1]
                    if raw >= threshold:
                        tier = level
            label: TierLabel = TIER_LABELS[tier].item()
            return label

    def explain(self, user_id: str, now: datetime | str | int | None = None) -> Explanation:
        """Each signal's decayed value, count, first / last seen and contribution, largest first.

        Raises ``KeyError`` for an unknown, opted-out or forgotten user.
        """
        with self._lock:
            code = self._code(user_id)
            if code is None:
                raise KeyError(f"no scorable user {user_id!r}")
            now_ms = self._now_ms(now)
            record = self._state.records[code]
            decayed = record["acc"] * self._state.factors(now_ms)
            contributions = self._weights * decayed
            signals = [
                SignalExplanation(
                    signal=name,
                    weight=float(self._weights[i]),
                    decayed=float(decayed[i]),
                    contribution=float(contributions[i]),
                    count=int(record["count"][i]),
                    total=float(record["total"][i]),
                    first_seen_ms=int(record["first_ms"][i]) if record["count"][i] else None,
                    last_seen_ms=int(record["last_ms"][i]) if record["count"][i] else None,
                )
                for i, name in enumerate(self.config.signal_names)
            ]
            signals.sort(key=lambda s: (-abs(s.contribution), s.signal))
            raw = float(contributions.sum())
            tier = self.tier_of(user_id, now_ms) or "low"
            score = float(self._to_score(np.array([raw]))[0])
        return Explanation(
            user_id=user_id, now_ms=now_ms, raw_score=raw, score=score, tier=tier, signals=signals
        )

    def on_tier_change(self, callback: Callable[[TierChange], None]) -> Callable[[TierChange], None]:
        """Register ``callback(change)``; it runs after each :meth:`score` for every user whose tier
        changed (never for opted-out users). Returns the callback, so it works as a decorator."""
        with self._lock:
            self._callbacks.append(callback)
        return callback

    # --- consent ---------------------------------------------------------------------------
    def opt_out(self, user_id: str) -> None:
        """Exclude a user from results, exports and triggers until :meth:`opt_in`."""
        with self._lock:
            code = self.interners.users.intern(user_id)
            self._grow_flags(self.n_users)
            self._state.ensure_profiles(self.n_users)
            self._opted_out[code] = True

    def opt_in(self, user_id: str) -> None:
        """Undo :meth:`opt_out`."""
        with self._lock:
            code = self.interners.users.lookup(user_id)
            if code is not None:
                self._opted_out[code] = False

    def opted_out(self) -> list[str]:
        """The ids of the users now opted out: pass them as ``suppressed`` to
        :func:`~affinity_sdk.activate.segments.diff_segments` when memberships come from elsewhere.

        Examples
        --------
        >>> scorer = Scorer()
        >>> scorer.opt_out("ann")
        >>> scorer.opted_out()
        ['ann']
        """
        with self._lock:
            names = self.interners.users.names
            codes = np.flatnonzero(self._opted_out[: len(names)] & ~self._forgotten[: len(names)])
            return [names[c] for c in codes.tolist()]

    def forget(self, user_id: str) -> bool:
        """Erase every trace of a user: their state, flags and id (on the next :meth:`save` the file
        no longer holds them). Later events for the same id start a fresh profile. Returns whether
        the user was known."""
        with self._lock:
            code = self.interners.users.forget(user_id)
            if code is None:
                return False
            self._state.records[code] = empty_records(1, self._state.n_signals)[0]
            self._forgotten[code] = True
            self._opted_out[code] = False
            self._tiers[code] = _NO_TIER
            self._consent_ms[code] = _NO_CONSENT_MS
            return True

    # --- persistence and merging -----------------------------------------------------------
    def save(self, path: str | Path, *, source_position: Any = None) -> Path:
        """Atomically write the state (temp file + fsync + rename, SHA-256 checksummed).

        ``source_position`` (any MessagePack-able value, e.g. a Kafka offset) is stored so a
        restarted process can resume reading where this snapshot ends.
        """
        from affinity_sdk._persist import write_container

        with self._lock:
            if source_position is not None:
                self.source_position = source_position
            n = self.n_users
            header = {
                "config": msgspec.to_builtins(self.config),
                "fingerprint": self.config.fingerprint,
                "landmark_ms": self._state.landmark_ms,
                "latest_ms": self.latest_ms,
                "events_ingested": self.events_ingested,
                "source_position": self.source_position,
                "interners": {name: _dump_interner(getattr(self.interners, name)) for name in _INTERNERS},
            }
            arrays = {
                "records": self._state.records,
                "opted_out": self._opted_out[:n],
                "forgotten": self._forgotten[:n],
                "tiers": self._tiers[:n],
                "consent_ms": self._consent_ms[:n],
            }
            header["dedupe_window"] = None if self._dedupe is None else self._dedupe.generation_size
            if self._dedupe is not None:
                ids = self._dedupe.to_arrays()
                arrays["dedupe_previous"], arrays["dedupe_current"] = ids["previous"], ids["current"]
            if self._cutoffs is not None:
                arrays["cut_up"], arrays["cut_down"] = self._cutoffs
            write_container(path, _STATE_KIND, header, arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, backend: str | None = "auto") -> Scorer:
        """Load a file written by :meth:`save`; a corrupt, truncated or foreign file raises
        :class:`StateError`."""
        from affinity_sdk._persist import read_container

        header, arrays = read_container(path, _STATE_KIND)
        _check_state(path, header, arrays)
        try:
            config = msgspec.convert(header["config"], ScoringConfig)
        except (msgspec.ValidationError, ConfigError) as exc:
            raise StateError(f"{path}: stored config is invalid: {exc}") from None
        if config.fingerprint != header["fingerprint"]:
            raise StateError(f"{path}: config fingerprint mismatch (file {header['fingerprint']})")
        scorer = cls(config, backend=backend)
        for name in _INTERNERS:
            setattr(scorer.interners, name, _load_interner(header["interners"][name]))
        records = arrays["records"]
        n = scorer.n_users
        if records.shape != (n, len(config.signals)) or records.dtype != kernels.STATE_DTYPE:
            raise StateError(f"{path}: state arrays do not match the stored users / signals")
        scorer._state.ensure_profiles(n)
        scorer._state.records[:] = records
        scorer._state.landmark_ms = header["landmark_ms"]
        scorer._opted_out, scorer._forgotten = arrays["opted_out"], arrays["forgotten"]
        scorer._tiers, scorer._consent_ms = arrays["tiers"], arrays["consent_ms"]
        if "cut_up" in arrays:
            scorer._cutoffs = (arrays["cut_up"], arrays["cut_down"])
        scorer.latest_ms = header["latest_ms"]
        scorer.events_ingested = header["events_ingested"]
        scorer.source_position = header["source_position"]
        if "dedupe_window" in header:
            try:
                scorer._dedupe = (
                    None
                    if header["dedupe_window"] is None
                    else EventIdWindow.from_arrays(
                        header["dedupe_window"], arrays["dedupe_previous"], arrays["dedupe_current"]
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise StateError(f"{path}: stored dedupe window is invalid: {exc}") from None
            except MemoryError:
                # A hand-edited or foreign header can ask for any capacity.
                raise StateError(
                    f"{path}: stored dedupe window of {header['dedupe_window']} ids does not fit in memory"
                ) from None
        return scorer

    def merge(self, other: Scorer) -> Scorer:
        """Add another scorer's state (same config) into this one, exactly; returns ``self``.

        Users are matched by id; consent flags combine (opted out in either stays out).
        """
        if other.config.fingerprint != self.config.fingerprint:
            raise ConfigError(
                f"cannot merge scorers with different configs ({self.config.fingerprint} vs "
                f"{other.config.fingerprint})"
            )
        with self._lock, other._lock:
            names = other.interners.users.names
            mapping = np.fromiter(
                (self.interners.users.intern(name) if name != TOMBSTONE else -1 for name in names),
                dtype=np.int64,
                count=len(names),
            )
            self._state.ensure_profiles(self.n_users)
            self._grow_flags(self.n_users)
            live = mapping >= 0
            shifted = DecayState(self.config.half_lives_s, backend=self.backend)
            shifted.ensure_profiles(self.n_users)
            shifted.records[mapping[live]] = other._state.records[live]
            shifted.landmark_ms = other._state.landmark_ms
            self._state.merge(shifted)
            self._opted_out[mapping[live]] |= other._opted_out[live]
            if other.latest_ms is not None:
                self.latest_ms = (
                    other.latest_ms if self.latest_ms is None else max(self.latest_ms, other.latest_ms)
                )
            self.events_ingested += other.events_ingested
            if self._dedupe is not None and other._dedupe is not None:
                theirs = other._dedupe.to_arrays()
                self._dedupe.seen(theirs["previous"])
                self._dedupe.seen(theirs["current"])
            self._cutoffs = None
        return self


_INTERNERS = ("users", "products", "categories", "brands", "campaigns")


def _max_future_ms(value: str | float | timedelta | None) -> int | None:
    from affinity_sdk._units import parse_duration

    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"max_future: {exc}") from None
    return round(seconds * 1000) if seconds < 1e15 else None


class _StoredInterners(msgspec.Struct):
    users: list[str]
    products: list[str]
    categories: list[str]
    brands: list[str]
    campaigns: list[str]


class _StoredHeader(msgspec.Struct):
    config: dict[str, Any]
    fingerprint: str
    landmark_ms: int | None
    latest_ms: int | None
    events_ingested: Annotated[int, msgspec.Meta(ge=0)]
    source_position: Any
    interners: _StoredInterners


def _starts_with(buffer: Any, view: NDArray[Any]) -> TypeGuard[NDArray[Any]]:
    """Whether ``view`` is ``buffer[:k]`` for some ``k`` (the rows past it are then spare)."""
    return (
        isinstance(buffer, np.ndarray)
        and buffer.ndim == 1
        and buffer.dtype == view.dtype
        and buffer.strides == view.strides
        and buffer.ctypes.data == view.ctypes.data
    )


def _check_state(path: str | Path, header: Any, arrays: dict[str, NDArray[Any]]) -> None:
    """Refuse a well-formed, checksummed container whose content is not a Scorer's state (a
    foreign writer, a hand-edited file), so :meth:`Scorer.load` never returns garbage."""
    try:
        stored = msgspec.convert(header, _StoredHeader)
    except msgspec.ValidationError as exc:
        raise StateError(f"{path}: malformed state header: {exc}") from None
    n = len(stored.interners.users)
    expected: dict[str, Any] = {
        "opted_out": np.dtype(np.bool_),
        "forgotten": np.dtype(np.bool_),
        "tiers": np.dtype(np.int8),
        "consent_ms": np.dtype(np.int64),
    }
    for name, dtype in expected.items():
        arr = arrays.get(name)
        if arr is None or arr.dtype != dtype or arr.shape != (n,):
            raise StateError(f"{path}: state array {name!r} is missing or does not match the stored users")
    cuts = [arrays[k] for k in ("cut_up", "cut_down") if k in arrays]
    if len(cuts) == 1 or any(c.dtype != np.float64 or c.shape != (2,) for c in cuts):
        raise StateError(f"{path}: stored tier cut-offs are malformed")
    records = arrays.get("records")
    if records is None or records.dtype != kernels.STATE_DTYPE or records.ndim != 2:
        raise StateError(f"{path}: state records are missing or of the wrong type")
    sums = np.concatenate([records["acc"].ravel(), records["total"].ravel()])
    if not (np.isfinite(sums).all() and (sums >= 0).all() and (records["count"] >= 0).all()):
        raise StateError(f"{path}: state records hold negative or non-finite values")
    if ((arrays["tiers"] < _NO_TIER) | (arrays["tiers"] > 2)).any():
        raise StateError(f"{path}: stored tiers are out of range")
    landmark, latest = stored.landmark_ms, stored.latest_ms
    if landmark is not None and (latest is None or landmark > latest):
        raise StateError(f"{path}: decay landmark {landmark} lies after the newest event {latest}")


def _dump_interner(interner: Interner) -> list[str]:
    return list(interner.names)


def _load_interner(names: Sequence[str]) -> Interner:
    return Interner(names)
