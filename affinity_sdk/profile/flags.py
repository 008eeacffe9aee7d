"""Per-profile flags kept once for every view: consent, activity span, retirement, rebirth.

- ``opted_out`` / ``consent_ms``: the consent decision in force and its time. The latest consent
  time wins, whatever order events, API calls (:meth:`ProfileStore.opt_out`) and merged shards
  arrive in; on a tie, opted out wins.
- ``first_ms``: the time of the profile's earliest folded event (a merge keeps a profile of a
  forgotten id only if it started after the forget).
- ``reborn_ms``: for a profile started after its id was forgotten, the time of that forget
  (events stamped at or before it are dropped); :data:`NO_TIME` otherwise.
- ``retired``: the code no longer names a profile (the user was forgotten).

Examples
--------
>>> import numpy as np
>>> flags = UserFlags()
>>> flags.grow(2)
>>> flags.apply_consent(np.array([0, 0, 1]), np.array([5, 9, 3]), np.array([0, 1, 0], dtype=np.int8))
>>> flags.opted_out.tolist(), flags.consent_ms.tolist()
([False, True], [9, 3])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.profile.rows import ensure_capacity

__all__ = ["NO_TIME", "UserFlags", "latest_consent", "opted_out_users"]

#: "Never": the consent time of a profile without a consent decision, and friends.
NO_TIME: Final = int(np.iinfo(np.int64).min)
_MAX_TIME: Final = int(np.iinfo(np.int64).max)

#: name -> (dtype, fill of a new profile)
_COLUMNS: Final[dict[str, tuple[type[np.generic], Any]]] = {
    "opted_out": (np.bool_, False),
    "consent_ms": (np.int64, NO_TIME),
    "first_ms": (np.int64, _MAX_TIME),
    "reborn_ms": (np.int64, NO_TIME),
    "retired": (np.bool_, False),
}


def latest_consent(
    users: NDArray[np.int64], ts_ms: NDArray[np.int64], consent: NDArray[np.int8]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """The last global consent decision per user among consent events (``consent`` 1 granted,
    0 revoked): ``(users, time, opted_out)``, one entry per user; on equal times a revocation wins.
    Codes >= 2 (a decision on one medium, :func:`~affinity_sdk.profile.channel_consent.encode_consent`)
    are not global decisions and are left out.

    Examples
    --------
    >>> import numpy as np
    >>> latest_consent(np.array([4, 4]), np.array([7, 7]), np.array([0, 1], dtype=np.int8))[2].tolist()
    [True]
    >>> latest_consent(np.array([4, 4]), np.array([7, 8]), np.array([1, 2], dtype=np.int8))[2].tolist()
    [False]
    """
    is_global = (consent == 0) | (consent == 1)
    if not is_global.all():
        users, ts_ms, consent = users[is_global], ts_ms[is_global], consent[is_global]
    # Within a user, sort by time, then grants before revocations, so the last row wins.
    order = np.lexsort((-consent.astype(np.int64), ts_ms, users))
    ordered = users[order]
    last = np.r_[ordered[1:] != ordered[:-1], True] if ordered.shape[0] else np.zeros(0, np.bool_)
    rows = order[last]
    return users[rows], ts_ms[rows], consent[rows] == 0


def _spare(dtype: type[np.generic]) -> Callable[[int], NDArray[Any]]:
    # Rows get their fill when they go live (grow), so a grown buffer's spare rows are never
    # written (nor its pages touched) before profiles need them.
    def make(size: int) -> NDArray[Any]:
        return np.empty(size, dtype=dtype)

    return make


class UserFlags:
    """The per-profile flag arrays (views of geometrically growing buffers), rows ``0 .. n - 1``."""

    # Each column is an attribute: a view of rows 0 .. n - 1 of its growing buffer, set anew
    # by grow(), so the per-event path reads plain attributes.
    opted_out: NDArray[np.bool_]
    consent_ms: NDArray[np.int64]
    first_ms: NDArray[np.int64]
    reborn_ms: NDArray[np.int64]
    retired: NDArray[np.bool_]

    def __init__(self) -> None:
        self.n = 0
        self._buffers: dict[str, NDArray[Any]] = {
            name: np.zeros(0, dtype=dtype) for name, (dtype, _) in _COLUMNS.items()
        }
        for name, buffer in self._buffers.items():
            setattr(self, name, buffer)

    def grow(self, n: int) -> None:
        """Make rows ``0 .. n - 1`` exist (new rows take each column's fill)."""
        if n <= self.n:
            return
        for name, (dtype, fill) in _COLUMNS.items():
            buffer = ensure_capacity(self._buffers[name], self.n, n, _spare(dtype))
            buffer[self.n : n] = fill
            self._buffers[name] = buffer
            setattr(self, name, buffer[:n])
        self.n = n

    def visible(self) -> NDArray[np.bool_]:
        """Profiles that may appear in any output: not opted out, not retired."""
        mask: NDArray[np.bool_] = ~(self.opted_out | self.retired)
        return mask

    def reset(self, codes: NDArray[np.int64]) -> None:
        """Give rows their new-profile values again (a forgotten profile)."""
        for name, (_, fill) in _COLUMNS.items():
            self._buffers[name][codes] = fill

    def apply_consent(
        self, users: NDArray[np.int64], ts_ms: NDArray[np.int64], consent: NDArray[np.int8]
    ) -> None:
        """Fold global consent decisions in (codes 0 / 1; codes >= 2 are left out, see
        :func:`latest_consent`); a decision older than the one in force is ignored."""
        if users.shape[0] == 0:
            return
        users, ts_ms, out = latest_consent(users, ts_ms, consent)
        consent_ms = self.consent_ms
        newer = (ts_ms > consent_ms[users]) | ((ts_ms == consent_ms[users]) & out)
        users, ts_ms, out = users[newer], ts_ms[newer], out[newer]
        consent_ms[users] = ts_ms
        self.opted_out[users] = out

    def apply_consent_one(self, code: int, ts_ms: int, granted: bool) -> None:
        """:meth:`apply_consent` for one decision, on scalars (the one-event ingest path).

        Examples
        --------
        >>> flags = UserFlags()
        >>> flags.grow(1)
        >>> flags.apply_consent_one(0, 9, False)
        >>> flags.apply_consent_one(0, 9, True)  # a grant at the same time loses to the revocation
        >>> flags.opted_out.tolist(), flags.consent_ms.tolist()
        ([True], [9])
        """
        in_force = int(self.consent_ms[code])
        if ts_ms > in_force or (ts_ms == in_force and not granted):
            self.consent_ms[code] = ts_ms
            self.opted_out[code] = not granted

    def mark_reborn(self, codes: NDArray[np.int64], forget_ms: NDArray[np.int64]) -> None:
        """Profiles started after their id was forgotten at ``forget_ms``: events stamped at or
        before it are dropped, and the profile stays opted out until a consent grant after it
        (a decision already in force that is later than the forget stands)."""
        self.reborn_ms[codes] = forget_ms
        stale = self.consent_ms[codes] < forget_ms
        self.consent_ms[codes[stale]] = forget_ms[stale]
        self.opted_out[codes[stale]] = True

    def touch(self, users: NDArray[np.int64], ts_ms: NDArray[np.int64]) -> None:
        """Move the first-event time of ``users`` back to cover ``ts_ms``."""
        if users.shape[0] == 1:  # the one-event path: a scalar compare, no ufunc.at
            if ts_ms[0] < self.first_ms[users[0]]:
                self.first_ms[users[0]] = ts_ms[0]
            return
        np.minimum.at(self.first_ms, users, ts_ms)

    def touch_one(self, code: int, ts_ms: int) -> None:
        """:meth:`touch` for one event, on scalars."""
        if ts_ms < self.first_ms[code]:
            self.first_ms[code] = ts_ms

    def merge_rows(self, other: UserFlags, theirs: NDArray[np.int64], mine: NDArray[np.int64]) -> None:
        """Fold ``other``'s rows ``theirs`` into rows ``mine`` (one to one): the later consent
        decision wins, first-event times take the earlier, rebirth times the later forget."""
        consent = np.where(other.opted_out[theirs], 0, 1).astype(np.int8)
        has = other.consent_ms[theirs] != NO_TIME
        self.apply_consent(mine[has], other.consent_ms[theirs][has], consent[has])
        np.minimum.at(self.first_ms, mine, other.first_ms[theirs])
        np.maximum.at(self.reborn_ms, mine, other.reborn_ms[theirs])

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        return {name: getattr(self, name).copy() for name in _COLUMNS}

    def load_arrays(self, arrays: dict[str, NDArray[Any]], n: int) -> None:
        """Restore :meth:`to_arrays` output for ``n`` profiles; ``ValueError`` if it does not fit."""
        for name, (dtype, _) in _COLUMNS.items():
            column = arrays.get(f"flags.{name}")
            if column is None or column.dtype != np.dtype(dtype) or column.shape != (n,):
                raise ValueError(f"state array 'flags.{name}' is missing or does not match the stored users")
        self.n = 0
        self.grow(n)
        for name in _COLUMNS:
            self._buffers[name][:n] = arrays[f"flags.{name}"]


def opted_out_users(*batches: Any) -> NDArray[np.bool_]:
    """Per user code of the batches' (shared) interners: is the user's latest global consent
    decision among the batches' consent rows (``consent`` 0 / 1) a revocation
    (:func:`latest_consent`)? Users without one (a decision on one medium is not global) are not
    opted out.

    Examples
    --------
    >>> from affinity_sdk.ingest.batch import EventBatch
    >>> lines = [b'{"type":"consent_changed","user_id":"a","timestamp":5,"granted":false}',
    ...          b'{"type":"consent_changed","user_id":"a","timestamp":9,"granted":true}',
    ...          b'{"type":"consent_changed","user_id":"b","timestamp":9,"granted":false}',
    ...          b'{"type":"app_opened","user_id":"c","timestamp":1}',
    ...          b'{"type":"consent_changed","user_id":"c","timestamp":2,"granted":false,"medium":"sms"}']
    >>> opted_out_users(EventBatch.from_ndjson(b"\\n".join(lines))).tolist()
    [False, True, False]
    """
    if not batches:
        return np.zeros(0, dtype=np.bool_)
    n = len(batches[0].interners.users)
    users = np.concatenate([b.user[b.consent >= 0] for b in batches]).astype(np.int64)
    out = np.zeros(max(n, int(users.max(initial=-1)) + 1), dtype=np.bool_)
    if users.shape[0]:
        ts_ms = np.concatenate([b.ts_ms[b.consent >= 0] for b in batches]).astype(np.int64)
        consent = np.concatenate([b.consent[b.consent >= 0] for b in batches])
        who, _, revoked = latest_consent(users, ts_ms, consent)
        out[who] = revoked
    return out
