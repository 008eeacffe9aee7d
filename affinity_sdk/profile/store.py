"""The one profile store: one interner, one set of per-user flags, and the views every score reads.

Everything a customer did folds into this store through the one ingest pipeline
(:mod:`affinity_sdk.ingest.pipeline`); every score is a view of it. The promises that cross views
are kept here, once:

- **consent**: the latest consent decision wins (events, :meth:`ProfileStore.opt_out` /
  :meth:`~ProfileStore.opt_in` calls and merged shards alike); :meth:`~ProfileStore.visible`
  is the mask every output filters by;
- **forget**: :meth:`~ProfileStore.forget` erases a profile from every view and leaves a keyed-hash
  suppression entry (:mod:`affinity_sdk.profile.suppression`);
- **dedupe**: one event-id window for every view;
- **save / load / merge**: one state file and one exact merge for every view.

Examples
--------
>>> store = ProfileStore()
>>> _ = store.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":1767225600000}')
>>> store.opt_out("ann")
>>> store.visible().tolist(), store.code_of("ann") is None
([False], True)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.config import ScoringConfig, load_scoring_config
from affinity_sdk.errors import AffinityError, ConfigError
from affinity_sdk.ingest.batch import TOMBSTONE, EventBatch, Interners, take_rows
from affinity_sdk.ingest.dedupe import DEFAULT_WINDOW, EventIdWindow
from affinity_sdk.ingest.interner import normalize_id
from affinity_sdk.ingest.journal import EventJournal, first_of_each_id
from affinity_sdk.ingest.pipeline import Errors, IngestInput, IngestReport, adopt, run_ingest
from affinity_sdk.profile.channel_consent import ChannelConsent, medium_code
from affinity_sdk.profile.flags import NO_TIME, UserFlags
from affinity_sdk.profile.identity import IdentityMap
from affinity_sdk.profile.signals import SignalView
from affinity_sdk.profile.store_container import STORE_FORMAT, store_from_container, store_to_container
from affinity_sdk.profile.suppression import NOT_SUPPRESSED, Suppression
from affinity_sdk.profile.traits import TraitStore
from affinity_sdk.profile.views import View, fold_row

__all__ = ["STORE_FORMAT", "VIEW_NAMES", "NowBeforeDataError", "ProfileStore", "ViewName"]

ViewName = Literal["signals", "affinity", "propensity", "products", "engagement"]
_serials = itertools.count()


class NowBeforeDataError(AffinityError, ValueError):
    """A score was asked for at a time before events already folded into the state."""


VIEW_NAMES: Final[tuple[ViewName, ...]] = ("signals", "affinity", "propensity", "products", "engagement")


def _make_view(name: str, config: ScoringConfig, backend: str | None, interners: Interners) -> View:
    if name == "signals":
        return SignalView(config, backend=backend)
    if name == "propensity":
        from affinity_sdk.profile.propensity_view import PropensityView

        return PropensityView(backend=backend)
    if name == "engagement":
        from affinity_sdk.profile.engagement_view import EngagementView

        return EngagementView(backend=backend)
    if name == "products":
        from affinity_sdk.profile.product_view import ProductView

        return ProductView(config.affinity, backend=backend, interners=interners)
    from affinity_sdk.profile.affinity_view import AffinityView

    return AffinityView(config.affinity, backend=backend, interners=interners)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class ProfileStore:
    """Profiles, their flags and their views, kept exactly and mergeably.

    Parameters
    ----------
    config:
        A :class:`ScoringConfig`, a path to a TOML / JSON file, or ``None`` for the built-in default.
    views:
        The views to keep: ``"signals"`` (the scored signals), ``"affinity"`` (category, brand,
        price band, discount sensitivity; :class:`~affinity_sdk.models.affinity.AffinityModel`),
        ``"propensity"`` (the propensity features;
        :meth:`~affinity_sdk.models.propensity.PropensityModel.score_profiles`) and ``"products"``
        (per-product interactions; :class:`~affinity_sdk.models.recommend.Recommender`) and
        ``"engagement"`` (message responses per medium and hour, message counts;
        :mod:`affinity_sdk.models.channels`).
    backend, dedupe_window, max_future, journal:
        As for :class:`~affinity_sdk.score.scorer.Scorer`.
    suppression_key:
        Key of the forget-suppression hashes (see :mod:`affinity_sdk.profile.suppression`).
    """

    def __init__(
        self,
        config: ScoringConfig | str | Path | None = None,
        *,
        views: Sequence[ViewName] = ("signals", "affinity"),
        backend: str | None = "auto",
        dedupe_window: int | None = DEFAULT_WINDOW,
        max_future: str | float | timedelta | None = "366d",
        suppression_key: bytes | None = None,
        journal: bool = True,
    ) -> None:
        self.config: ScoringConfig = load_scoring_config(config)
        unknown = [name for name in views if name not in VIEW_NAMES]
        if unknown or len(set(views)) != len(views) or not views:
            raise ValueError(f"views must be distinct names among {list(VIEW_NAMES)} (got {list(views)})")
        self.interners = Interners()
        self.views: dict[str, View] = {
            name: _make_view(name, self.config, backend, self.interners) for name in views
        }
        self.flags = UserFlags()
        self.suppression = Suppression(suppression_key)
        self.identity = IdentityMap()
        self.traits = TraitStore(suppression_key)  # identify traits (profile.traits)
        self.channel_consent = ChannelConsent()  # per-medium consent (profile.channel_consent)
        self.dedupe = EventIdWindow(dedupe_window, backend=backend) if dedupe_window is not None else None
        self.journal = EventJournal() if dedupe_window is not None and journal else None
        self.max_future_ms = _max_future_ms(max_future)
        self.latest_ms: int | None = None
        self.events_ingested = 0
        self.source_position: Any = None
        self._lock = threading.RLock()
        self._serial = next(_serials)  # the one lock order for two-store operations

    def __repr__(self) -> str:
        return f"ProfileStore(users={self.n_users}, views={list(self.views)}, latest_ms={self.latest_ms})"

    @property
    def lock(self) -> threading.RLock:
        """Held by every call; hold it to read several things consistently."""
        return self._lock

    @property
    def n_users(self) -> int:
        """Profile codes in use (retired ones included)."""
        return len(self.interners.users)

    def view(self, name: ViewName) -> Any:
        """The view called ``name``; ``KeyError`` with the kept names if it is not kept."""
        try:
            return self.views[name]
        except KeyError:
            raise KeyError(f"this store keeps no {name!r} view (it keeps {list(self.views)})") from None

    def grow(self, n_users: int) -> None:
        """Make room in the flags and every view for codes below ``n_users``."""
        self.flags.grow(n_users)
        self.channel_consent.grow(n_users)
        for view in self.views.values():
            view.grow(n_users)

    # --- ingest -----------------------------------------------------------------------------
    def ingest(
        self,
        data: IngestInput,
        *,
        format: Literal["ndjson", "json", "msgpack"] = "ndjson",
        errors: Errors = "raise",
        threads: int | None = 1,
    ) -> IngestReport:
        """Take events through the one pipeline (:mod:`affinity_sdk.ingest.pipeline`);
        ``threads`` parse NDJSON bytes (``None``: every core; the result is the same for any)."""
        with self._lock:
            return run_ingest(self, data, format=format, errors=errors, threads=threads)

    # --- who may be shown -------------------------------------------------------------------
    def visible(self) -> NDArray[np.bool_]:
        """Per profile code: may it appear in any output (consenting, not forgotten)?"""
        with self._lock:
            self.flags.grow(self.n_users)
            return self.flags.visible()

    def code_of(self, user_id: str) -> int | None:
        """The code of a visible user, ``None`` for an unknown, opted-out or forgotten one."""
        with self._lock:
            code = self.interners.users.lookup(user_id)
            if code is None or not self.is_visible(code):
                return None
            return code

    def is_visible(self, code: int) -> bool:
        """Whether profile ``code`` may appear in outputs (one lookup, not a whole mask)."""
        flags = self.flags
        return code < flags.n and not bool(flags.opted_out[code] or flags.retired[code])

    def now_ms(self, now: datetime | str | int | None) -> int:
        """``now`` in epoch ms (default: the latest folded event). A time before the latest folded
        event raises :class:`NowBeforeDataError`: the state holds those later events already."""
        if now is None:
            return self.latest_ms if self.latest_ms is not None else 0
        from affinity_sdk._units import to_epoch_ms

        now_ms = to_epoch_ms(now)
        if self.latest_ms is not None and now_ms < self.latest_ms:
            raise NowBeforeDataError(
                f"cannot score at {_iso(now_ms)}: the state already holds events up to "
                f"{_iso(self.latest_ms)} (score at or after it, or ingest only the events up to "
                f"{_iso(now_ms)})"
            )
        return now_ms

    # --- consent and forget -----------------------------------------------------------------
    def _decision_ms(self, at: datetime | str | int | None, code: int | None = None) -> int:
        """``at`` in ms; by default now (or the latest event, if later), and for a consent call
        on ``code`` after the decision in force, so a call always supersedes the one before."""
        if at is not None:
            from affinity_sdk._units import to_epoch_ms

            return to_epoch_ms(at)
        ms = max(_wall_ms(), self.latest_ms or NO_TIME)
        if code is not None and self.flags.consent_ms[code] != NO_TIME:
            ms = max(ms, int(self.flags.consent_ms[code]) + 1)
        return ms

    def _intern_profile(self, user_id: str) -> int:
        """The code of ``user_id``, creating an empty profile (reborn if it was forgotten)."""
        if user_id == TOMBSTONE:
            raise ValueError("user_id must be a non-empty string")
        code = self.interners.users.lookup(user_id)
        if code is not None:
            return code
        code = self.interners.users.intern(user_id)
        self.grow(self.n_users)
        forget_ms = self.suppression.forget_ms_of([user_id])
        if forget_ms[0] != NOT_SUPPRESSED:
            self.flags.mark_reborn(np.array([code], dtype=np.int64), forget_ms)
        return code

    def opt_out(
        self, user_id: str, *, at: datetime | str | int | None = None, medium: str | None = None
    ) -> None:
        """Revoke consent as of ``at`` (default: now, or the latest event if later): the user
        appears in no output until a later grant (:meth:`opt_in` or a ``consent_changed`` event).
        With ``medium`` ("email", "sms", "push", "in_app", "whatsapp") only that medium is revoked
        (:mod:`affinity_sdk.profile.channel_consent`); the user stays in every other output."""
        with self._lock:
            if medium is not None:
                medium_code(medium)  # an unknown medium raises before a profile is created
                self._channel_decision(self._intern_profile(user_id), medium, at, revoked=True)
                return
            code = self._intern_profile(user_id)
            self.flags.apply_consent(
                np.array([code]), np.array([self._decision_ms(at, code)]), np.zeros(1, dtype=np.int8)
            )

    def opt_in(
        self, user_id: str, *, at: datetime | str | int | None = None, medium: str | None = None
    ) -> None:
        """Grant consent as of ``at`` (on ``medium`` only, if given); an unknown user is left
        alone (no profile is created)."""
        with self._lock:
            code = self.interners.users.lookup(user_id)
            if code is not None and medium is not None:
                self._channel_decision(code, medium, at, revoked=False)
            elif code is not None:
                self.flags.apply_consent(
                    np.array([code]), np.array([self._decision_ms(at, code)]), np.ones(1, dtype=np.int8)
                )

    def _channel_decision(
        self, code: int, medium: str, at: datetime | str | int | None, *, revoked: bool
    ) -> None:
        column = medium_code(medium)
        self.channel_consent.grow(self.n_users)
        ms = self._decision_ms(at)
        if at is None:  # a call supersedes the decision before it, as for the global one
            ms = max(ms, int(self.channel_consent.decided_ms[code, column]) + 1)
        self.channel_consent.apply(np.array([code]), np.array([column]), np.array([ms]), np.array([revoked]))

    def opted_out(self) -> list[str]:
        """Ids of the known users now opted out."""
        with self._lock:
            names = self.interners.users.names
            codes = np.flatnonzero(self.flags.opted_out & ~self.flags.retired)
            return [names[c] for c in codes.tolist()]

    def _normal_id(self, user_id: str) -> str:
        """``user_id`` in the Unicode form the user interner keeps ids in (``normalize_id``)."""
        return normalize_id(user_id, self.interners.users.normalize)

    def forget(self, user_id: str, *, at: datetime | str | int | None = None) -> bool:
        """Erase ``user_id`` from every view and flag, and suppress their events stamped at or
        before ``at`` (default: now, or the latest event if later), whenever they arrive. A later
        event starts a new profile that stays opted out until a consent grant. Returns whether
        the user had a profile."""
        user_id = self._normal_id(user_id)  # suppression hashes the form events are interned in
        with self._lock:
            forget_ms = self._decision_ms(at)
            canonical = self.identity.canonical_of(user_id)
            linked = self.identity.remove(canonical)
            for name in {user_id, canonical, *linked}:  # every id of the person
                self.suppression.add(name, forget_ms)
            self.traits.drop({user_id, canonical, *linked})
            code = self.interners.users.lookup(user_id)
            for name in {user_id, *linked}:
                self.interners.users.drop_alias(name)
            if code is None:
                return False
            self._erase(np.array([code], dtype=np.int64))
            return True

    # --- identity ---------------------------------------------------------------------------
    def link(self, user_id: str, into: str) -> bool:
        """Stitch ``user_id`` into ``into`` (Segment ``identify``: anonymous id into user id;
        ``alias``: previous id into user id): one person from now on. Their profiles fold into
        one in every view (exactly: the state is additive), flags combine as in a merge (the later
        consent decision wins), and later events under either id land on the one profile; links
        compose and the result does not depend on when the link arrives. A forgotten id is never
        linked (returns ``False``: its old events must not reach another profile).

        Examples
        --------
        >>> store = ProfileStore(views=("signals",))
        >>> _ = store.ingest(b'{"type":"app_opened","user_id":"anon-7","timestamp":1767225600000}')
        >>> store.link("anon-7", "ann")
        True
        >>> _ = store.ingest(b'{"type":"app_opened","user_id":"anon-7","timestamp":1767225660000}')
        >>> store.interners.users.names, store.code_of("anon-7") == store.code_of("ann")
        (('', 'ann'), True)
        """
        if not user_id or not into:
            raise ValueError("both ids must be non-empty strings")
        user_id, into = self._normal_id(user_id), self._normal_id(into)
        with self._lock:
            if (
                len(self.suppression)
                and (self.suppression.forget_ms_of([user_id, into]) != NOT_SUPPRESSED).any()
            ):
                return False
            users = self.interners.users
            source = self.identity.canonical_of(user_id)
            target = self.identity.canonical_of(into)
            if source == target:
                return True
            into_code = self._intern_profile(target)
            from_code = users.lookup(source)
            moved = {source, *self.identity.aliases_of(source)}
            self.identity.add(source, target)
            self.traits.move(source, target)
            if from_code is not None and from_code != into_code:
                self._fold_profile(from_code, into_code)
            for name in moved:
                users.alias(name, into_code)
            return True

    def set_traits(
        self, user_id: str, traits: dict[str, Any], *, at: datetime | str | int | None = None
    ) -> bool:
        """Record ``identify`` traits for the person ``user_id`` names, as of ``at`` (default: now,
        or the latest event if later); the latest value of each trait wins
        (:mod:`affinity_sdk.profile.traits`). Creates no profile. Returns ``False`` (and records
        nothing) for a forgotten id when ``at`` is not after its forget.

        Examples
        --------
        >>> store = ProfileStore(views=("signals",))
        >>> store.set_traits("ann", {"plan": "gold"}, at=5)
        True
        >>> store.traits.of("ann"), store.n_users
        ({'plan': 'gold'}, 0)
        """
        if not user_id:
            raise ValueError("user_id must be a non-empty string")
        with self._lock:
            at_ms = self._decision_ms(at)
            if len(self.suppression) and self.suppression.forget_ms_of([user_id])[0] >= at_ms:
                return False
            self.traits.set(self.identity.canonical_of(user_id), traits, at_ms)
            return True

    def _fold_profile(self, source: int, target: int, *, whole: bool = False) -> None:
        """Add profile ``source`` into ``target`` in the flags and every view; retire ``source``.

        Each view folds the one row (:func:`~affinity_sdk.profile.views.fold_row`: work in
        proportion to the two profiles); ``whole`` takes the earlier path through each view's
        whole-state ``merge_rows`` and ``erase`` instead (tests and benches compare the two)."""
        self.grow(self.n_users)
        theirs, mine = np.array([source], dtype=np.int64), np.array([target], dtype=np.int64)
        self.flags.merge_rows(self.flags, theirs, mine)
        for view in self.views.values():
            if whole:
                view.merge_rows(view, theirs, mine)
                view.erase(theirs)
            else:
                fold_row(view, source, target)
        self.flags.reset(theirs)
        self.flags.retired[source] = True
        self.channel_consent.fold_into(source, target)
        if self.journal is not None:
            self.journal.move_user(source, target)
        self.interners.users.retire(source)

    def _erase(self, codes: NDArray[np.int64]) -> None:
        self.grow(self.n_users)
        for view in self.views.values():
            view.erase(codes)
        self.flags.reset(codes)
        self.flags.retired[codes] = True
        self.channel_consent.erase(codes)
        if self.journal is not None:
            self.journal.erase_users(codes)
        names = self.interners.users.names
        self.traits.drop(names[code] for code in codes.tolist())
        for code in codes.tolist():
            self.interners.users.forget(names[code])

    # --- merge ------------------------------------------------------------------------------
    def merge(self, other: ProfileStore) -> ProfileStore:
        """Add ``other`` (same config and views) into this store, exactly; returns ``self``.

        Users match by id. Consent: the later decision wins. Suppression entries are united, and
        a profile of a forgotten id survives only if all its events came after the forget (it then
        stays opted out until a later grant); one with earlier events is dropped whole, on either
        side. Event-id windows are united. Two threads merging a and b in opposite orders take the
        two locks in one global order, so they cannot deadlock.
        """
        if other is self:
            raise ValueError("cannot merge a store into itself")
        self._check_compatible(other)
        with ExitStack() as stack:
            for store in sorted((self, other), key=lambda s: s._serial):
                stack.enter_context(store._lock)
            self._merge_locked(other)
        return self

    def _check_compatible(self, other: ProfileStore) -> None:
        if other.config.fingerprint != self.config.fingerprint:
            raise ConfigError(
                f"cannot merge stores with different configs ({self.config.fingerprint} vs "
                f"{other.config.fingerprint})"
            )
        if list(other.views) != list(self.views):
            raise ValueError(
                f"cannot merge stores with different views ({list(self.views)} vs {list(other.views)})"
            )
        if other.suppression.key_id != self.suppression.key_id:
            raise ValueError("cannot merge stores whose forget suppression uses different keys")
        windows = self.dedupe is not None and other.dedupe is not None
        if windows and (self.journal is None or other.journal is None):
            raise ValueError(
                "cannot merge a store that keeps no event journal (journal=False): an event both "
                "stores folded would count twice"
            )

    def _merge_locked(self, other: ProfileStore) -> None:
        self.suppression.merge(other.suppression)
        self.traits.merge(other.traits, self.identity.canonical_of)
        self.traits.suppress(self.suppression)
        self.grow(self.n_users)
        other.grow(other.n_users)
        # Our own profiles that a forget in `other` reaches.
        self._apply_suppression(self, np.flatnonzero(~self.flags.retired))
        names = other.interners.users.names
        theirs = np.flatnonzero(~other.flags.retired)
        theirs = self._apply_suppression(other, theirs, adopt=False)
        mine = self.interners.users.intern_many([names[c] for c in theirs.tolist()])
        n_before = self.flags.n
        self.grow(self.n_users)
        fresh = mine >= n_before
        self.flags.consent_ms[mine[fresh]] = NO_TIME  # new rows take the other's decision as is
        self.flags.merge_rows(other.flags, theirs, mine)
        self.channel_consent.merge_rows(other.channel_consent, theirs, mine)
        for name, view in self.views.items():
            view.merge_rows(other.views[name], theirs, mine)
        if self.dedupe is not None and other.dedupe is not None:
            ids = other.dedupe.to_arrays()
            held = np.concatenate([ids["previous"], ids["current"]])
            both = held[self.dedupe.contains(held)]
            journal = self._adopt_journal(other, theirs, mine)
            if both.shape[0] and journal is not None:
                # Events both shards folded: take the other's copy back out of every view.
                twice = take_rows(journal, np.isin(journal.event_id, both) & first_of_each_id(journal))
                for view in self.views.values():
                    view.unfold(twice)
                self.events_ingested -= len(twice)
            self.dedupe.seen(ids["previous"])
            self.dedupe.seen(ids["current"])
            if self.journal is not None:
                self.journal.extend(journal, rotations=self.dedupe.rotations)
        if other.latest_ms is not None:
            self.latest_ms = (
                other.latest_ms if self.latest_ms is None else max(self.latest_ms, other.latest_ms)
            )
        self.events_ingested += other.events_ingested
        for name, canonical in other.identity.pairs():
            self.link(name, canonical)

    def _adopt_journal(
        self, other: ProfileStore, theirs: NDArray[np.int64], mine: NDArray[np.int64]
    ) -> EventBatch | None:
        """``other``'s journal in this store's codes, without the profiles the merge dropped."""
        whole = other.journal.batch() if other.journal is not None else None
        if whole is None:
            return None
        user_map = np.full(other.n_users, -1, dtype=np.int64)
        user_map[theirs] = mine
        return adopt(take_rows(whole, user_map[whole.user] >= 0), self.interners, user_map=user_map)

    def _apply_suppression(
        self, store: ProfileStore, codes: NDArray[np.int64], *, adopt: bool = True
    ) -> NDArray[np.int64]:
        """Of ``store``'s profiles ``codes``, those that survive this store's suppression entries:
        reborn after the forget, or with every event after it (then marked reborn, opted out
        unless a later grant). With ``adopt`` the others are erased from ``store``."""
        if len(self.suppression) == 0 or codes.shape[0] == 0:
            return codes
        names = store.interners.users.names
        forget_ms = self.suppression.forget_ms_of([names[c] for c in codes.tolist()])
        flags = store.flags
        hit = forget_ms > flags.reborn_ms[codes]
        if not hit.any():
            return codes
        late = hit & (flags.first_ms[codes] > forget_ms)
        drop = hit & ~late
        if late.any():
            flags.mark_reborn(codes[late], forget_ms[late])
        if adopt and drop.any():
            store._erase(codes[drop])
        return codes[~drop]

    # --- save and load ----------------------------------------------------------------------
    def to_container(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """The store as a MessagePack-able header and named arrays (one state file section)."""
        return store_to_container(self)

    @classmethod
    def from_container(
        cls,
        path: str | Path,
        header: dict[str, Any],
        arrays: dict[str, NDArray[Any]],
        *,
        backend: str | None = "auto",
        suppression_key: bytes | None = None,
    ) -> ProfileStore:
        """Rebuild a store from :meth:`to_container` output; :class:`StateError` if it is not one."""
        return store_from_container(
            cls, path, header, arrays, backend=backend, suppression_key=suppression_key
        )


def _max_future_ms(value: str | float | timedelta | None) -> int | None:
    from affinity_sdk._units import parse_duration

    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"max_future: {exc}") from None
    return round(seconds * 1000) if seconds < 1e15 else None


def _iso(ms: int) -> str:
    from datetime import UTC

    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"
