"""``Scorer``: the in-process API an app backend embeds.

Ingest events as they arrive (Structs, NDJSON / JSON / MessagePack bytes or an
:class:`~affinity_sdk.ingest.batch.EventBatch`), ask for one user's tier in microseconds, score everyone
in one vectorized pass, explain a score, save and load state atomically, merge shards exactly.
Late and out-of-order events give exactly the same state as in-order ones (forward decay).

A Scorer is a :class:`~affinity_sdk.profile.store.ProfileStore` (one interner, consent, forget,
dedupe, one pipeline) with its scored-signals view, the tier plan and tier-change callbacks;
:attr:`Scorer.affinity` reads the same store's affinity view. Parts live beside it: the calls about
one person (consent, forget, identify, traits) in :mod:`~affinity_sdk.score.person_calls`, the
lookups one compiled call answers (``tier_of``, ``score_of``) and the compiled one-event ingest in
:mod:`~affinity_sdk.score.live_calls`, and
:mod:`~affinity_sdk.score.explain`, :mod:`~affinity_sdk.score.ingest_tiers`,
:mod:`~affinity_sdk.score.segment_ingest` and :mod:`~affinity_sdk.score.state_file` (save / load).

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

Tier-change triggers fire at ingest too, for the users an ``ingest`` call touched (against the
cut-offs of the last ``score()``), and the next ``score()`` does not repeat them:

>>> changes = []
>>> _ = scorer.on_tier_change(lambda c: changes.append((c.user_id, c.old, c.new)))
>>> _ = scorer.ingest(b'{"type":"order_completed","user_id":"ann","timestamp":"2026-01-02T11:00:00Z",'
...                   b'"order_id":"o2","products":[],"revenue":90}')
>>> changes
[('ann', 'low', 'high')]
>>> changes.clear()
>>> _ = scorer.score()
>>> changes
[('bob', 'high', 'low')]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.config import ScoringConfig
from affinity_sdk.ingest.dedupe import DEFAULT_WINDOW
from affinity_sdk.ingest.ndjson import resolve_threads
from affinity_sdk.ingest.one_event import ingest_one, takes_one
from affinity_sdk.ingest.pipeline import Errors, IngestInput, IngestReport
from affinity_sdk.profile.rows import ensure_capacity
from affinity_sdk.profile.signals import SignalView
from affinity_sdk.profile.store import NowBeforeDataError, ProfileStore, ViewName
from affinity_sdk.score.explain import Explanation, SignalExplanation, explain
from affinity_sdk.score.ingest_tiers import ingest_changes
from affinity_sdk.score.live_calls import LiveCalls
from affinity_sdk.score.person_calls import PersonCalls
from affinity_sdk.score.results import ScoreResult
from affinity_sdk.score.segment_ingest import ingest_segment
from affinity_sdk.score.shadow import ShadowReport, Shadows, ShadowSpec, shadow_report, shadow_result
from affinity_sdk.score.state_file import load_state, write_state
from affinity_sdk.score.tier_changes import LABELS as _LABELS
from affinity_sdk.score.tier_changes import TierChange
from affinity_sdk.score.tier_changes import fire as _fire
from affinity_sdk.score.tiers import NO_TIER, Cutoffs, ScalarCutoffs, TierPlan

if TYPE_CHECKING:
    from affinity_sdk.ingest.batch import Interners
    from affinity_sdk.models.affinity import AffinityModel

__all__ = [
    "Explanation",
    "IngestReport",
    "NowBeforeDataError",
    "Scorer",
    "SignalExplanation",
    "TierChange",
]

_log = logging.getLogger(__name__)
_ERRORS = ("raise", "skip", "collect")


_NO_CUTS: NDArray[np.float64] = np.full(6, np.nan)


def _no_tiers(size: int) -> NDArray[np.int8]:
    return np.full(size, NO_TIER, dtype=np.int8)


def _refresh_every(value: int | None) -> int | None:
    """A checked ``refresh_cutoffs_every``: ``None`` or a positive whole number of events."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"refresh_cutoffs_every must be None or a positive integer (got {value!r})")
    return int(value)


