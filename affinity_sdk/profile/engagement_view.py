r"""The engagement view of the profile store: how each profile responds to messages, per medium and
per hour of the week, and how many messages each received lately (for fatigue caps).

Three sparse tables (:class:`~affinity_sdk.profile.sparse_table.SparseTable`), all exact and
additive, so folding is adding (order does not matter), shards merge by addition and a replayed
copy taken back by :meth:`~EngagementView.unfold` leaves exactly what one copy left:

- **media**: keyed ``u << 32 | m`` (medium ``m`` of :data:`~affinity_sdk.capture.events.MEDIA`),
  forward-decay accumulators (one half-life) of the :data:`ACTIONS` sent, delivered, opened,
  clicked and converted: an event at ``t`` adds :math:`e^{\lambda (t - L)}`, and beside each the sum of the
  squared weights (:math:`e^{2 \lambda (t - L)}`, itself a forward-decay sum at rate
  :math:`2 \lambda`), from which the effective number of messages
  :math:`(\sum w)^2 / \sum w^2` follows (the noise term of the population prior's fit).
- **hours**: keyed ``u << 32 | w`` (hour of the week ``w`` in 0..167, Monday 00:00 UTC = 0), the
  decayed count of engagements (opens and clicks) and its sum of squared weights. Hours stay in
  UTC, so the table is exact and additive whatever zone a user is in; the queries shift a
  user's answer by their time zone (the ``timezone`` trait).
- **sends**: keyed ``u << 32 | (day · 8 + m)``, the plain counts of messages sent and delivered
  per UTC day (days since 1900-01-01), for the rolling windows of fatigue caps. Days older than
  ``retention`` before the newest event are dropped; since that cut-off only moves forward with
  the newest event, what is kept does not depend on the order events came in.

The medium of an event: the legacy types fix it (``email_opened``: email, ``sms_clicked``: sms,
``push_opened``: push); for the ``message_*`` family it is read back from the batch ``channel``
(email, sms, push, whatsapp, app → in_app, the channel
:func:`~affinity_sdk.capture.events.event_channel` gives each medium); a ``message_*`` event whose
``channel`` was set to something else (web, store) is left out.

A **conversion** is an ``order_completed`` whose batch channel is a message medium (email, sms,
push, whatsapp: the order came through that message, e.g. a Segment order whose UTM medium names
it); it adds to the ``converted`` column of that medium. In-app is not counted (an order in the
app is not a response to an in-app message). The rule reads one event, so conversions stay as
exact and additive as the other counts. The queries (best channel, send hour, fatigue) are
:mod:`affinity_sdk.models.channels`'s.

Examples
--------
>>> from affinity_sdk.capture.events import MessageDelivered, MessageOpened
>>> from affinity_sdk.ingest.batch import EventBatch
>>> view = EngagementView(backend="reference")
>>> view.fold(EventBatch.from_events([
...     MessageDelivered(user_id="ann", timestamp=0, medium="push"),
...     MessageOpened(user_id="ann", timestamp=0, medium="push"),
... ]))
2
>>> view.media_counts(0)[MEDIA.index("push")].tolist()  # sent, delivered, opened, clicked, converted
[0.0, 1.0, 1.0, 0.0, 0.0]
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import BackendName, resolve_backend
from affinity_sdk._units import parse_duration
from affinity_sdk.capture.events import CHANNELS, EVENT_TYPE_CODES, MEDIA
from affinity_sdk.errors import ConfigError, StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.kernels import decay_factors
from affinity_sdk.profile.affinity_view import _impl
from affinity_sdk.profile.decay import lam_per_ms, landmark_for
from affinity_sdk.profile.sparse_table import VALUE_BITS, VALUE_MASK, SparseTable, profile_mask

__all__ = ["ACTIONS", "DAY_MS", "HOURS_OF_WEEK", "EngagementView", "hour_of_week"]

#: The message actions kept per (profile, medium), in column order.
ACTIONS: Final = ("sent", "delivered", "opened", "clicked", "converted")
HOURS_OF_WEEK: Final = 168
DAY_MS: Final = 86_400_000
_HOUR_MS: Final = 3_600_000
#: Days from 1900-01-01 (the earliest timestamp a batch accepts) to the epoch, so day codes are >= 0.
_DAY_OFFSET: Final = 25_567
_MEDIUM_SLOTS: Final = 8
#: 2: the ``converted`` column (format 1 files load with no conversions).
_VIEW_FORMAT: Final = 2
_T: Final = EVENT_TYPE_CODES
#: Event type -> action column.
_ACTION_OF_TYPE: Final = {
    _T["message_sent"]: 0,
    _T["message_delivered"]: 1,
    _T["message_opened"]: 2,
    _T["message_clicked"]: 3,
    _T["email_opened"]: 2,
    _T["email_clicked"]: 3,
    _T["sms_clicked"]: 3,
    _T["push_opened"]: 2,
    _T["order_completed"]: 4,
}
_CONVERTED: Final = ACTIONS.index("converted")
#: Legacy event type -> the medium its type fixes.
_FIXED_MEDIUM: Final = {
    _T["email_opened"]: MEDIA.index("email"),
    _T["email_clicked"]: MEDIA.index("email"),
    _T["sms_clicked"]: MEDIA.index("sms"),
    _T["push_opened"]: MEDIA.index("push"),
}
#: Batch channel -> medium of a ``message_*`` event.
_MEDIUM_OF_CHANNEL: Final = {
    "email": "email",
    "sms": "sms",
    "push": "push",
    "app": "in_app",
    "whatsapp": "whatsapp",
}
#: Batch channel -> medium an order converts on (message media only: an app order is no conversion).
_CONVERSION_MEDIUM: Final = {"email": "email", "sms": "sms", "push": "push", "whatsapp": "whatsapp"}


def hour_of_week(ts_ms: NDArray[np.int64]) -> NDArray[np.int64]:
    """UTC hour of the week of epoch-ms timestamps, Monday 00:00 = 0 .. Sunday 23:00 = 167.

    Examples
    --------
    >>> hour_of_week(np.array([0, 4 * 86_400_000 + 3_600_000])).tolist()  # Thu 00:00, Mon 01:00
    [72, 1]
    """
    hours = np.asarray(ts_ms, dtype=np.int64) // _HOUR_MS
    out: NDArray[np.int64] = ((hours // 24 + 3) % 7) * 24 + hours % 24
    return out


def _paired(factor: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    """Column factors of a table of ``width`` decayed sums then their ``width`` squared-weight sums."""
    out: NDArray[np.float64] = np.concatenate([np.repeat(factor, width), np.repeat(factor**2, width)])
    return out


def _without_conversions(acc: NDArray[np.float64]) -> NDArray[np.float64]:
    """A format-1 media table (no ``converted`` column) widened with zero conversions."""
    n, half = acc.shape[0], acc.shape[1] // 2
    zero = np.zeros((n, 1))
    out: NDArray[np.float64] = np.ascontiguousarray(np.hstack([acc[:, :half], zero, acc[:, half:], zero]))
    return out


class EngagementView:
    """Per (profile, medium) message responses, per (profile, hour of week) engagement and per
    (profile, medium, day) message counts: exact and mergeable (a store view).

    Parameters
    ----------
    half_life
        Half-life of the decayed counts (``"60d"``, seconds, or a ``timedelta``).
    retention
        How many days of per-day message counts to keep before the newest event (the longest
        fatigue window that can be asked for).
    backend
        ``"auto"``, ``"cpp"``, ``"numba"`` or ``"reference"``: the kernels that sort and merge the
        tables' runs.
    """

    name = "engagement"

    def __init__(
        self, *, half_life: Any = "60d", retention: Any = "90d", backend: str | None = "auto"
    ) -> None:
        self.half_life_s = float(parse_duration(half_life))
        retention_s = float(parse_duration(retention))
        if not (self.half_life_s > 0 and retention_s >= 86_400):
            raise ConfigError("engagement view: half_life must be > 0 and retention at least 1 day")
        self.retention_days = int(retention_s // 86_400)
        self.backend: BackendName = resolve_backend(backend)
        self.impl: Any = _impl(self.backend)
        self.lam = float(lam_per_ms([self.half_life_s])[0])
        self._action = np.full(256, -1, dtype=np.int64)
        for code, action in _ACTION_OF_TYPE.items():
            self._action[code] = action
        self._fixed = np.full(256, -1, dtype=np.int64)
        for code, medium in _FIXED_MEDIUM.items():
            self._fixed[code] = medium
        self._by_channel = np.full(256, -1, dtype=np.int64)
        for channel, medium_name in _MEDIUM_OF_CHANNEL.items():
            self._by_channel[CHANNELS.index(channel)] = MEDIA.index(medium_name)
        self._converts_on = np.full(256, -1, dtype=np.int64)
        for channel, medium_name in _CONVERSION_MEDIUM.items():
            self._converts_on[CHANNELS.index(channel)] = MEDIA.index(medium_name)
        self.media = SparseTable(2 * len(ACTIONS))
        self.hours = SparseTable(2)
        self.sends = SparseTable(2)
        self.landmark_ms: int | None = None
        self.last_ms: int | None = None
        self.n_profiles = 0
        #: Goes up on every change of the state (query caches compare it).
        self.version = 0

    def __repr__(self) -> str:
        return (
            f"EngagementView(profiles={self.n_profiles}, half_life_s={self.half_life_s}, "
            f"backend={self.backend!r})"
        )

    def touch(self) -> None:
        self.version += 1

    def grow(self, n_profiles: int) -> None:
        """Make room for profile codes below ``n_profiles`` (tables are sparse: nothing to allocate)."""
        self.n_profiles = max(self.n_profiles, n_profiles)

    # --- reading --------------------------------------------------------------------------------
    def factor(self, now_ms: int) -> float:
        """Decay factor from the landmark to ``now_ms``."""
        if self.landmark_ms is None:
            return 1.0
        value = float(decay_factors(np.array([self.lam]), now_ms - self.landmark_ms)[0])
        if not np.isfinite(value):
            raise ValueError(f"now={now_ms} ms is too far before the decay landmark {self.landmark_ms} ms")
        return value

    def media_table(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """Sorted (profile codes, medium codes, accumulators at the landmark: the :data:`ACTIONS`'
        decayed counts, then their sums of squared weights)."""
        self.media.compact(self.impl)
        keys = self.media.keys
        return keys >> VALUE_BITS, keys & VALUE_MASK, self.media.acc

    def hour_table(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """Sorted (profile codes, hours of week, accumulators at the landmark: the decayed
        engagements and their sum of squared weights)."""
        self.hours.compact(self.impl)
        keys = self.hours.keys
        return keys >> VALUE_BITS, keys & VALUE_MASK, self.hours.acc

    def send_table(
        self,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """Sorted (profile codes, medium codes, epoch days, [sent, delivered] counts)."""
        self.sends.compact(self.impl)
        keys = self.sends.keys
        low = keys & VALUE_MASK
        return keys >> VALUE_BITS, low % _MEDIUM_SLOTS, low // _MEDIUM_SLOTS - _DAY_OFFSET, self.sends.acc

    def media_counts(self, code: int, now_ms: int | None = None) -> NDArray[np.float64]:
        """Decayed :data:`ACTIONS` of profile ``code`` per medium (rows in ``MEDIA`` order), at
        ``now_ms`` (default: the landmark)."""
        users, media, acc = self.media_table()
        lo, hi = np.searchsorted(users, [code, code + 1])
        out = np.zeros((len(MEDIA), len(ACTIONS)))
        out[media[lo:hi]] = acc[lo:hi, : len(ACTIONS)]
        return out * (1.0 if now_ms is None else self.factor(now_ms))

    # --- View protocol: fold / unfold -----------------------------------------------------------
    def _rows(self, batch: EventBatch) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Rows of the batch the view uses, with their action and medium."""
        types = batch.event_type.astype(np.int64)
        action = self._action[types]
        by_channel = np.where(
            action == _CONVERTED, self._converts_on[batch.channel], self._by_channel[batch.channel]
        )
        medium = np.where(self._fixed[types] >= 0, self._fixed[types], by_channel)
        rows = np.flatnonzero((action >= 0) & (medium >= 0))
        return rows, action[rows], medium[rows]

    def _runs(
        self, batch: EventBatch, rows: NDArray[np.int64], action: NDArray[np.int64], medium: NDArray[np.int64]
    ) -> list[tuple[SparseTable, NDArray[np.int64], NDArray[np.float64]]]:
        assert self.landmark_ms is not None
        user = batch.user[rows].astype(np.int64) << VALUE_BITS
        ts = batch.ts_ms[rows]
        weight = np.exp(self.lam * (ts - self.landmark_ms).astype(np.float64))
        at = np.arange(rows.shape[0])
        media_acc = np.zeros((rows.shape[0], 2 * len(ACTIONS)))
        media_acc[at, action] = weight
        media_acc[at, len(ACTIONS) + action] = weight * weight
        runs = [(self.media, user | medium, media_acc)]
        engaged = (action == ACTIONS.index("opened")) | (action == ACTIONS.index("clicked"))
        runs.append(
            (
                self.hours,
                user[engaged] | hour_of_week(ts[engaged]),
                np.stack([weight, weight * weight], axis=1)[engaged],
            )
        )
        sent = (action < 2) & (ts // DAY_MS >= self._cutoff_day())
        day_key = (ts[sent] // DAY_MS + _DAY_OFFSET) * _MEDIUM_SLOTS + medium[sent]
        send_acc = np.zeros((int(sent.sum()), 2))
        send_acc[np.arange(send_acc.shape[0]), action[sent]] = 1.0
        runs.append((self.sends, user[sent] | day_key, send_acc))
        return runs

    def _cutoff_day(self) -> int:
        """The first epoch day whose message counts are kept."""
        if self.last_ms is None:
            return -_DAY_OFFSET
        return int(self.last_ms // DAY_MS) - self.retention_days

    def _prune(self) -> None:
        self.sends.compact(self.impl)
        day = (self.sends.keys & VALUE_MASK) // _MEDIUM_SLOTS - _DAY_OFFSET
        old = day < self._cutoff_day()
        if old.any():
            self.sends.keep(~old)

    def fold(self, batch: EventBatch) -> int:
        """Fold a batch (codes in the store's interners); returns how many events it used."""
        if len(batch) == 0:
            return 0
        rows, action, medium = self._rows(batch)
        if rows.shape[0] == 0:
            return 0
        self.grow(int(batch.user[rows].max()) + 1)
        newest = int(batch.ts_ms[rows].max())
        target = landmark_for(self.landmark_ms, newest, 2.0 * self.lam)
        if target is not None:
            self.rebase(target)
        self.last_ms = newest if self.last_ms is None else max(self.last_ms, newest)
        for table, keys, acc in self._runs(batch, rows, action, medium):
            if keys.shape[0]:
                table.add_unsorted(keys, acc, self.impl)
        self._prune()
        self.touch()
        return int(rows.shape[0])

    def unfold(self, batch: EventBatch) -> None:
        """Take back events :meth:`fold` folded before (a copy both merged shards folded)."""
        if len(batch) == 0 or self.landmark_ms is None:
            return
        rows, action, medium = self._rows(batch)
        if rows.shape[0] == 0:
            return
        for table, keys, acc in self._runs(batch, rows, action, medium):
            table.subtract(keys, acc, self.impl)
        self.touch()

    def rebase(self, landmark_ms: int) -> None:
        """Move the decay landmark to ``landmark_ms``, rescaling the decayed tables (exact)."""
        if self.landmark_ms is not None and landmark_ms != self.landmark_ms:
            factor = decay_factors(np.array([self.lam]), int(landmark_ms) - self.landmark_ms)
            self.media.scale(_paired(factor, len(ACTIONS)))
            self.hours.scale(_paired(factor, 1))
        self.landmark_ms = int(landmark_ms)
        self.touch()

    # --- View protocol: erase / merge -----------------------------------------------------------
    def _tables(self) -> tuple[SparseTable, SparseTable, SparseTable]:
        return self.media, self.hours, self.sends

    def erase(self, codes: NDArray[np.int64]) -> None:
        """Remove every entry of profiles ``codes``."""
        gone = profile_mask(codes, self.n_profiles)
        if gone is None:
            return
        for table in self._tables():
            table.drop_profiles(gone, self.impl)
        self.touch()

    def fold_row(self, source: int, target: int) -> None:
        """Add profile ``source`` into ``target`` and empty ``source`` (an identity merge): what
        :meth:`merge_rows` of the view into itself and :meth:`erase` of ``source`` leave, in work
        proportional to the two profiles' entries (same landmark, so no rescaling; the moved
        entries wait as a pending run, the old ones go at the next compaction).

        Examples
        --------
        >>> from affinity_sdk.capture.events import EmailOpened
        >>> view = EngagementView(backend="reference")
        >>> _ = view.fold(EventBatch.from_events([EmailOpened(user_id="a", timestamp=0)]))
        >>> view.grow(2)
        >>> view.fold_row(0, 1)
        >>> float(view.media_counts(0).sum()), view.media_counts(1)[0].tolist()
        (0.0, [0.0, 0.0, 1.0, 0.0, 0.0])
        """
        if source == target:
            return
        self.grow(max(source, target) + 1)
        for table in self._tables():
            table.fold_row(source, target, self.impl)
        self.touch()

    def merge_rows(self, other: EngagementView, theirs: NDArray[np.int64], mine: NDArray[np.int64]) -> None:
        """Add ``other``'s profiles ``theirs`` into this view's profiles ``mine`` (one to one)."""
        if (other.half_life_s, other.retention_days) != (self.half_life_s, self.retention_days):
            raise StateError("cannot merge engagement views built with different half-lives or retention")
        theirs = np.asarray(theirs, dtype=np.int64)
        mine = np.asarray(mine, dtype=np.int64)
        if theirs.shape != mine.shape:
            raise ValueError("theirs and mine must have the same length")
        if mine.shape[0] == 0 or other.landmark_ms is None:
            return
        self.grow(int(mine.max()) + 1)
        row_map = np.full(max(other.n_profiles, int(theirs.max()) + 1), -1, dtype=np.int64)
        row_map[theirs] = mine
        scale = np.ones(1)
        if self.landmark_ms is None or self.landmark_ms < other.landmark_ms:
            self.rebase(other.landmark_ms)
        elif self.landmark_ms > other.landmark_ms:
            scale = decay_factors(np.array([self.lam]), self.landmark_ms - other.landmark_ms)
        assert other.last_ms is not None
        self.last_ms = other.last_ms if self.last_ms is None else max(self.last_ms, other.last_ms)
        factors = (_paired(scale, len(ACTIONS)), _paired(scale, 1), np.ones(1))
        for table, source, factor in zip(self._tables(), other._tables(), factors, strict=True):
            source.compact(other.impl)
            users = row_map[source.keys >> VALUE_BITS]
            keep = users >= 0
            if keep.any():
                keys = (users[keep] << VALUE_BITS) | (source.keys[keep] & VALUE_MASK)
                table.add_unsorted(keys, source.acc[keep] * factor, self.impl)
        self._prune()
        self.touch()

    # --- View protocol: save / load -------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """A MessagePack-able header and named arrays that :meth:`load_arrays` restores."""
        arrays: dict[str, NDArray[Any]] = {}
        for name, table in zip(("media", "hours", "sends"), self._tables(), strict=True):
            table.compact(self.impl)
            arrays[f"{name}_keys"], arrays[f"{name}_acc"] = table.keys, table.acc
        header = {
            "format": _VIEW_FORMAT,
            "half_life_s": self.half_life_s,
            "retention_days": self.retention_days,
            "landmark_ms": self.landmark_ms,
            "last_ms": self.last_ms,
            "n_profiles": self.n_profiles,
        }
        return header, arrays

    def load_arrays(self, header: dict[str, Any], arrays: dict[str, NDArray[Any]], n_profiles: int) -> None:
        """Restore :meth:`to_arrays` output; :class:`StateError` if it is malformed or foreign."""
        try:
            file_format = header["format"]
            if file_format not in (1, _VIEW_FORMAT):
                raise StateError(f"engagement state format {file_format} is not supported")
            if (float(header["half_life_s"]), header["retention_days"]) != (
                self.half_life_s,
                self.retention_days,
            ):
                raise StateError("engagement state was built with another half-life or retention")
            stored_n, landmark, last = header["n_profiles"], header["landmark_ms"], header["last_ms"]
            tables = []
            for name, width in (("media", 2 * len(ACTIONS)), ("hours", 2), ("sends", 2)):
                keys = np.array(arrays[f"{name}_keys"], dtype=np.int64, order="C")
                acc = np.array(arrays[f"{name}_acc"], dtype=np.float64, order="C")
                if name == "media" and file_format == 1 and acc.ndim == 2 and acc.shape[1] == width - 2:
                    acc = _without_conversions(acc)
                tables.append((keys, acc, width))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"engagement state is incomplete or foreign: {exc}") from None
        for value in (stored_n, landmark, last):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise StateError("engagement state: header times and sizes must be integers")
        if not isinstance(stored_n, int) or not 0 <= stored_n <= n_profiles:
            raise StateError(f"engagement state holds {stored_n} profiles, the store {n_profiles}")
        for keys, acc, width in tables:
            if keys.ndim != 1 or acc.shape != (keys.shape[0], width) or np.any(keys[1:] <= keys[:-1]):
                raise StateError("engagement state: a table is malformed")
            if not (np.all(np.isfinite(acc)) and np.all(acc >= 0.0)):
                raise StateError("engagement state: a table holds negative or non-finite values")
            if keys.shape[0] and (keys[0] < 0 or keys[-1] >> VALUE_BITS >= stored_n):
                raise StateError("engagement state: a table names unknown profiles")
            if keys.shape[0] and (landmark is None or last is None or landmark > last):
                raise StateError("engagement state: the decay landmark is missing or after the newest event")
        fresh = [SparseTable(width) for _, _, width in tables]
        for table, (keys, acc, _) in zip(fresh, tables, strict=True):
            table.keys, table.acc = keys, acc
        self.media, self.hours, self.sends = fresh
        self.landmark_ms, self.last_ms, self.n_profiles = landmark, last, n_profiles
        self.touch()
