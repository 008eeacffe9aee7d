"""The scored-signals view: exact decayed value, count, total and first / last seen per
(profile, signal), folded from the event types the config scores.

Examples
--------
>>> from affinity_sdk.config import default_config
>>> from affinity_sdk.ingest.batch import EventBatch
>>> view = SignalView(default_config(), backend="reference")
>>> batch = EventBatch.from_ndjson(b'{"type":"app_opened","user_id":"u","timestamp":0}')
>>> view.grow(1)
>>> view.fold(batch)
1
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from affinity_sdk import kernels
from affinity_sdk._backends import native
from affinity_sdk.capture.events import EVENT_TYPE_CODES, EVENT_TYPES
from affinity_sdk.config import ScoringConfig
from affinity_sdk.errors import StateError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.kernels import REBASE_EXPONENT
from affinity_sdk.profile.decay import DecayState

__all__ = ["SignalView", "compiled_exp_matches", "fold_record_row"]

_EXP_MATCHES: list[bool] = []  # compiled_exp_matches' answer, once known


def compiled_exp_matches() -> bool:
    """Whether the extension calls numpy's float64 exp loop and gets ``np.exp``'s doubles, bit for
    bit, on a spread of exponents (checked once per process): the condition for
    :meth:`SignalView.raw_of` computing decay coefficients in compiled code.

    Examples
    --------
    >>> compiled_exp_matches() in (True, False)
    True
    """
    if not _EXP_MATCHES:
        module = native()
        matches = False
        if module is not None and hasattr(module, "live_exp"):
            rng = np.random.default_rng(0)
            lam = np.log(2.0) / (1000.0 * rng.uniform(1.0, 1e8, size=509))
            x = np.concatenate([-lam * rng.integers(1, 10**11, size=509), -rng.uniform(0.0, 750.0, size=509)])
            want = np.exp(x)
            try:
                matches = True
                for n in (1, 3, 8, 13, x.shape[0]):  # tails and whole vectors of every SIMD width
                    out = np.empty(n)
                    module.live_exp(x[-n:], out)
                    matches = matches and out.tobytes() == want[-n:].tobytes()
            except ValueError:  # the loop was not found
                matches = False
        _EXP_MATCHES.append(matches)
    return _EXP_MATCHES[0]


def fold_record_row(state: DecayState, source: int, target: int) -> None:
    """Add profile ``source``'s decay records into ``target``'s and empty ``source``'s: one
    state's rows share its landmark, so this is the backend's merge kernel on the two rows (the
    numbers :meth:`DecayState.merge <affinity_sdk.profile.decay.DecayState.merge>` gives them).

    Examples
    --------
    >>> state = DecayState([3600.0], backend="reference")
    >>> state.add(np.array([0, 1]), np.array([0, 0]), np.array([0, 0]), np.array([2.0, 3.0]))
    >>> fold_record_row(state, 0, 1)
    >>> state.records["total"].ravel().tolist(), state.records["count"].ravel().tolist()
    ([0.0, 5.0], [0, 2])
    """
    state.ensure_profiles(max(source, target) + 1)
    acc, records = state.acc, state.records
    t, s = slice(target, target + 1), slice(source, source + 1)
    kernels.merge(acc[t], records[t], acc[s], records[s], backend=state.backend)
    state.clear_profiles(source)


class SignalView:
    """Per-(profile, signal) forward-decay records for the config's signals."""

    name = "signals"

    def __init__(self, config: ScoringConfig, *, backend: str | None = "auto") -> None:
        self.config = config
        self.state = DecayState(config.half_lives_s, backend=backend)
        self.weights = np.asarray(config.weights, dtype=np.float64)
        self._signal_of_type = np.full(len(EVENT_TYPES), -1, dtype=np.int64)
        for i, name in enumerate(config.signal_names):
            self._signal_of_type[EVENT_TYPE_CODES[name]] = i
        self._decays_revenue = np.array([v == "revenue" for v in config.value_fields], dtype=np.bool_)
        self._any_revenue = bool(self._decays_revenue.any())
        self._coefs_at: tuple[int, int | None] | None = None
        self._coefs = self.weights
        # The one-event path's tables, as Python scalars (no numpy indexing per event).
        self._signal_list: list[int] = self._signal_of_type.tolist()
        self._decays_list: list[bool] = self._decays_revenue.tolist()
        self._lam_max = float(self.state.lam_per_ms.max(initial=0.0))
        self._neg_lam = -self.state.lam_per_ms
        self._buffers = tuple(np.empty_like(self._neg_lam) for _ in range(3))
        module = native() if self.state.backend == "cpp" else None
        #: The compiled one-event kernels (csrc/live.hpp), or None: the batch kernels on 1 row.
        self.live: Any = module if module is not None and hasattr(module, "live_fold") else None
        #: :meth:`fold`'s selection of the scored rows in one compiled pass, or None: numpy's.
        self._scored_events: Any = getattr(module, "scored_events", None)
        # raw_of's compiled call and its table [Δ of the coefficients, −λ, weights, scratch,
        # coefficients] (csrc/bind_live.cpp), where numpy's exp loop was found and checked.
        self._raw_at: Any = (
            self.live.live_raw_at if self.live is not None and compiled_exp_matches() else None
        )
        n = self.weights.shape[0]
        self._table = np.concatenate([[np.nan], self._neg_lam, self.weights, np.zeros(3 * n)])

    @property
    def backend(self) -> str:
        return self.state.backend

    def grow(self, n_profiles: int) -> None:
        self.state.ensure_profiles(n_profiles)

    def fold(self, batch: EventBatch) -> int:
        """Fold the events of scored types; returns how many there were."""
        if self._scored_events is not None:
            users, signal, ts_ms, values = self._scored_events(
                np.ascontiguousarray(batch.event_type, dtype=np.uint8),
                np.ascontiguousarray(batch.user, dtype=np.int64),
                np.ascontiguousarray(batch.ts_ms, dtype=np.int64),
                np.ascontiguousarray(batch.revenue, dtype=np.float64),
                self._signal_of_type,
                self._decays_revenue,
            )
            if users.shape[0]:
                self.state.add(users, signal, ts_ms, values)
            return int(users.shape[0])
        signal = self._signal_of_type[batch.event_type]
        keep = signal >= 0
        n = int(np.count_nonzero(keep))
        if n == 0:
            return 0
        users, ts_ms, revenue = batch.user, batch.ts_ms, batch.revenue
        if n != len(batch):
            signal, users, ts_ms, revenue = signal[keep], users[keep], ts_ms[keep], revenue[keep]
        if self._any_revenue:
            # a missing (NaN) amount adds 0
            values = np.where(self._decays_revenue[signal], np.where(np.isnan(revenue), 0.0, revenue), 1.0)
        else:
            values = np.ones(n)
        self.state.add(users, signal, ts_ms, values)
        return n

    def fold_one(self, code: int, event_type: int, ts_ms: int, revenue: float) -> bool:
        """:meth:`fold` of a one-event batch, on scalars (the same numbers bit for bit: one
        compiled call on the ``"cpp"`` backend, the backend's batch kernel on one row otherwise).
        Returns whether the event's type is scored.

        Examples
        --------
        >>> from affinity_sdk.config import default_config
        >>> view = SignalView(default_config(), backend="reference")
        >>> view.fold_one(0, EVENT_TYPE_CODES["app_opened"], 0, float("nan"))
        True
        >>> int(view.state.records[0]["count"].sum())
        1
        """
        signal = self._signal_list[event_type]
        if signal < 0:
            return False
        value = (0.0 if revenue != revenue else float(revenue)) if self._decays_list[signal] else 1.0
        state = self.state
        if self.live is None:
            state.add(np.array([code]), np.array([signal]), np.array([ts_ms]), np.array([value]))
            return True
        if code >= state.n_profiles:
            state.ensure_profiles(code + 1)
        landmark = state.landmark_ms
        # landmark_for's rule, inlined: most events leave the landmark where it is
        if landmark is None or (ts_ms > landmark and self._lam_max * (ts_ms - landmark) > REBASE_EXPONENT):
            state.rebase(ts_ms)
            landmark = ts_ms
        # The whole buffers, not the `acc` / `records` views: slicing them costs more than the fold
        # (the row exists, ensure_profiles made sure of it).
        self.live.live_fold(
            state._acc, state._records, code, signal, ts_ms, value, landmark, state.lam_per_ms
        )
        return True

    def unfold(self, batch: EventBatch) -> None:
        """Take back events folded earlier (a copy both merged shards folded): acc, count and
        total go down by what :meth:`fold` added; first / last seen stay, as the other copy of
        each event remains."""
        signal = self._signal_of_type[batch.event_type]
        keep = signal >= 0
        if not keep.any() or self.state.landmark_ms is None:
            return
        signal, users, ts_ms = signal[keep], batch.user[keep], batch.ts_ms[keep]
        values = np.where(self._decays_revenue[signal], np.nan_to_num(batch.revenue[keep], nan=0.0), 1.0)
        dt = (ts_ms - self.state.landmark_ms).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            exponent = np.where(dt == 0.0, 0.0, self.state.lam_per_ms[signal] * dt)
        acc, records = self.state.acc, self.state.records
        cell = (users, signal)
        np.subtract.at(acc, cell, values * np.exp(exponent))
        np.subtract.at(records["total"], cell, values)
        np.subtract.at(records["count"], cell, 1)
        # Rounding may leave -1e-17 where a sum should be 0: clamp, and zero emptied cells exactly.
        rows, cols = users, signal
        for field in (acc, records["total"]):
            field[rows, cols] = np.where(
                records["count"][rows, cols] > 0, np.maximum(field[rows, cols], 0.0), 0.0
            )

    def erase(self, codes: NDArray[np.int64]) -> None:
        self.state.clear_profiles(codes)

    def fold_row(self, source: int, target: int) -> None:
        """Add profile ``source`` into ``target`` and empty ``source`` (an identity merge), in
        work proportional to the two rows (:func:`fold_record_row`)."""
        if source != target:
            fold_record_row(self.state, source, target)

    def merge_rows(self, other: SignalView, theirs: NDArray[np.int64], mine: NDArray[np.int64]) -> None:
        """Add ``other``'s profiles ``theirs`` into this view's profiles ``mine`` (exactly)."""
        shifted = DecayState(self.config.half_lives_s, backend=self.backend)
        shifted.ensure_profiles(self.state.n_profiles)
        shifted.acc[mine] = other.state.acc[theirs]
        shifted.records[mine] = other.state.records[theirs]
        shifted.landmark_ms = other.state.landmark_ms
        self.state.merge(shifted)

    def raw_scores(self, now_ms: int, *, threads: int = 1) -> NDArray[np.float64]:
        return self.state.raw_scores(self.weights, now_ms, threads=threads)

    def coefs_at(self, now_ms: int) -> NDArray[np.float64]:
        """``weights · factors(now_ms)``, the per-signal coefficients of :meth:`raw_scores`, kept
        for the next call at the same time and landmark (``tier_of`` asks at the latest event
        time); the same numbers as computing them afresh."""
        state = self.state
        key = (now_ms, state.landmark_ms)
        if key != self._coefs_at:
            landmark = state.landmark_ms
            if landmark is None or now_ms == landmark:
                self._coefs = self.weights * 1.0
            elif now_ms > landmark:
                # decay_factors' own arithmetic (into kept buffers), without the overflow guard a
                # factor <= 1 never needs
                x, factors, coefs = self._buffers
                np.multiply(self._neg_lam, float(now_ms - landmark), out=x)
                np.exp(x, out=factors)
                self._coefs = np.multiply(self.weights, factors, out=coefs)
            else:
                self._coefs = self.weights * state.factors(now_ms)
            self._coefs_at = key
        return self._coefs

    def raw_of(self, code: int, now_ms: int) -> float:
        """One profile's raw score at ``now_ms``: on the ``"cpp"`` backend one compiled call
        summing in :meth:`raw_scores`' order (so the same number ``score()`` sees), which also
        computes the coefficients when ``now_ms`` moved, as :meth:`coefs_at` does.

        Examples
        --------
        >>> from affinity_sdk.config import default_config
        >>> view = SignalView(default_config())
        >>> _ = view.fold_one(0, EVENT_TYPE_CODES["app_opened"], 0, float("nan"))
        >>> view.raw_of(0, 86_400_000) == float(view.raw_scores(86_400_000)[0])
        True
        """
        state = self.state
        landmark = state.landmark_ms
        if self._raw_at is not None and landmark is not None and now_ms >= landmark:
            return float(self._raw_at(state._acc, code, now_ms - landmark, self._table))  # as in fold_one
        coefs = self.coefs_at(now_ms)
        if self.live is not None:
            return float(self.live.live_raw(self.state.acc, code, coefs))
        return float(self.state.acc[code] @ coefs)

    def tier_at(
        self, code: int, now_ms: int, tiers: NDArray[np.int8], cuts: NDArray[np.float64]
    ) -> int | None:
        """Profile ``code``'s tier code at ``now_ms`` in one compiled call: :meth:`raw_of`'s raw
        score against ``cuts`` (``[enter (2), first (2), stay (2)]`` as in
        :class:`~affinity_sdk.score.tiers.ScalarCutoffs`) with hysteresis against ``tiers[code]``
        (none past the end), by the batch kernels' rule; ``None`` where it does not apply (not
        the ``"cpp"`` backend, or ``now_ms`` before the landmark): use :meth:`raw_of` then.

        Examples
        --------
        >>> from affinity_sdk.config import default_config
        >>> view = SignalView(default_config())
        >>> _ = view.fold_one(0, EVENT_TYPE_CODES["app_opened"], 0, float("nan"))
        >>> raw = view.raw_of(0, 0)
        >>> cuts = np.array([raw / 2, raw * 2, raw / 2, raw * 2, raw / 3, raw])  # Medium
        >>> view.tier_at(0, 0, np.zeros(0, dtype=np.int8), cuts) in (None, 1)
        True
        """
        landmark = self.state.landmark_ms
        if self._raw_at is None or landmark is None or now_ms < landmark:
            return None
        tier: int = self.live.live_tier(self.state._acc, code, now_ms - landmark, self._table, tiers, cuts)
        return tier

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        # Saved joined (kernels.SAVED_STATE_DTYPE), the layout containers have always had.
        state = self.state
        return {"landmark_ms": state.landmark_ms}, {"records": kernels.join_state(state.acc, state.records)}

    def load_arrays(self, header: dict[str, Any], arrays: dict[str, NDArray[Any]], n_profiles: int) -> None:
        records = arrays.get("records")
        if records is None or records.dtype != kernels.SAVED_STATE_DTYPE or records.ndim != 2:
            raise StateError("state records are missing or of the wrong type")
        if records.shape != (n_profiles, self.state.n_signals):
            raise StateError("state arrays do not match the stored users / signals")
        sums = np.concatenate([records["acc"].ravel(), records["total"].ravel()])
        if not (np.isfinite(sums).all() and (sums >= 0).all() and (records["count"] >= 0).all()):
            raise StateError("state records hold negative or non-finite values")
        landmark = header.get("landmark_ms")
        if landmark is not None and not isinstance(landmark, int):
            raise StateError("stored decay landmark is not an integer")
        self.state.ensure_profiles(n_profiles)
        self.state.acc[:], self.state.records[:] = kernels.split_state(records)
        self.state.landmark_ms = landmark