#: From this many profiles on, :meth:`Scorer.score` sums raw scores on ``Scorer.threads`` threads.
PARALLEL_PROFILES: Final = 1 << 18


class Scorer(PersonCalls, LiveCalls):
    """Embeddable, thread-safe scorer over the one profile store.

    Parameters
    ----------
    config:
        A :class:`ScoringConfig`, a path to a TOML / JSON file, or ``None`` for the built-in default.
    backend:
        Kernel backend: ``"auto"`` (fastest available), ``"cpp"``, ``"numba"`` or ``"reference"``.
    dedupe_window:
        How many most recent distinct ``event_id`` values are remembered so a replayed event folds
        only once (default :data:`~affinity_sdk.ingest.dedupe.DEFAULT_WINDOW`, 16 MiB once used;
        ``None`` turns it off). See :mod:`affinity_sdk.ingest.dedupe` for memory, eviction and
        collisions.
    journal:
        Keep the folded events whose ids the dedupe window holds (:mod:`affinity_sdk.ingest.journal`,
        about 48 bytes per event), so that :meth:`merge` can take back an event both scorers
        folded. ``False``, for a scorer that is never merged (a one-shot job): replays are still
        dropped, and :meth:`merge` raises.
    max_future:
        Events stamped more than this (``"366d"``, seconds, a timedelta) after both the newest
        accepted event and the wall clock are rejected like schema errors, so one bad clock cannot
        drag the decay landmark and the default ``now`` decades ahead. ``None`` accepts any time.
    views:
        The store's views: ``"signals"`` (always) and ``"affinity"`` (for :attr:`affinity`).
    suppression_key:
        Secret key of the forget-suppression hashes (:mod:`affinity_sdk.profile.suppression`).
    refresh_cutoffs_every:
        Also refresh the tier cut-offs (the quantiles :meth:`tier_of` and the ingest-time
        ``on_tier_change`` triggers compare against) at the end of the ``ingest`` call that brings
        the number of events folded since the last refresh to this many (a pass over every user,
        like :meth:`score` without the tiers). ``None`` (the default): cut-offs refresh only on
        :meth:`score`, and are computed once on first use if there are none yet.
    shadow:
        Candidate configs (or TOML / JSON paths) named by their ``version``, or a ``{name:
        config}`` mapping, folded by the same ingest pass as the live config: compare them with
        :meth:`shadow_report`, score one with :meth:`shadow_score`, switch with :meth:`promote`
        (:mod:`affinity_sdk.score.shadow`; a candidate that changes only weights, tiers or the
        score mapping keeps no state of its own).
    threads:
        Threads that parse NDJSON given to :meth:`ingest` and sum the raw scores of
        :data:`PARALLEL_PROFILES` or more profiles in :meth:`score` (``None``: every core). Any
        count gives the same state and scores, bit for bit.
    """

    def __init__(
        self,
        config: ScoringConfig | str | Path | None = None,
        *,
        backend: str | None = "auto",
        dedupe_window: int | None = DEFAULT_WINDOW,
        max_future: str | float | timedelta | None = "366d",
        views: Sequence[ViewName] = ("signals",),
        suppression_key: bytes | None = None,
        refresh_cutoffs_every: int | None = None,
        shadow: ShadowSpec | None = None,
        threads: int | None = None,
        journal: bool = True,
    ) -> None:
        if "signals" not in views:
            raise ValueError("a Scorer keeps the 'signals' view")
        refresh_every = _refresh_every(refresh_cutoffs_every)
        store = ProfileStore(
            config,
            views=views,
            backend=backend,
            dedupe_window=dedupe_window,
            max_future=max_future,
            suppression_key=suppression_key,
            journal=journal,
        )
        self._attach(store, refresh_every, threads)
        if shadow is not None:
            self._shadows.add(shadow)

    def _attach(
        self, store: ProfileStore, refresh_every: int | None = None, threads: int | None = None
    ) -> None:
        self.threads = resolve_threads(threads)
        self._shadows = Shadows(store)
        self.store = store
        self.config: ScoringConfig = store.config
        self.signals: SignalView = store.view("signals")
        self.plan = TierPlan.from_config(store.config)
        self._lock = store.lock
        self._attach_live()
        self._tiers = np.zeros(0, dtype=np.int8)
        self._cutoffs: Cutoffs | None = None
        self._callbacks: list[Callable[[TierChange], None]] = []
        self._refresh_every = refresh_every
        self._since_cutoffs = 0  # events folded since the cut-offs were last computed
        # (of, as floats, as the array [enter, first, stay] for the compiled tier_at)
        self._scalar_cuts: tuple[Cutoffs | None, ScalarCutoffs | None, NDArray[np.float64]] = (
            None,
            None,
            _NO_CUTS,
        )

    def __repr__(self) -> str:
        return (
            f"Scorer(users={self.n_users}, signals={len(self.config.signals)}, "
            f"config={self.config.version!r}/{self.config.fingerprint}, backend={self.backend!r})"
        )

    @property
    def backend(self) -> str:
        """The kernel backend actually in use (``auto`` resolved)."""
        return self.signals.backend

    @property
    def interners(self) -> Interners:
        """The store's interners: build batches with them to skip re-interning on ingest."""
        return self.store.interners

    @property
    def n_users(self) -> int:
        return self.store.n_users

    @property
    def latest_ms(self) -> int | None:
        """Time of the newest folded event (epoch ms)."""
        return self.store.latest_ms

    @property
    def events_ingested(self) -> int:
        return self.store.events_ingested

    @property
    def source_position(self) -> Any:
        """The position stored by the last :meth:`save` (e.g. a Kafka offset)."""
        return self.store.source_position

    @property
    def affinity(self) -> AffinityModel:
        """Affinity queries (category, brand, price band, discount, lookalikes) over this
        scorer's profiles: same consent, forget and history."""
        from affinity_sdk.models.affinity import AffinityModel

        return AffinityModel.of(self.store)

    # --- ingest ----------------------------------------------------------------------------
    def ingest(
        self,
        data: IngestInput,
        *,
        format: Literal["ndjson", "json", "msgpack"] = "ndjson",
        errors: Errors = "raise",
    ) -> IngestReport:
        """Fold events into the store (:mod:`affinity_sdk.ingest.pipeline`). Order and batching do
        not change the result.

        ``errors="raise"`` rejects the whole call on the first bad event (nothing is ingested,
        no id is interned); ``"skip"`` and ``"collect"`` ingest the good events and report the bad
        ones in :attr:`IngestReport.rejected` as ``(position, message)``.

        With ``on_tier_change`` callbacks registered, every consenting user whose events the call
        folded is tiered at the latest event time against the current cut-offs, with hysteresis
        against the tier they last had; that tier is remembered (so :meth:`score` does not report
        the same change again) and the callbacks fire for each user whose tier changed (in profile
        code order, as in :meth:`score`), after the lock is released. Without callbacks no tier is
        computed here (users untouched by a call are re-tiered by :meth:`score`).
        """
        with self._lock:
            store = self.store
            # One event: one compiled call for the common case, else the scalar path
            # (affinity_sdk.ingest.one_event), else the batch pipeline.
            report = None
            if errors in _ERRORS:
                report = self._ingest_live(data, format)
                if report is None and takes_one(store, data, format):
                    report = ingest_one(store, data)
            if report is None:
                report = store.ingest(data, format=format, errors=errors, threads=self.threads)
            if not report.accepted or (self._refresh_every is None and not self._callbacks):
                return report
            changes = ingest_changes(self, report)
            callbacks = list(self._callbacks)
        _fire(changes, callbacks)
        return report

    def _scalar_cutoffs(self, now_ms: int) -> ScalarCutoffs:
        """The current cut-offs (computed if there are none) as Python floats, kept until they change."""
        cutoffs = self._cutoffs if self._cutoffs is not None else self._refresh_cutoffs(now_ms)
        of, cuts, _ = self._scalar_cuts
        if of is not cutoffs or cuts is None:
            cuts = ScalarCutoffs.of(*cutoffs)
            self._scalar_cuts = (cutoffs, cuts, np.array([*cuts.enter, *cuts.first, *cuts.down]))
        return cuts

    def _refresh_cutoffs(self, now_ms: int) -> Cutoffs:
        """Recompute the cut-offs over the consenting users at ``now_ms`` (lock held)."""
        self.store.grow(self.n_users)
        raw = self.signals.raw_scores(now_ms, threads=self._score_threads())
        self._cutoffs = self.plan.cutoffs(raw[self.store.visible()], backend=self.backend)
        self._since_cutoffs = 0
        return self._cutoffs

    def _score_threads(self) -> int:
        """Threads for a pass over every profile's raw score: ``threads`` from
        :data:`PARALLEL_PROFILES` profiles on (below it, waking threads costs more than they save)."""
        return self.threads if self.signals.state.n_profiles >= PARALLEL_PROFILES else 1

    # --- scoring ---------------------------------------------------------------------------
    def _grown_tiers(self) -> NDArray[np.int8]:
        """The tier each user had at the last :meth:`score` (``NO_TIER`` if none), one per user."""
        n = self.n_users
        self._tiers = ensure_capacity(self._tiers, self._tiers.shape[0], n, _no_tiers)
        return self._tiers[:n]

    def score(self, now: datetime | str | int | None = None) -> ScoreResult:
        """Score every consenting user at ``now`` (default: the latest event time seen; a time
        before it raises :class:`NowBeforeDataError`).

        Tiers are assigned with hysteresis against each user's last tier (from the previous
        ``score()`` run or an ingest-time trigger), quantile cut-offs are refreshed for
        :meth:`tier_of` and the ingest-time triggers, and ``on_tier_change`` callbacks fire once per
        user whose tier changed (a user seen for the first time counts as coming from Low).
        """
        with self._lock:
            now_ms = self.store.now_ms(now)
            self.store.grow(self.n_users)
            raw = self.signals.raw_scores(now_ms, threads=self._score_threads())
            decayed = self.signals.state.decayed(now_ms)
            eligible = self.store.visible()
            cut_up, cut_down = self.plan.cutoffs(raw[eligible], backend=self.backend)
            previous = self._grown_tiers()
            tiers = self.plan.assign(raw, cut_up, cut_down, previous, backend=self.backend)
            before = np.where(previous == NO_TIER, 0, previous)
            changed = np.flatnonzero(eligible & (tiers != before))
            previous[:] = np.where(eligible, tiers, previous)
            self._cutoffs = (cut_up, cut_down)
            self._since_cutoffs = 0
            score = self.plan.to_score(raw, backend=self.backend)
            names = self.interners.users.names
            callbacks = list(self._callbacks)
            # One object per changed user only for someone who listens (a first score() of 1M
            # users would otherwise build a million of them).
            changes = (
                [
                    TierChange(names[u], _LABELS[before[u]], _LABELS[tiers[u]], float(score[u]))
                    for u in changed.tolist()
                ]
                if callbacks
                else []
            )
            rows = np.flatnonzero(eligible)
            # Every user eligible (no consent revoked, none forgotten): all the names in order, and
            # the arrays made above as they are (no copy of each through `rows`).
            everyone = rows.shape[0] == len(names) == raw.shape[0] == decayed.shape[0]
            result = ScoreResult(
                user_ids=list(names) if everyone else [names[u] for u in rows.tolist()],
                raw_score=raw if everyone else raw[rows],
                score=score if everyone else score[rows],
                tier_code=tiers if everyone else tiers[rows],
                signal_names=self.config.signal_names,
                decayed=decayed if everyone else decayed[rows],
                now_ms=now_ms,
                config_version=self.config.version,
                config_fingerprint=self.config.fingerprint,
                backend=self.backend,
            )
        _log.debug("scored %d users at %d ms (%d tier changes)", len(rows), now_ms, len(changed))
        _fire(changes, callbacks)
        return result

    def explain(self, user_id: str, now: datetime | str | int | None = None) -> Explanation:
        """Each signal's decayed value, count, first / last seen and contribution, largest first.

        Raises ``KeyError`` for an unknown, opted-out or forgotten user.
        """
        return explain(self, user_id, now)

    def on_tier_change(self, callback: Callable[[TierChange], None]) -> Callable[[TierChange], None]:
        """Register ``callback(change)``; it runs for every user whose tier changed, after each
        :meth:`score` and after each :meth:`ingest` for the users whose events it folded (never for
        opted-out or forgotten users, and outside the lock). Returns the callback, so it works as a
        decorator.

        An exception raised by a callback propagates to the caller of ``score`` / ``ingest`` (the
        events are folded and the tiers remembered already) and the changes after it are not
        delivered."""
        with self._lock:
            self._callbacks.append(callback)
        return callback

    def ingest_segment(
        self, data: Any, *, errors: Errors = "raise", until: datetime | str | int | None = None
    ) -> IngestReport:
        """Ingest Segment / RudderStack calls (one, a list or a ``/v1/batch`` body, as JSON bytes or
        parsed): track / page / screen calls become events, and identify / alias calls stitch
        identities (:func:`~affinity_sdk.capture.segment_adapter.segment_links`), applied after the
        events of the same call, and record identify traits at the call's time
        (:func:`~affinity_sdk.capture.segment_adapter.segment_traits`, :meth:`traits_of`); a call
        that raises changes nothing. With ``until``, events and traits stamped after it are set
        aside (events counted in :attr:`IngestReport.n_later`: the CLI's ``--now``)."""
        return ingest_segment(self, data, errors=errors, until=until)

    # --- persistence and merging -----------------------------------------------------------
    def save(self, path: str | Path, *, source_position: Any = None) -> Path:
        """Atomically write the state (temp file + fsync + rename, SHA-256 checksummed).

        ``source_position`` (any MessagePack-able value, e.g. a Kafka offset) is stored so a
        restarted process can resume reading where this snapshot ends.
        """
        with self._lock:
            write_state(self, path, source_position)
            _log.info("saved the state of %d users to %s", self.store.n_users, path)
        return Path(path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        config: ScoringConfig | str | Path | None = None,
        *,
        backend: str | None = "auto",
        suppression_key: bytes | None = None,
        refresh_cutoffs_every: int | None = None,
        threads: int | None = None,
    ) -> Scorer:
        """Load a file written by :meth:`save`; a corrupt, truncated or foreign file raises
        :class:`StateError`. ``refresh_cutoffs_every`` and ``threads`` are as for :class:`Scorer`
        (not stored).

        A state keeps the config it was built with, and folded state cannot be re-weighted
        afterwards. ``config`` (a :class:`~affinity_sdk.config.ScoringConfig` or a TOML / JSON
        path, as for :class:`Scorer`) is the config the caller means to score with: a config
        whose fingerprint equals the stored one loads; any other raises
        :class:`~affinity_sdk.errors.ConfigError` naming both fingerprints and versions, so a job
        started after ``scoring.toml`` changed stops instead of scoring with the old config. To
        move to the new config, rebuild the state by replaying the events into
        ``Scorer(config)``; to keep the stored one, load without ``config``. ``None`` (the default)
        loads the stored config as it is. The fingerprint does not cover ``version``: a config that
        differs only in its version label loads, and the scorer keeps the stored config (its
        version label included).
        """
        refresh_every = _refresh_every(refresh_cutoffs_every)
        scorer = load_state(
            cls,
            path,
            config,
            backend=backend,
            suppression_key=suppression_key,
            refresh_every=refresh_every,
            threads=threads,
        )
        store = scorer.store
        _log.info(
            "loaded the state of %d users from %s (config %s)", store.n_users, path, store.config.fingerprint
        )
        return scorer

    def merge(self, other: Scorer) -> Scorer:
        """Add another scorer's state (same config) into this one, exactly; returns ``self``.

        Users are matched by id; the later consent decision wins; forget suppression and event-id
        windows are united (see :meth:`ProfileStore.merge
        <affinity_sdk.profile.store.ProfileStore.merge>`). Tier cut-offs are recomputed on the
        next :meth:`score` or :meth:`tier_of`. Both must shadow the same configs by the same names.
        """
        self._shadows.check_mergeable(other._shadows)
        self.store.merge(other.store)
        with self._lock:
            self._cutoffs = None
        return self

    # --- shadow configs (affinity_sdk.score.shadow) -----------------------------------------
    @property
    def shadows(self) -> dict[str, ScoringConfig]:
        """The candidate configs folded beside the live one, by name (a copy)."""
        with self._lock:
            return dict(self._shadows.configs)

    def shadow_score(self, name: str, now: datetime | str | int | None = None) -> ScoreResult:
        """Every visible user scored by candidate ``name`` at ``now``, as the first :meth:`score`
        after ``promote(name)`` would (read-only: no tier is remembered, no callback fires).

        Examples
        --------
        >>> import msgspec
        >>> from affinity_sdk.config import default_config
        >>> live = default_config()
        >>> scorer = Scorer(live, shadow={"no-decay": msgspec.structs.replace(live, signals={
        ...     "app_opened": msgspec.structs.replace(live.signals["app_opened"], half_life="inf")})})
        >>> _ = scorer.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":0}')
        >>> scorer.shadow_score("no-decay", now="1970-01-15T00:00:00Z").raw_score.tolist()
        [0.5]
        """
        with self._lock:
            return shadow_result(self, name, self.store.now_ms(now))

    def shadow_report(
        self, now: datetime | str | int | None = None, *, top: int | None = 100
    ) -> ShadowReport:
        """Each candidate against the live config at ``now`` (default: the latest event) over the
        visible users: the live-to-candidate tier transition matrix, the Spearman correlation of
        the raw scores and who would move tier (both tiers and scores, largest change first, at
        most ``top``; ``None``: all). Live tiers are those :meth:`score` would assign at ``now``;
        read-only.

        Examples
        --------
        >>> import msgspec
        >>> from affinity_sdk.config import default_config
        >>> live = default_config()
        >>> scorer = Scorer(live, shadow=[msgspec.structs.replace(live, version="v2")])
        >>> _ = scorer.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":0}')
        >>> report = scorer.shadow_report()
        >>> report["v2"].n_moved, report["v2"].shares_state
        (0, True)
        """
        with self._lock:
            return shadow_report(self, self.store.now_ms(now), top)

    def promote(self, name: str, *, demote_as: str | None = None) -> Scorer:
        """Make candidate ``name`` the live config without re-ingesting; returns ``self``.

        Scores, tiers, :meth:`tier_of`, :meth:`explain`, saved files and results then follow the
        candidate's config (version and fingerprint included). Each user's last tier is kept as
        the hysteresis memory, so the next :meth:`score` fires ``on_tier_change`` for the users
        :meth:`shadow_report` listed as moving; cut-offs are recomputed on next use. The old live
        config is dropped, or kept as a shadow called ``demote_as`` (promote it back to undo).

        Examples
        --------
        >>> import msgspec
        >>> from affinity_sdk.config import default_config
        >>> live = default_config()
        >>> scorer = Scorer(live, shadow=[msgspec.structs.replace(live, version="v2")])
        >>> scorer.promote("v2", demote_as="v1").config.version, list(scorer.shadows)
        ('v2', ['v1'])
        """
        with self._lock:
            self._shadows.promote(name, demote_as)
            self.config = self.store.config
            self.signals = self.store.view("signals")
            self.plan = TierPlan.from_config(self.config)
            self._cutoffs = None
            self._since_cutoffs = 0
        return self

    def drop_shadow(self, name: str) -> None:
        """Stop shadowing candidate ``name`` (its own state, if any, is freed)."""
        with self._lock:
            self._shadows.drop(name)
