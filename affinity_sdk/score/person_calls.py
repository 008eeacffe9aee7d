"""The Scorer's calls about one person: global and per-medium consent, who may be contacted
where, erasure, identity stitching and ``identify`` traits (:class:`PersonCalls`, a base of
:class:`~affinity_sdk.score.scorer.Scorer`).

Each call passes through to the one profile store (:meth:`ProfileStore.opt_out
<affinity_sdk.profile.store.ProfileStore.opt_out>`, :meth:`~affinity_sdk.profile.store.ProfileStore.forget`,
:meth:`~affinity_sdk.profile.store.ProfileStore.link`, :mod:`affinity_sdk.profile.channel_consent`,
:mod:`affinity_sdk.profile.traits`), so each promise holds in every view; ``forget`` and
``identify`` also clear the remembered tier of the profile that goes away.

Examples
--------
>>> from affinity_sdk import Scorer
>>> scorer = Scorer()
>>> _ = scorer.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":0}')
>>> scorer.opt_out("ann", medium="sms", at=1)
>>> scorer.may_contact("ann", "sms"), scorer.forget("ann"), scorer.may_contact("ann", "push")
(False, True, False)
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.capture.events import MEDIA
from affinity_sdk.profile.channel_consent import medium_code
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.score.tiers import NO_TIER, Cutoffs

__all__ = ["PersonCalls"]


class PersonCalls:
    """Consent, forget and identity calls of :class:`~affinity_sdk.score.scorer.Scorer`, over its
    ``store`` (under its lock); they reset entries of its tier memory ``_tiers`` and, on a link,
    its cut-offs ``_cutoffs``."""

    store: ProfileStore
    _lock: threading.RLock
    _tiers: NDArray[np.int8]
    _cutoffs: Cutoffs | None

    def opt_out(
        self, user_id: str, *, at: datetime | str | int | None = None, medium: str | None = None
    ) -> None:
        """Exclude a user from every output, export and trigger until a later consent grant
        (:meth:`opt_in` or a ``consent_changed`` event stamped after ``at``, default now). With
        ``medium`` only messages on that medium are revoked (see :meth:`may_contact`)."""
        self.store.opt_out(user_id, at=at, medium=medium)

    def opt_in(
        self, user_id: str, *, at: datetime | str | int | None = None, medium: str | None = None
    ) -> None:
        """Grant consent as of ``at`` (default now; on ``medium`` only, if given): undoes an
        earlier :meth:`opt_out`."""
        self.store.opt_in(user_id, at=at, medium=medium)

    def consents_of(self, user_id: str) -> dict[str, bool]:
        """Per medium (:data:`~affinity_sdk.capture.events.MEDIA`): may the user be contacted
        there? All false for an unknown, opted-out or forgotten user.

        Examples
        --------
        >>> from affinity_sdk import Scorer
        >>> scorer = Scorer()
        >>> from affinity_sdk.capture.events import AppOpened
        >>> _ = scorer.ingest([AppOpened(user_id="ann", timestamp=0)])
        >>> scorer.opt_out("ann", medium="email", at=1)
        >>> scorer.consents_of("ann")
        {'email': False, 'sms': True, 'push': True, 'in_app': True, 'whatsapp': True}
        """
        with self.store.lock:
            code = self.store.code_of(user_id)
            if code is None:
                return dict.fromkeys(MEDIA, False)
            revoked = self.store.channel_consent.revoked(code)
            return {medium: not bool(r) for medium, r in zip(MEDIA, revoked.tolist(), strict=True)}

    def may_contact(self, user_id: str, medium: str) -> bool:
        """Whether the user may be messaged on ``medium``: visible (consenting globally, not
        forgotten) and not opted out of that medium. An unsubscribe from email leaves push open.

        Examples
        --------
        >>> from affinity_sdk import Scorer
        >>> from affinity_sdk.capture.events import AppOpened
        >>> scorer = Scorer()
        >>> _ = scorer.ingest([AppOpened(user_id="ann", timestamp=0)])
        >>> scorer.opt_out("ann", medium="email", at=1)
        >>> scorer.may_contact("ann", "email"), scorer.may_contact("ann", "push")
        (False, True)
        """
        medium_code(medium)
        return self.consents_of(user_id)[medium]

    def contact_mask(self, medium: str) -> NDArray[np.bool_]:
        """Per profile code: may it be messaged on ``medium``? The global visibility mask with
        that medium's opt-outs removed; index audiences and exports with it.

        Examples
        --------
        >>> from affinity_sdk import Scorer
        >>> scorer = Scorer()
        >>> from affinity_sdk.capture.events import AppOpened
        >>> _ = scorer.ingest([AppOpened(user_id=u, timestamp=0) for u in ("ann", "bob")])
        >>> scorer.opt_out("bob", medium="sms", at=1)
        >>> scorer.contact_mask("sms").tolist(), scorer.contact_mask("push").tolist()
        ([True, False], [True, True])
        """
        with self.store.lock:
            return self.store.channel_consent.mask(medium, self.store.visible())

    def opted_out(self) -> list[str]:
        """The ids of the users now opted out: pass them as ``suppressed`` to
        :func:`~affinity_sdk.activate.segments.diff_segments` when memberships come from elsewhere.

        Examples
        --------
        >>> from affinity_sdk import Scorer
        >>> scorer = Scorer()
        >>> scorer.opt_out("ann")
        >>> scorer.opted_out()
        ['ann']
        """
        return self.store.opted_out()

    def forget(self, user_id: str, *, at: datetime | str | int | None = None) -> bool:
        """Erase every trace of a user from every view (on the next :meth:`save` the file no longer
        holds them) and keep a keyed-hash suppression entry, so their events stamped at or before
        ``at`` (default now) are dropped whenever they arrive; a later event starts a fresh
        profile that stays opted out until a consent grant. Returns whether the user was known."""
        with self._lock:
            code = self.store.interners.users.lookup(user_id)
            known = self.store.forget(user_id, at=at)
            if code is not None and code < self._tiers.shape[0]:
                self._tiers[code] = NO_TIER
            return known

    def identify(
        self,
        user_id: str,
        into: str,
        *,
        traits: dict[str, Any] | None = None,
        at: datetime | str | int | None = None,
    ) -> bool:
        """Stitch ``user_id`` (an anonymous or previous id) into ``into`` (the known id): one
        profile from now on in every view, whether the link comes before, between or after their
        events (:meth:`ProfileStore.link <affinity_sdk.profile.store.ProfileStore.link>`). Returns
        ``False`` (and links nothing) when either id was forgotten. ``traits`` (the identify
        call's) are recorded for ``into`` as of ``at`` (:meth:`traits_of`).

        Examples
        --------
        >>> from affinity_sdk import Scorer
        >>> scorer = Scorer()
        >>> _ = scorer.ingest(b'{"type":"app_opened","user_id":"anon-1","timestamp":1767225600000}')
        >>> _ = scorer.ingest(b'{"type":"app_opened","user_id":"ann","timestamp":1767225600000}')
        >>> scorer.identify("anon-1", "ann")
        True
        >>> scorer.score().user_ids, scorer.explain("anon-1").user_id
        (['ann'], 'anon-1')
        """
        with self._lock:
            source = self.store.interners.users.lookup(user_id)
            linked = self.store.link(user_id, into)
            if linked and source is not None and source < self._tiers.shape[0]:
                self._tiers[source] = NO_TIER
            if linked:
                self._cutoffs = None
            if traits:
                self.store.set_traits(into, traits, at=at)
            return linked

    def traits_of(self, user_id: str) -> dict[str, Any]:
        """The latest ``identify`` traits of the person ``user_id`` names (any linked id), sorted
        by name; ``{}`` for an opted-out, forgotten or traitless user. ``email`` and ``phone`` are
        keyed hashes unless kept in clear (:mod:`affinity_sdk.profile.traits`).

        Examples
        --------
        >>> from affinity_sdk import Scorer
        >>> scorer = Scorer()
        >>> _ = scorer.identify("anon-1", "ann", traits={"plan": "gold"}, at=1767225600000)
        >>> scorer.traits_of("anon-1")
        {'plan': 'gold'}
        >>> scorer.opt_out("ann")
        >>> scorer.traits_of("ann")
        {}
        """
        store = self.store
        with self._lock:
            code = store.interners.users.lookup(user_id)
            if code is not None and not store.is_visible(code):
                return {}
            return store.traits.of(store.identity.canonical_of(user_id))
