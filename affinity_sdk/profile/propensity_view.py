"""The propensity view of the profile store: the exact, additive state the propensity features read.

:func:`~affinity_sdk.models.propensity.profile_features` recomputes every feature from a whole
:class:`~affinity_sdk.ingest.batch.EventBatch`; this view keeps, per profile, the sums those
features are functions of (:class:`~affinity_sdk.models.propensity_features.ProfileCounts`), folded
event batch by event batch, so :meth:`PropensityView.features` at any ``now`` at or after the
newest folded event equals ``profile_features(all folded events, now)`` (up to float rounding of
sums taken in another order, far below 1e-9):

- ``state``: a :class:`~affinity_sdk.profile.decay.DecayState` over the signal groups x the
  spec's half-lives (forward decay: exact at any later ``now``, merged by addition);
- ``channels`` (per profile and channel), ``refunds``, ``unsubscribes``: event counts;
- ``last_use_ms`` / ``last_gone_ms``: the last app install-or-open and uninstall times (merged by
  max);
- the category table: sorted unique keys ``profile << 32 | category`` with product-line counts
  (category codes are the view's own, kept by name in :attr:`PropensityView.categories`, so a
  saved, loaded or merged view needs no other interner);
- the order-day table: sorted unique keys ``profile << 32 | (UTC day + 2**31)`` with the order
  revenue of the day, from which the order-day features and the BG/NBD summaries
  (frequency, recency, T) are read at ``now``.

Every feature of every :class:`~affinity_sdk.models.propensity.FeatureSpec` with the view's
half-lives is exact, the optional ones included: the order-day features because the day table
keeps each day (not a decayed sum), and the BG/NBD features because the population fit reads the
summaries of every profile in ``population`` (sorted before fitting, so the numbering of profiles
does not matter). The signal groups' decayed features need the half-lives fixed in advance:
:meth:`PropensityView.features` refuses a spec with other half-lives.

Examples
--------
>>> from affinity_sdk.ingest.batch import EventBatch
>>> from affinity_sdk.models.propensity import profile_features
>>> line = b'{"type":"order_completed","user_id":"u","timestamp":0,"order_id":"o","products":[],"revenue":5}'
>>> batch = EventBatch.from_ndjson(line)
>>> view = PropensityView(backend="reference")
>>> view.fold(batch)
1
>>> bool((view.features(86_400_000).X == profile_features(batch, 86_400_000, backend="reference").X).all())
True
"""

from __future__ import annotations

import struct
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk import kernels
from affinity_sdk.capture.events import CHANNELS, EVENT_TYPE_CODES
from affinity_sdk.errors import ConfigError, StateError
from affinity_sdk.ingest.batch import EventBatch, Interners
from affinity_sdk.models.key_tables import KEY_BITS
from affinity_sdk.models.order_day_features import order_day_keys
from affinity_sdk.models.propensity_features import (
    Features,
    FeatureSpec,
    ProfileCounts,
    ProfileRow,
    decay_signals,
    features_from_counts,
    signal_rows,
)
from affinity_sdk.profile.decay import DecayState
from affinity_sdk.profile.propensity_tables import KeyTable
from affinity_sdk.profile.rows import ensure_capacity
from affinity_sdk.profile.signals import fold_record_row

__all__ = ["PropensityView"]

_VIEW_FORMAT: Final = 1
_VALUE_MASK: Final = (1 << KEY_BITS) - 1
_NO_TIME: Final = int(np.iinfo(np.int64).min)
_ORDER: Final = EVENT_TYPE_CODES["order_completed"]
_REFUND: Final = EVENT_TYPE_CODES["order_refunded"]
_UNSUBSCRIBE: Final = EVENT_TYPE_CODES["unsubscribed"]
_USE: Final = (EVENT_TYPE_CODES["app_installed"], EVENT_TYPE_CODES["app_opened"])
_GONE: Final = EVENT_TYPE_CODES["app_uninstalled"]
#: :data:`~affinity_sdk.kernels.STATE_DTYPE` as a :mod:`struct` format (and its size).
_RECORD_FORMAT: Final = "dqqq"
_RECORD_FORMAT_SIZE: Final = struct.calcsize("<" + _RECORD_FORMAT)


