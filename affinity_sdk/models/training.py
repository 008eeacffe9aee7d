"""Training data for the propensity model: outcome labels and stacked training sets.

:func:`outcome_labels` says, per profile, whether it is eligible at a cutoff ``T`` and whether the
outcome happened in ``(T, T + H]``; :func:`build_training_set` stacks the features at ``T``
(:func:`~affinity_sdk.models.propensity_features.profile_features`) and those labels over one or
more cutoffs into a :class:`TrainingSet`. Re-exported by :mod:`affinity_sdk.models.propensity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._units import parse_duration, to_epoch_ms
from affinity_sdk.capture.events import EVENT_TYPE_CODES
from affinity_sdk.errors import ConfigError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.models.propensity_features import (
    FeatureSpec,
    _app_installed,
    feature_names,
    profile_features,
)
from affinity_sdk.models.visibility import Visibility, visible_users

__all__ = ["OUTCOMES", "Outcome", "TrainingSet", "build_training_set", "outcome_labels"]

Outcome = Literal["purchase", "repurchase", "churn", "unsubscribe", "uninstall"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("purchase", "repurchase", "churn", "unsubscribe", "uninstall")


@dataclass(frozen=True)
class TrainingSet:
    """Stacked (features at T, outcome in (T, T + H]) rows over one or more cutoffs."""

    X: NDArray[np.float64]
    y: NDArray[np.bool_]
    user: NDArray[np.int64]
    cutoff_ms: NDArray[np.int64]
    feature_names: tuple[str, ...]
    outcome: Outcome
    horizon_ms: int
    spec: FeatureSpec

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def window_ms(self) -> tuple[int, int]:
        """First event time that can feed a feature is unbounded; this is (first cutoff, last label time)."""
        return int(self.cutoff_ms.min()), int(self.cutoff_ms.max()) + self.horizon_ms

    def concat(self, other: TrainingSet) -> TrainingSet:
        """Rows of both sets (same outcome, horizon and features)."""
        if (other.feature_names, other.outcome, other.horizon_ms) != (
            self.feature_names,
            self.outcome,
            self.horizon_ms,
        ):
            raise ConfigError("cannot stack training sets with different features, outcome or horizon")
        return replace(
            self,
            X=np.concatenate([self.X, other.X]),
            y=np.concatenate([self.y, other.y]),
            user=np.concatenate([self.user, other.user]),
            cutoff_ms=np.concatenate([self.cutoff_ms, other.cutoff_ms]),
        )


def outcome_labels(
    batch: EventBatch,
    outcome: Outcome,
    cutoff: int | str | datetime,
    horizon: str | float,
    *,
    future: EventBatch | None = None,
    n_profiles: int | None = None,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """``(eligible, label)`` per profile for ``outcome`` in ``(T, T + H]``.

    Eligible profiles have an event at or before ``T``; repurchase also needs an order before
    ``T``, uninstall an installed app at ``T``. Labels read events in the window from ``batch``
    and, if given, ``future`` (horizon events with the same interners).

    Examples
    --------
    >>> from affinity_sdk.capture.events import OrderCompleted, PageViewed
    >>> day = 86_400_000
    >>> events = [PageViewed(user_id="a", timestamp=0), PageViewed(user_id="b", timestamp=0),
    ...           OrderCompleted(user_id="a", timestamp=3 * day, order_id="1", products=[], revenue=9.0)]
    >>> eligible, y = outcome_labels(EventBatch.from_events(events), "purchase", day, "7d")
    >>> eligible.tolist(), y.tolist()
    ([True, True], [True, False])
    """
    if outcome not in OUTCOMES:
        raise ConfigError(f"unknown outcome {outcome!r}; choose one of {', '.join(OUTCOMES)}")
    cutoff_ms = to_epoch_ms(cutoff)
    horizon_ms = round(parse_duration(horizon) * 1000)
    if horizon_ms <= 0:
        raise ConfigError(f"horizon must be positive (got {horizon!r})")
    n = len(batch.interners.users) if n_profiles is None else n_profiles
    parts = [batch] if future is None else [batch, future]
    user = np.concatenate([b.user for b in parts])
    etype = np.concatenate([b.event_type for b in parts]).astype(np.int64)
    ts = np.concatenate([b.ts_ms for b in parts])
    before = ts <= cutoff_ms
    window = (ts > cutoff_ms) & (ts <= cutoff_ms + horizon_ms)

    def any_of(mask: NDArray[np.bool_], *names: str) -> NDArray[np.bool_]:
        hit = mask & np.isin(etype, [EVENT_TYPE_CODES[x] for x in names]) if names else mask
        return np.bincount(user[hit], minlength=n)[:n] > 0

    active_before = any_of(before)
    if outcome == "purchase":
        return active_before, any_of(window, "order_completed")
    if outcome == "repurchase":
        return any_of(before, "order_completed"), any_of(window, "order_completed")
    if outcome == "churn":
        return active_before, ~any_of(window)
    if outcome == "unsubscribe":
        return active_before, any_of(window, "unsubscribed")
    installed = _app_installed(user[before], etype[before], ts[before], n) > 0
    return installed, any_of(window, "app_uninstalled")


def build_training_set(
    batch: EventBatch,
    outcome: Outcome,
    cutoffs: Sequence[int | str | datetime],
    horizon: str | float,
    *,
    future: EventBatch | None = None,
    spec: FeatureSpec | None = None,
    backend: str | None = "auto",
    visible: Visibility = None,
) -> TrainingSet:
    """Features at each cutoff ``T`` and the outcome in ``(T, T + H]``, eligible profiles only,
    stacked over ``cutoffs``. Features never see events after their cutoff.

    Users whose latest consent decision in ``batch`` / ``future`` is a revocation, or whom
    ``visible`` hides (see :func:`visible_users`), get no rows, and their orders do not enter
    the BG/NBD fit (``spec.bgnbd``).

    Examples
    --------
    >>> from affinity_sdk.sim.shop import simulate_shop
    >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
    >>> ts = build_training_set(sim.batch, "churn", [sim.end_ms - 14 * 86_400_000], "1w")
    >>> ts.X.shape[1] == len(ts.feature_names) and len(ts) <= 300
    True
    """
    spec = spec or FeatureSpec()
    if not cutoffs:
        raise ConfigError("give at least one cutoff")
    horizon_ms = round(parse_duration(horizon) * 1000)
    n = len(batch.interners.users)
    allowed = visible_users(batch, visible, future=future)
    blocks: list[tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.int64], int]] = []
    for cutoff in cutoffs:
        feats = profile_features(batch, cutoff, spec=spec, n_profiles=n, backend=backend, population=allowed)
        eligible, label = outcome_labels(batch, outcome, cutoff, horizon, future=future, n_profiles=n)
        rows = np.flatnonzero(eligible & feats.seen & allowed)
        blocks.append((feats.X[rows], label[rows], rows.astype(np.int64), feats.cutoff_ms))
    return TrainingSet(
        X=np.concatenate([b[0] for b in blocks]),
        y=np.concatenate([b[1] for b in blocks]),
        user=np.concatenate([b[2] for b in blocks]),
        cutoff_ms=np.concatenate([np.full(b[0].shape[0], b[3], dtype=np.int64) for b in blocks]),
        feature_names=feature_names(spec),
        outcome=outcome,
        horizon_ms=horizon_ms,
        spec=spec,
    )
