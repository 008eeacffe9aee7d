"""Exact, mergeable time-decay state per (profile, signal), on top of the kernels.

Forward decay (Cormode et al., ICDE 2009): ``acc = Σ v·exp(λ (t − L))`` against a landmark ``L``,
so the decayed value at ``now`` is ``acc·exp(−λ (now − L))``. Updates are scatter-adds (order
does not matter), two states merge by addition once their landmarks agree, and the landmark is
moved forward (:meth:`DecayState.rebase`, when :func:`landmark_for` says so) before any exponent
exceeds :data:`~affinity_sdk.kernels.REBASE_EXPONENT`. The affinity view
(:mod:`affinity_sdk.profile.affinity_view`) decays by the same rates and the same landmark rule.

Examples
--------
>>> import numpy as np
>>> state = DecayState(half_lives_s=[3600.0], backend="reference")
>>> state.add(np.array([0, 0]), np.array([0, 0]), np.array([0, 3_600_000]), np.ones(2))
>>> state.decayed(now_ms=3_600_000).round(6).tolist()
[[1.5]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from affinity_sdk import kernels
from affinity_sdk._backends import BackendName, resolve_backend
from affinity_sdk.kernels import REBASE_EXPONENT, decay_factors, empty_records, reset_records
from affinity_sdk.profile.rows import ensure_zeroed_capacity

__all__ = ["DecayState", "lam_per_ms", "landmark_for"]


def lam_per_ms(half_lives_s: Sequence[float]) -> NDArray[np.float64]:
    """Decay rates per millisecond, ``ln 2 / (1000 h)``: ``h = 0`` gives inf, ``h = inf`` gives 0.

    Examples
    --------
    >>> lam_per_ms([0.0, float("inf")]).tolist()
    [inf, 0.0]
    """
    h = np.asarray(half_lives_s, dtype=np.float64)
    if np.any(np.isnan(h)) or np.any(h < 0):
        raise ValueError(f"half-lives must be >= 0 (got {h.tolist()})")
    with np.errstate(divide="ignore"):
        lam: NDArray[np.float64] = np.log(2.0) / (h * 1000.0)
    return lam


def landmark_for(landmark_ms: int | None, newest_ms: int, lam_max: float) -> int | None:
    """The landmark to move to before folding events up to ``newest_ms``, or None to stay.

    With no landmark yet it is ``newest_ms``; otherwise the landmark moves to ``newest_ms`` once
    the largest exponent ``lam_max * (newest_ms - landmark_ms)`` an event there would take exceeds
    :data:`~affinity_sdk.kernels.REBASE_EXPONENT`, so the accumulators stay far from overflow.

    Examples
    --------
    >>> landmark_for(None, 5, 1.0), landmark_for(0, 5, 1.0), landmark_for(0, 100, 1.0)
    (5, None, 100)
    """
    if landmark_ms is None:
        return newest_ms
    ahead = newest_ms - landmark_ms
    if ahead > 0 and lam_max * ahead > REBASE_EXPONENT:
        return newest_ms
    return None


class DecayState:
    """Per-(profile, signal) decay state that grows as new profiles appear.

    Two arrays of shape ``(n_profiles, n_signals)`` (see :mod:`affinity_sdk.kernels._layout`):
    :attr:`acc`, the forward-decayed sums the scores read, and :attr:`records`, each cell's
    total, count and first / last times. Profiles are dense integer codes
    ``0 .. n_profiles - 1``; capacity grows geometrically (:mod:`affinity_sdk.profile.rows`), so
    growth is amortised O(1) per profile.
    """

    def __init__(
        self,
        half_lives_s: Sequence[float],
        *,
        backend: str | None = "auto",
        capacity: int = 0,
    ) -> None:
        self.lam_per_ms = lam_per_ms(half_lives_s)
        self.backend: BackendName = resolve_backend(backend)
        self.n_profiles = 0
        self.landmark_ms: int | None = None
        self._acc = np.zeros((capacity, self.n_signals))
        self._records = empty_records(capacity, self.n_signals)

    def __repr__(self) -> str:
        return (
            f"DecayState(profiles={self.n_profiles}, signals={self.n_signals}, "
            f"landmark_ms={self.landmark_ms}, backend={self.backend!r})"
        )

    @property
    def n_signals(self) -> int:
        return int(self.lam_per_ms.shape[0])

    @property
    def acc(self) -> NDArray[np.float64]:
        """The live forward-decayed sums, shape ``(n_profiles, n_signals)`` (a view, not a copy)."""
        return self._acc[: self.n_profiles]

    @property
    def records(self) -> NDArray[np.void]:
        """The live records, shape ``(n_profiles, n_signals)`` (a view, not a copy)."""
        return self._records[: self.n_profiles]

    @property
    def nbytes_per_profile(self) -> int:
        return int((self._records.dtype.itemsize + self._acc.dtype.itemsize) * self.n_signals)

    def clear_profiles(self, codes: NDArray[np.int64] | slice | int) -> None:
        """Reset profiles ``codes`` to no events (zero sums, empty records)."""
        self.acc[codes] = 0.0
        self.records[codes] = empty_records(1, self.n_signals)[0]

    def ensure_profiles(self, n_profiles: int) -> None:
        """Make room for profile codes below ``n_profiles`` (amortised geometric growth)."""
        if n_profiles <= self.n_profiles:
            return
        live = self.n_profiles
        self._acc = ensure_zeroed_capacity(self._acc, live, n_profiles)
        # Rows past the live ones are filled when they go live, not when allocated: the spare rows
        # of a grown buffer stay untouched (and their pages unmapped) until profiles need them.
        self._records = ensure_zeroed_capacity(self._records, live, n_profiles)
        reset_records(self._records[live:n_profiles])
        self.n_profiles = n_profiles

    def rebase(self, landmark_ms: int) -> None:
        """Move the landmark to ``landmark_ms`` (forward or back), rescaling every accumulator."""
        if self.landmark_ms is None:
            self.landmark_ms = int(landmark_ms)
            return
        delta = int(landmark_ms) - self.landmark_ms
        if delta != 0:
            kernels.rebase(self.acc, decay_factors(self.lam_per_ms, delta), backend=self.backend)
        self.landmark_ms = int(landmark_ms)

    def add(
        self,
        users: NDArray[np.int64],
        signals: NDArray[np.int64],
        ts_ms: NDArray[np.int64],
        values: NDArray[np.float64],
    ) -> None:
        """Fold events (already mapped to profile and signal codes) into the state.

        Codes may come in any integer dtype; they are converted (without a copy when they are
        already contiguous int64 / float64) because the compiled kernels take exact dtypes.
        """
        users = np.ascontiguousarray(users, dtype=np.int64)
        signals = np.ascontiguousarray(signals, dtype=np.int64)
        ts_ms = np.ascontiguousarray(ts_ms, dtype=np.int64)
        values = np.ascontiguousarray(values, dtype=np.float64)
        if users.shape[0] == 0:
            return
        self.ensure_profiles(int(users.max()) + 1)
        target = landmark_for(self.landmark_ms, int(ts_ms.max()), float(self.lam_per_ms.max(initial=0.0)))
        if target is not None:
            self.rebase(target)
        assert self.landmark_ms is not None
        kernels.accumulate(
            self.acc,
            self.records,
            users,
            signals,
            ts_ms,
            values,
            self.landmark_ms,
            self.lam_per_ms,
            backend=self.backend,
        )

    def merge(self, other: DecayState) -> None:
        """Add ``other`` (same signals and half-lives, same profile codes) into this state."""
        if not np.array_equal(self.lam_per_ms, other.lam_per_ms):
            raise ValueError("cannot merge states with different half-lives")
        if other.landmark_ms is None:
            return
        self.ensure_profiles(other.n_profiles)
        theirs = other.acc
        if self.landmark_ms is None or self.landmark_ms < other.landmark_ms:
            self.rebase(other.landmark_ms)
        elif self.landmark_ms > other.landmark_ms:
            theirs = theirs.copy()
            kernels.rebase(
                theirs,
                decay_factors(self.lam_per_ms, self.landmark_ms - other.landmark_ms),
                backend=self.backend,
            )
        n = other.n_profiles
        kernels.merge(self.acc[:n], self.records[:n], theirs, other.records, backend=self.backend)

    def factors(self, now_ms: int) -> NDArray[np.float64]:
        """Per-signal decay from the landmark to ``now_ms``; raises if ``now`` is so far before
        the landmark that the factor overflows."""
        if self.landmark_ms is None:
            return np.ones(self.n_signals)
        factors = decay_factors(self.lam_per_ms, now_ms - self.landmark_ms)
        if not np.all(np.isfinite(factors)):
            raise ValueError(
                f"now={now_ms} ms is too far before the decay landmark {self.landmark_ms} ms "
                "to evaluate (the decay factor overflows float64)"
            )
        return factors

    def decayed(self, now_ms: int) -> NDArray[np.float64]:
        """Decayed value per (profile, signal) at ``now_ms``."""
        return kernels.decayed(self.acc, self.factors(now_ms), backend=self.backend)

    def raw_scores(
        self, weights: NDArray[np.float64], now_ms: int, *, threads: int = 1
    ) -> NDArray[np.float64]:
        """``Σ_s weight_s · decayed_s`` per profile at ``now_ms`` (on up to ``threads`` threads in
        the C++ backend, bit-identical for any count)."""
        coefs = weights * self.factors(now_ms)
        return kernels.raw_scores(self.acc, coefs, threads=threads, backend=self.backend)

    def copy(self) -> DecayState:
        """An independent copy (same backend)."""
        clone = DecayState.__new__(DecayState)
        clone.lam_per_ms = self.lam_per_ms.copy()
        clone.backend = self.backend
        clone.n_profiles = self.n_profiles
        clone.landmark_ms = self.landmark_ms
        clone._acc = self.acc.copy()
        clone._records = self.records.copy()
        return clone