class PropensityView:
    """Per-profile propensity counts (see the module docstring), exact and mergeable.

    Parameters
    ----------
    spec
        The feature spec whose half-lives the signal groups decay at (default
        :class:`~affinity_sdk.models.propensity.FeatureSpec`'s, which the profile store uses);
        :meth:`features` serves any spec with the same half-lives.
    backend
        The decay kernels: ``"auto"``, ``"cpp"``, ``"numba"`` or ``"reference"``.
    """

    name = "propensity"

    def __init__(self, spec: FeatureSpec | None = None, *, backend: str | None = "auto") -> None:
        self.spec = spec or FeatureSpec()
        self.half_lives_s = self.spec.half_lives_s
        self.state = DecayState(decay_signals(self.half_lives_s), backend=backend)
        self.n_profiles = 0
        #: Newest folded event time (ms), None before the first.
        self.last_ms: int | None = None
        #: The category names behind the category table's value codes.
        self.categories: list[str] = []
        self._category_code: dict[str, int] = {}
        self._channels = np.zeros((0, len(CHANNELS)), dtype=np.int64)
        self._refunds = np.zeros(0, dtype=np.int64)
        self._unsubscribes = np.zeros(0, dtype=np.int64)
        self._last_use = np.zeros(0, dtype=np.int64)
        self._last_gone = np.zeros(0, dtype=np.int64)
        #: ``profile << 32 | category`` -> product lines.
        self.category_table = KeyTable(1)
        #: ``profile << 32 | (UTC day + 2**31)`` -> (order revenue, orders).
        self.day_table = KeyTable(2)
        #: (landmark, now, per-signal decay factors) of the last :meth:`row` call.
        self._factors: tuple[int | None, int, list[float]] | None = None
        assert kernels.STATE_DTYPE.itemsize == _RECORD_FORMAT_SIZE
        self._unpack_records = struct.Struct("<" + _RECORD_FORMAT * self.state.n_signals).unpack

    def __repr__(self) -> str:
        return (
            f"PropensityView(profiles={self.n_profiles}, half_lives={self.spec.half_lives}, "
            f"last_ms={self.last_ms}, backend={self.backend!r})"
        )

    @property
    def backend(self) -> str:
        return self.state.backend

    @property
    def channels(self) -> NDArray[np.int64]:
        """Events per (profile, channel of :data:`~affinity_sdk.capture.events.CHANNELS`)."""
        return self._channels[: self.n_profiles]

    @property
    def refunds(self) -> NDArray[np.int64]:
        return self._refunds[: self.n_profiles]

    @property
    def unsubscribes(self) -> NDArray[np.int64]:
        return self._unsubscribes[: self.n_profiles]

    @property
    def last_use_ms(self) -> NDArray[np.int64]:
        return self._last_use[: self.n_profiles]

    @property
    def last_gone_ms(self) -> NDArray[np.int64]:
        return self._last_gone[: self.n_profiles]

    # --- View protocol: grow / fold ---------------------------------------------------------
    def grow(self, n_profiles: int) -> None:
        """Make room for profile codes below ``n_profiles`` (empty rows)."""
        if n_profiles <= self.n_profiles:
            return
        n = self.n_profiles
        width = len(CHANNELS)
        self._channels = ensure_capacity(
            self._channels, n, n_profiles, lambda size: np.zeros((size, width), dtype=np.int64)
        )
        self._channels[n:n_profiles] = 0
        for attr, fill in (
            ("_refunds", 0),
            ("_unsubscribes", 0),
            ("_last_use", _NO_TIME),
            ("_last_gone", _NO_TIME),
        ):
            buffer = ensure_capacity(
                getattr(self, attr), n, n_profiles, lambda size: np.zeros(size, dtype=np.int64)
            )
            buffer[n:n_profiles] = fill
            setattr(self, attr, buffer)
        self.state.ensure_profiles(n_profiles)
        self.n_profiles = n_profiles

    def fold(self, batch: EventBatch) -> int:
        """Fold screened, deduplicated events (every event counts: the ``activity`` group takes
        every type); returns how many there were."""
        n_events = len(batch)
        if n_events == 0:
            return 0
        user = batch.user.astype(np.int64, copy=False)
        self.grow(int(user.max()) + 1)
        etype = batch.event_type.astype(np.int64)
        ts = batch.ts_ms.astype(np.int64, copy=False)
        revenue = np.nan_to_num(batch.revenue)
        self.state.add(*signal_rows(user, etype, ts, revenue, len(self.half_lives_s)))
        np.add.at(self._channels, (user, batch.channel.astype(np.int64)), 1)
        np.add.at(self._refunds, user[etype == _REFUND], 1)
        np.add.at(self._unsubscribes, user[etype == _UNSUBSCRIBE], 1)
        use = np.isin(etype, _USE)
        gone = etype == _GONE
        np.maximum.at(self._last_use, user[use], ts[use])
        np.maximum.at(self._last_gone, user[gone], ts[gone])
        self.category_table.add(*self._category_rows(batch, user))
        self.day_table.add(*_day_rows(user, etype, ts, revenue))
        newest = int(ts.max())
        self.last_ms = newest if self.last_ms is None else max(self.last_ms, newest)
        return n_events

    def unfold(self, batch: EventBatch) -> None:
        """Take back events :meth:`fold` folded before (a copy both merged shards folded, in the
        store's codes): every sum and count goes down by what the events added (decayed sums
        clamped at 0, zeroed where their count is); last times stay, as the other copy remains."""
        if len(batch) == 0:
            return
        user = batch.user.astype(np.int64, copy=False)
        etype = batch.event_type.astype(np.int64)
        ts = batch.ts_ms.astype(np.int64, copy=False)
        revenue = np.nan_to_num(batch.revenue)
        if self.state.landmark_ms is not None:
            users, signals, times, values = signal_rows(user, etype, ts, revenue, len(self.half_lives_s))
            dt = (times - self.state.landmark_ms).astype(np.float64)
            exponent = np.where(dt == 0.0, 0.0, self.state.lam_per_ms[signals] * dt)
            acc, records = self.state.acc, self.state.records
            cell = (users, signals)
            np.subtract.at(acc, cell, values * np.exp(exponent))
            np.subtract.at(records["total"], cell, values)
            np.subtract.at(records["count"], cell, 1)
            np.maximum(records["count"], 0, out=records["count"])
            for field in (acc, records["total"]):
                field[cell] = np.where(records["count"][cell] > 0, np.maximum(field[cell], 0.0), 0.0)
        np.subtract.at(self._channels, (user, batch.channel.astype(np.int64)), 1)
        np.subtract.at(self._refunds, user[etype == _REFUND], 1)
        np.subtract.at(self._unsubscribes, user[etype == _UNSUBSCRIBE], 1)
        for column in (self._channels, self._refunds, self._unsubscribes):
            np.maximum(column, 0, out=column)
        self.category_table.subtract(*self._category_rows(batch, user))
        self.day_table.subtract(*_day_rows(user, etype, ts, revenue))

    def _category_rows(
        self, batch: EventBatch, user: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Category-table keys and values (one product line each) of ``batch``'s lines."""
        lines = np.flatnonzero(batch.item_category >= 0)
        if lines.shape[0] == 0:
            return np.empty(0, dtype=np.int64), np.empty((0, 1))
        category = self._local_categories(batch.interners, batch.item_category[lines].astype(np.int64))
        keys = (user[batch.item_event[lines]] << KEY_BITS) | category
        return keys, np.ones((keys.shape[0], 1))

    def _intern_category(self, name: str) -> int:
        code = self._category_code.get(name)
        if code is None:
            code = self._category_code[name] = len(self.categories)
            self.categories.append(name)
        return code

    def _local_categories(self, interners: Interners, codes: NDArray[np.int64]) -> NDArray[np.int64]:
        """The view's category codes of ``codes`` (codes of ``interners.categories``)."""
        present, inverse = np.unique(codes, return_inverse=True)
        names = interners.categories.names
        local = np.array([self._intern_category(names[c]) for c in present.tolist()], dtype=np.int64)
        mapped: NDArray[np.int64] = local[inverse.reshape(-1)]
        return mapped

    # --- View protocol: erase / merge -------------------------------------------------------
    def erase(self, codes: NDArray[np.int64]) -> None:
        """Remove every trace of profiles ``codes``: their rows and their table keys."""
        codes = np.asarray(codes, dtype=np.int64)
        codes = codes[(codes >= 0) & (codes < self.n_profiles)]
        if codes.shape[0] == 0:
            return
        self.state.clear_profiles(codes)
        self._channels[codes] = 0
        self._refunds[codes] = 0
        self._unsubscribes[codes] = 0
        self._last_use[codes] = _NO_TIME
        self._last_gone[codes] = _NO_TIME
        gone = np.zeros(self.n_profiles, dtype=np.bool_)
        gone[codes] = True
        for table in (self.category_table, self.day_table):
            table.compact()
            drop = gone[table.keys >> KEY_BITS]
            if drop.any():
                table.keep(~drop)

    def fold_row(self, source: int, target: int) -> None:
        """Add profile ``source`` into ``target`` and empty ``source`` (an identity merge):
        :meth:`merge_rows` of the view into itself and :meth:`erase` of ``source``, in work
        proportional to the two profiles' rows and table entries."""
        if source == target:
            return
        self.grow(max(source, target) + 1)
        fold_record_row(self.state, source, target)
        for counts in (self._channels, self._refunds, self._unsubscribes):
            counts[target] += counts[source]
            counts[source] = 0
        for times in (self._last_use, self._last_gone):
            times[target] = max(times[target], times[source])
            times[source] = _NO_TIME
        self.category_table.fold_row(source, target)
        self.day_table.fold_row(source, target)

    def merge_rows(self, other: PropensityView, theirs: NDArray[np.int64], mine: NDArray[np.int64]) -> None:
        """Add ``other``'s profiles ``theirs`` into this view's profiles ``mine`` (one to one),
        exactly: decay landmarks aligned, counts added, last times maxed, categories matched by
        name."""
        if other.half_lives_s != self.half_lives_s:
            raise StateError("cannot merge propensity views that decay at different half-lives")
        theirs = np.asarray(theirs, dtype=np.int64)
        mine = np.asarray(mine, dtype=np.int64)
        if theirs.shape != mine.shape:
            raise ValueError("theirs and mine must have the same length")
        if mine.shape[0] == 0:
            return
        self.grow(int(mine.max()) + 1)
        shifted = DecayState(decay_signals(self.half_lives_s), backend=self.backend)
        shifted.ensure_profiles(self.n_profiles)
        shifted.acc[mine] = other.state.acc[theirs]
        shifted.records[mine] = other.state.records[theirs]
        shifted.landmark_ms = other.state.landmark_ms
        self.state.merge(shifted)
        self._channels[mine] += other.channels[theirs]
        self._refunds[mine] += other.refunds[theirs]
        self._unsubscribes[mine] += other.unsubscribes[theirs]
        self._last_use[mine] = np.maximum(self._last_use[mine], other.last_use_ms[theirs])
        self._last_gone[mine] = np.maximum(self._last_gone[mine], other.last_gone_ms[theirs])
        row_map = np.full(other.n_profiles, -1, dtype=np.int64)
        row_map[theirs] = mine
        category_map = np.array([self._intern_category(c) for c in other.categories], dtype=np.int64)
        for table, ours, values_of in (
            (other.category_table, self.category_table, category_map),
            (other.day_table, self.day_table, None),
        ):
            table.compact()
            users = row_map[table.keys >> KEY_BITS]
            keep = users >= 0
            values = table.keys[keep] & _VALUE_MASK
            if values_of is not None:
                values = values_of[values]
            ours.add((users[keep] << KEY_BITS) | values, table.values[keep])
        if other.last_ms is not None:
            self.last_ms = other.last_ms if self.last_ms is None else max(self.last_ms, other.last_ms)

    # --- features ---------------------------------------------------------------------------
    def check_now(self, now_ms: int) -> None:
        """Raise :class:`~affinity_sdk.profile.store.NowBeforeDataError` if ``now_ms`` is before
        the newest folded event (the state holds those later events already)."""
        if self.last_ms is not None and now_ms < self.last_ms:
            from affinity_sdk.profile.store import NowBeforeDataError

            raise NowBeforeDataError(
                f"cannot compute features at {now_ms} ms: the view already holds events up to "
                f"{self.last_ms} ms"
            )

    def counts(self, now_ms: int) -> ProfileCounts:
        """The :class:`~affinity_sdk.models.propensity_features.ProfileCounts` of every profile
        at ``now_ms`` (at or after the newest folded event)."""
        self.check_now(now_ms)
        self.category_table.compact()
        self.day_table.compact()
        n = self.n_profiles
        return ProfileCounts(
            decayed=self.state.decayed(now_ms)[:n],
            records=self.state.records[:n],
            channels=self.channels,
            refunds=self.refunds,
            unsubscribes=self.unsubscribes,
            last_use_ms=self.last_use_ms,
            last_gone_ms=self.last_gone_ms,
            category_keys=self.category_table.keys,
            category_counts=np.rint(self.category_table.values[:, 0]).astype(np.int64),
            day_keys=self.day_table.keys,
            day_revenue=self.day_table.values[:, 0],
        )

    def row(self, code: int, now_ms: int, *, days: bool = False) -> ProfileRow:
        """Profile ``code``'s counts at ``now_ms`` (at or after the newest folded event) as plain
        numbers, without merging the key tables: the live path of
        :meth:`~affinity_sdk.models.propensity.PropensityModel.predict_user`. ``days`` also reads
        its order days (only the order-day features need them)."""
        self.check_now(now_ms)
        state = self.state
        cached = self._factors
        if cached is None or cached[0] != state.landmark_ms or cached[1] != now_ms:
            cached = self._factors = (state.landmark_ms, now_ms, state.factors(now_ms).tolist())
        # One record is (total, count, first_ms, last_ms); unpacking the row's bytes is several
        # times faster than numpy's tolist of a structured row.
        records = self._unpack_records(state.records[code].tobytes())
        return ProfileRow(
            decayed=[a * f for a, f in zip(state.acc[code].tolist(), cached[2], strict=True)],
            records=records,
            channels=self._channels[code].tolist(),
            refunds=int(self._refunds[code]),
            unsubscribes=int(self._unsubscribes[code]),
            last_use_ms=int(self._last_use[code]),
            last_gone_ms=int(self._last_gone[code]),
            categories=self.category_table.column_of(code, 0),
            days=self.day_table.entries_of(code) if days else {},
        )

    def features(
        self, now_ms: int, spec: FeatureSpec | None = None, *, population: NDArray[np.bool_] | None = None
    ) -> Features:
        """Feature rows of every profile at ``now_ms``: ``profile_features(all folded events,
        now_ms, spec=spec)`` for ``now_ms`` at or after the newest folded event.

        ``spec`` defaults to the view's; its half-lives must be the view's (ConfigError
        otherwise). ``population`` limits whose orders the BG/NBD fit reads (pass the visible
        profiles, as :meth:`~affinity_sdk.models.propensity.PropensityModel.score_profiles` does).
        """
        spec = spec or self.spec
        if spec.half_lives_s != self.half_lives_s:
            raise ConfigError(
                f"this propensity view decays at half-lives {list(self.spec.half_lives)}; a spec with "
                f"half-lives {list(spec.half_lives)} needs a view built with them"
            )
        return features_from_counts(self.counts(now_ms), now_ms, spec, population=population)

    # --- View protocol: save / load ---------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """A MessagePack-able header and named arrays that :meth:`load_arrays` restores."""
        self.category_table.compact()
        self.day_table.compact()
        header = {
            "format": _VIEW_FORMAT,
            "half_lives_s": list(self.half_lives_s),
            "landmark_ms": self.state.landmark_ms,
            "last_ms": self.last_ms,
            "categories": list(self.categories),
        }
        arrays: dict[str, NDArray[Any]] = {
            # Saved joined (kernels.SAVED_STATE_DTYPE), the layout containers have always had.
            "records": kernels.join_state(self.state.acc, self.state.records),
            "channels": self.channels,
            "refunds": self.refunds,
            "unsubscribes": self.unsubscribes,
            "last_use_ms": self.last_use_ms,
            "last_gone_ms": self.last_gone_ms,
            "category.keys": self.category_table.keys,
            "category.counts": np.rint(self.category_table.values[:, 0]).astype(np.int64),
            "day.keys": self.day_table.keys,
            "day.revenue": self.day_table.values[:, 0].copy(),
            "day.orders": np.rint(self.day_table.values[:, 1]).astype(np.int64),
        }
        return header, arrays

    def load_arrays(self, header: dict[str, Any], arrays: dict[str, NDArray[Any]], n_profiles: int) -> None:
        """Restore :meth:`to_arrays` output for ``n_profiles`` profiles; :class:`StateError` if it
        is malformed or was built with other half-lives."""
        if not isinstance(header, dict) or header.get("format") != _VIEW_FORMAT:
            found = header.get("format") if isinstance(header, dict) else None
            raise StateError(f"propensity state format {found!r} is not supported")
        half_lives = header.get("half_lives_s")
        if not isinstance(half_lives, list) or [float(h) for h in half_lives if _is_number(h)] != list(
            self.half_lives_s
        ):
            raise StateError("propensity state was built with other half-lives")
        landmark, last, categories = (
            header.get("landmark_ms"),
            header.get("last_ms"),
            header.get("categories"),
        )
        for value in (landmark, last):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise StateError("propensity state: header times must be integers")
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise StateError("propensity state: the category names are malformed")
        if len(set(categories)) != len(categories):
            raise StateError("propensity state: the category names repeat")
        n, width = n_profiles, self.state.n_signals
        records = _array(arrays, "records", kernels.SAVED_STATE_DTYPE, (n, width))
        channels = _channel_counts(arrays, n)
        refunds = _array(arrays, "refunds", np.int64, (n,))
        unsubscribes = _array(arrays, "unsubscribes", np.int64, (n,))
        last_use = _array(arrays, "last_use_ms", np.int64, (n,))
        last_gone = _array(arrays, "last_gone_ms", np.int64, (n,))
        category_keys = _array(arrays, "category.keys", np.int64, None)
        category_counts = _array(arrays, "category.counts", np.int64, category_keys.shape)
        day_keys = _array(arrays, "day.keys", np.int64, None)
        day_revenue = _array(arrays, "day.revenue", np.float64, day_keys.shape)
        day_orders = _array(arrays, "day.orders", np.int64, day_keys.shape)
        sums = np.concatenate([records["acc"].ravel(), records["total"].ravel(), day_revenue])
        if not (np.isfinite(sums).all() and (sums >= 0).all()):
            raise StateError("propensity state holds negative or non-finite sums")
        counts = (records["count"], channels, refunds, unsubscribes)
        if any((c < 0).any() for c in counts) or (category_counts <= 0).any() or (day_orders <= 0).any():
            raise StateError("propensity state holds negative counts (or table entries without one)")
        _check_keys("category", category_keys, n, len(categories))
        _check_keys("order-day", day_keys, n, None)
        has_state = bool((records["count"] > 0).any() or category_keys.shape[0] or day_keys.shape[0])
        if has_state and (landmark is None or last is None):
            raise StateError("propensity state: the decay landmark or the newest event time is missing")
        self.n_profiles = 0
        self.state = DecayState(decay_signals(self.half_lives_s), backend=self.backend)
        self._channels = np.zeros((0, len(CHANNELS)), dtype=np.int64)
        for attr in ("_refunds", "_unsubscribes", "_last_use", "_last_gone"):
            setattr(self, attr, np.zeros(0, dtype=np.int64))
        self.grow(n)
        self.state.acc[:], self.state.records[:] = kernels.split_state(records)
        self.state.landmark_ms = landmark
        self._channels[:n] = channels
        self._refunds[:n] = refunds
        self._unsubscribes[:n] = unsubscribes
        self._last_use[:n] = last_use
        self._last_gone[:n] = last_gone
        self.category_table.load(category_keys, category_counts.astype(np.float64)[:, None])
        self.day_table.load(day_keys, np.stack([day_revenue, day_orders.astype(np.float64)], axis=1))
        self.categories = list(categories)
        self._category_code = {name: i for i, name in enumerate(self.categories)}
        self.last_ms = last


def _day_rows(
    user: NDArray[np.int64], etype: NDArray[np.int64], ts: NDArray[np.int64], revenue: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Order-day-table keys and values (revenue, 1 order) of the orders among the events."""
    orders = etype == _ORDER
    values = np.stack([revenue[orders], np.ones(int(orders.sum()))], axis=1)
    return order_day_keys(user[orders], ts[orders]), values


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _array(
    arrays: dict[str, NDArray[Any]], name: str, dtype: Any, shape: tuple[int, ...] | None
) -> NDArray[Any]:
    """``arrays[name]`` if it is there with this dtype and shape (1-D of any length for None)."""
    value = arrays.get(name)
    if not isinstance(value, np.ndarray) or value.dtype != np.dtype(dtype):
        raise StateError(f"propensity state array {name!r} is missing or of the wrong type")
    if (shape is None and value.ndim != 1) or (shape is not None and value.shape != shape):
        raise StateError(f"propensity state array {name!r} does not match the stored users")
    return np.ascontiguousarray(value)


#: Widths of the saved events-per-channel array: 6 before ``whatsapp`` became channel 6.
_SAVED_CHANNEL_WIDTHS: Final = (6, len(CHANNELS))


def _channel_counts(arrays: dict[str, NDArray[Any]], n: int) -> NDArray[np.int64]:
    """The stored events-per-channel array, widened with zero columns when it was saved before
    channels were appended to :data:`~affinity_sdk.capture.events.CHANNELS` (codes only append)."""
    value = arrays.get("channels")
    width = value.shape[1] if isinstance(value, np.ndarray) and value.ndim == 2 else len(CHANNELS)
    if width not in _SAVED_CHANNEL_WIDTHS:
        raise StateError("propensity state array 'channels' does not match the known channels")
    stored = _array(arrays, "channels", np.int64, (n, width))
    if width == len(CHANNELS):
        return stored
    wide = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    wide[:, :width] = stored
    return wide


def _check_keys(kind: str, keys: NDArray[np.int64], n: int, n_values: int | None) -> None:
    if keys.shape[0] == 0:
        return
    if np.any(keys[1:] <= keys[:-1]) or keys[0] < 0:
        raise StateError(f"propensity state: the {kind} keys are not sorted and unique")
    if int(keys[-1] >> KEY_BITS) >= n:
        raise StateError(f"propensity state: the {kind} table names unknown profiles")
    if n_values is not None and int((keys & _VALUE_MASK).max()) >= n_values:
        raise StateError(f"propensity state: the {kind} table names unknown categories")
