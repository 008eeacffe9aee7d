"""Per-channel consent: the latest decision per (profile, medium), beside the global opt-out.

A ``consent_changed`` event with a ``medium`` (email, sms, push, in_app, whatsapp) decides for that
medium only; without one it is the global decision kept in :mod:`affinity_sdk.profile.flags`, which
this module leaves alone. A user who unsubscribed from email is therefore still contactable by
push: ``may_contact`` is true when the user is globally visible *and* has not revoked the medium.
Decisions are exact and mergeable like the global one: the latest time wins, a revoke wins a tie.

Examples
--------
>>> import numpy as np
>>> consent = ChannelConsent()
>>> consent.apply(np.array([0, 0]), np.array([0, 2]), np.array([10, 11]), np.array([True, False]))
>>> consent.revoked(0).tolist(), consent.mask("push", np.array([True])).tolist()
([True, False, False, False, False], [True])
>>> consent.mask("email", np.array([True])).tolist()
[False]
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.capture.events import MEDIA
from affinity_sdk.errors import AffinityError

__all__ = [
    "NO_DECISION",
    "ChannelConsent",
    "UnknownMediumError",
    "decode_channel_rows",
    "encode_consent",
    "medium_code",
]

#: Decision time of a (profile, medium) without a per-channel decision.
NO_DECISION: Final = int(np.iinfo(np.int64).min)


class UnknownMediumError(AffinityError, ValueError):
    """A medium that is not one of :data:`~affinity_sdk.capture.events.MEDIA`."""


def medium_code(medium: str) -> int:
    """The column of ``medium`` in the consent table.

    Examples
    --------
    >>> medium_code("whatsapp")
    4
    """
    try:
        return MEDIA.index(medium)
    except ValueError:
        raise UnknownMediumError(f"Unknown medium {medium!r}: expected one of {', '.join(MEDIA)}") from None


class ChannelConsent:
    """Per (profile, medium): the time of the decision in force and whether it revoked consent."""

    def __init__(self) -> None:
        # Rows beyond the used ones are spare capacity (no decision), so growing chunk after chunk
        # copies the table a logarithmic number of times, not once per chunk. The rows are made
        # when the table is first read after a grow, not by grow itself: a store fed no decision on
        # a medium (most event files) never fills 48 bytes per profile.
        self._decided = np.full((0, len(MEDIA)), NO_DECISION, dtype=np.int64)
        self._revoked = np.zeros((0, len(MEDIA)), dtype=np.bool_)
        self._n = 0

    @property
    def decided_ms(self) -> NDArray[np.int64]:
        """Per (profile, medium): the time of the decision in force (:data:`NO_DECISION`: none)."""
        self._make_rows()
        return self._decided[: self._n]

    @property
    def revoked_(self) -> NDArray[np.bool_]:
        """Per (profile, medium): did the decision in force revoke consent?"""
        self._make_rows()
        return self._revoked[: self._n]

    def _make_rows(self) -> None:
        """Rows for every profile code below :attr:`n_users` (new ones: no decision)."""
        held = self._decided.shape[0]
        if self._n > held:
            capacity = max(self._n, 2 * held, 1024)
            decided = np.full((capacity, len(MEDIA)), NO_DECISION, dtype=np.int64)
            revoked = np.zeros((capacity, len(MEDIA)), dtype=np.bool_)
            decided[:held] = self._decided
            revoked[:held] = self._revoked
            self._decided, self._revoked = decided, revoked

    @property
    def n_users(self) -> int:
        return self._n

    def grow(self, n_users: int) -> None:
        """Make room for profile codes below ``n_users`` (new rows: no decision).

        Examples
        --------
        >>> table = ChannelConsent()
        >>> table.grow(3)
        >>> table.n_users, table.revoked(2).any(), table.decided_ms.shape
        (3, np.False_, (3, 5))
        """
        self._n = max(self._n, n_users)

    def apply(
        self,
        users: NDArray[np.int64],
        media: NDArray[np.int64],
        ts_ms: NDArray[np.int64],
        revoked: NDArray[np.bool_],
    ) -> None:
        """Fold decisions in (any order): per cell the latest wins, a revoke wins a tie."""
        if users.size == 0:
            return
        self.grow(int(users.max()) + 1)
        order = np.lexsort((revoked, ts_ms, media, users))
        u, m, t, r = users[order], media[order], ts_ms[order], revoked[order]
        last = np.ones(u.size, dtype=np.bool_)
        last[:-1] = (u[1:] != u[:-1]) | (m[1:] != m[:-1])
        u, m, t, r = u[last], m[last], t[last], r[last]
        held = self.decided_ms[u, m]
        newer = (t > held) | ((t == held) & r)
        self.decided_ms[u[newer], m[newer]] = t[newer]
        self.revoked_[u[newer], m[newer]] = r[newer]

    def revoked(self, code: int) -> NDArray[np.bool_]:
        """Per medium (in :data:`MEDIA` order): has profile ``code`` revoked it?"""
        if code >= self.n_users:
            return np.zeros(len(MEDIA), dtype=np.bool_)
        row: NDArray[np.bool_] = self.revoked_[code].copy()
        return row

    def mask(self, medium: str, visible: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Per profile: may it be contacted on ``medium``? ``visible`` is the global verdict
        (consenting and not forgotten) per profile code."""
        column = medium_code(medium)
        out = visible.copy()
        n = min(self.n_users, out.shape[0])
        out[:n] &= ~self.revoked_[:n, column]
        return out

    def erase(self, codes: NDArray[np.int64]) -> None:
        """Forget the decisions of ``codes`` (a forgotten profile starts afresh)."""
        codes = codes[codes < self.n_users]
        self.decided_ms[codes] = NO_DECISION
        self.revoked_[codes] = False

    def fold_into(self, source: int, target: int) -> None:
        """An identity merge: ``source``'s decisions join ``target``'s (latest wins per medium)."""
        if source >= self.n_users:
            return
        media = np.arange(len(MEDIA), dtype=np.int64)
        decided, revoked = self.decided_ms[source].copy(), self.revoked_[source].copy()
        self.erase(np.array([source], dtype=np.int64))
        held = decided != NO_DECISION
        self.apply(np.full(int(held.sum()), target, np.int64), media[held], decided[held], revoked[held])

    def merge_rows(self, other: ChannelConsent, theirs: NDArray[np.int64], mine: NDArray[np.int64]) -> None:
        """Fold ``other``'s rows ``theirs`` into this table's rows ``mine`` (latest wins)."""
        kept = theirs < other.n_users
        theirs, mine = theirs[kept], mine[kept]
        rows, media = np.nonzero(other.decided_ms[theirs] != NO_DECISION)
        source = theirs[rows]
        self.apply(
            mine[rows], media.astype(np.int64), other.decided_ms[source, media], other.revoked_[source, media]
        )

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The state, for the store's container."""
        return {"decided_ms": self.decided_ms, "revoked": self.revoked_}

    def load_arrays(self, arrays: dict[str, NDArray[Any]], n_users: int) -> None:
        """Take the state saved by :meth:`to_arrays`; a state saved before per-channel consent
        existed has none (no decisions). Raises ``ValueError`` on arrays of the wrong shape."""
        decided = np.full((n_users, len(MEDIA)), NO_DECISION, dtype=np.int64)
        revoked = np.zeros((n_users, len(MEDIA)), dtype=np.bool_)
        if "decided_ms" in arrays:
            decided = np.asarray(arrays["decided_ms"], dtype=np.int64).copy()
            revoked = np.asarray(arrays["revoked"], dtype=np.bool_).copy()
            if decided.shape != (n_users, len(MEDIA)) or revoked.shape != decided.shape:
                raise ValueError(
                    f"channel consent arrays have shape {decided.shape}, expected {(n_users, len(MEDIA))}"
                )
        self._decided, self._revoked, self._n = decided, revoked, n_users


def encode_consent(granted: bool, medium: str | None) -> int:
    """A consent decision as a batch ``consent`` code: 0 / 1 for a global revoke / grant (as
    before), ``2 + 2 * medium code + granted`` for a decision on one medium.

    Examples
    --------
    >>> encode_consent(False, None), encode_consent(True, None), encode_consent(False, "push")
    (0, 1, 6)
    """
    code = 1 if granted else 0
    return code if medium is None else 2 + 2 * medium_code(medium) + code


def decode_channel_rows(
    consent: NDArray[np.int8],
) -> tuple[NDArray[np.bool_], NDArray[np.int64], NDArray[np.bool_]]:
    """``(rows, medium codes, revoked)`` of the per-medium decisions among batch ``consent`` codes.

    Examples
    --------
    >>> rows, media, revoked = decode_channel_rows(np.array([-1, 0, 6, 3], dtype=np.int8))
    >>> rows.tolist(), media.tolist(), revoked.tolist()
    ([False, False, True, True], [2, 0], [True, False])
    """
    rows = consent >= 2
    codes = consent[rows].astype(np.int64) - 2
    return rows, codes // 2, codes % 2 == 0
