"""Training data for the propensity model: outcome labels and stacked training sets.

:func:`outcome_labels` says, per profile, whether it is eligible at a cutoff ``T`` and whether the
outcome happened in ``(T, T + H]``; :func:`build_training_set` stacks the features at ``T``
(:func:`~affinity_sdk.models.propensity_features.profile_features`) and those labels over one or
more cutoffs into a :class:`TrainingSet`; :func:`build_training_sets` does it for several outcomes
at once, computing the features at each cutoff once. Wherever an outcome name goes, a custom
:class:`~affinity_sdk.models.goals.Goal` may go instead (:mod:`affinity_sdk.models.goals`).
Re-exported by :mod:`affinity_sdk.models.propensity`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._units import parse_duration
from affinity_sdk.capture.events import EVENT_TYPE_CODES
from affinity_sdk.errors import ConfigError
from affinity_sdk.ingest.batch import IS_ACTIVITY, EventBatch
from affinity_sdk.models.goals import Goal, _window_ms, goal_labels
from affinity_sdk.models.propensity_features import (
    FeatureSpec,
    _app_installed,
    feature_names,
    profile_features,
)
from affinity_sdk.models.visibility import Visibility, visible_users

__all__ = [
    "OUTCOMES",
    "Outcome",
    "TrainingSet",
    "build_training_set",
    "build_training_sets",
    "outcome_labels",
]

Outcome = Literal["purchase", "repurchase", "churn", "unsubscribe", "uninstall"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("purchase", "repurchase", "churn", "unsubscribe", "uninstall")


@dataclass(frozen=True)
class TrainingSet:
    """Stacked (features at T, outcome in (T, T + H]) rows over one or more cutoffs.

    ``outcome`` is the built-in outcome's name, or the goal's name when ``goal`` is set."""

    X: NDArray[np.float64]
    y: NDArray[np.bool_]
    user: NDArray[np.int64]
    cutoff_ms: NDArray[np.int64]
    feature_names: tuple[str, ...]
    outcome: Outcome | str
    horizon_ms: int
    spec: FeatureSpec
    goal: Goal | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def window_ms(self) -> tuple[int, int]:
        """First event time that can feed a feature is unbounded; this is (first cutoff, last label time)."""
        return int(self.cutoff_ms.min()), int(self.cutoff_ms.max()) + self.horizon_ms

    def concat(self, other: TrainingSet) -> TrainingSet:
        """Rows of both sets (same outcome, horizon and features)."""
        if (other.feature_names, other.outcome, other.horizon_ms, other.goal) != (
            self.feature_names,
            self.outcome,
            self.horizon_ms,
            self.goal,
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
    outcome: Outcome | Goal,
    cutoff: int | str | datetime,
    horizon: str | float,
    *,
    future: EventBatch | None = None,
    n_profiles: int | None = None,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """``(eligible, label)`` per profile for ``outcome`` in ``(T, T + H]``.

    Eligible profiles have an event at or before ``T``; repurchase also needs an order before
    ``T``, uninstall an installed app at ``T``. Labels read events in the window from ``batch``
    and, if given, ``future`` (horizon events with the same interners). A
    :class:`~affinity_sdk.models.goals.Goal` gives its own labels
    (:func:`~affinity_sdk.models.goals.goal_labels`).

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
    if isinstance(outcome, Goal):
        return goal_labels(batch, outcome, cutoff, horizon, future=future, n_profiles=n_profiles)
    if outcome not in OUTCOMES:
        raise ConfigError(f"unknown outcome {outcome!r}; choose one of {', '.join(OUTCOMES)}")
    cutoff_ms, horizon_ms = _window_ms(cutoff, horizon)
    n = len(batch.interners.users) if n_profiles is None else n_profiles
    parts = [batch] if future is None else [batch, future]
    user = np.concatenate([b.user for b in parts])
    etype = np.concatenate([b.event_type for b in parts]).astype(np.int64)
    ts = np.concatenate([b.ts_ms for b in parts])
    before = ts <= cutoff_ms
    window = (ts > cutoff_ms) & (ts <= cutoff_ms + horizon_ms)

    def any_of(mask: NDArray[np.bool_], *names: str) -> NDArray[np.bool_]:
        """Users with an event of ``names`` (default: anything they did) in ``mask``."""
        hit = mask & (np.isin(etype, [EVENT_TYPE_CODES[x] for x in names]) if names else IS_ACTIVITY[etype])
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
    outcome: Outcome | Goal,
    cutoffs: Sequence[int | str | datetime],
    horizon: str | float,
    *,
    future: EventBatch | None = None,
    spec: FeatureSpec | None = None,
    backend: str | None = "auto",
    visible: Visibility = None,
) -> TrainingSet:
    """Features at each cutoff ``T`` and the outcome in ``(T, T + H]``, eligible profiles only,
    stacked over ``cutoffs``. Features never see events after their cutoff. ``outcome`` is a
    built-in outcome name or a :class:`~affinity_sdk.models.goals.Goal`.

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
    (data,) = build_training_sets(
        batch, [outcome], cutoffs, horizon, future=future, spec=spec, backend=backend, visible=visible
    ).values()
    return data


def build_training_sets(
    batch: EventBatch,
    outcomes: Sequence[Outcome | Goal],
    cutoffs: Sequence[int | str | datetime],
    horizon: str | float,
    *,
    future: EventBatch | None = None,
    spec: FeatureSpec | None = None,
    backend: str | None = "auto",
    visible: Visibility = None,
) -> Mapping[str, TrainingSet]:
    """:func:`build_training_set` for several outcomes (names or goals) on the same cutoffs, by
    outcome or goal name: the features at each cutoff are computed once and shared.

    Examples
    --------
    >>> from affinity_sdk.models.goals import VipGoal
    >>> from affinity_sdk.sim.shop import simulate_shop
    >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
    >>> sets = build_training_sets(sim.batch, ["purchase", VipGoal(name="vip", min_revenue=200)],
    ...                            [sim.end_ms - 14 * 86_400_000], "1w")
    >>> list(sets), bool((sets["vip"].X == sets["purchase"].X).all())
    (['purchase', 'vip'], True)
    """
    spec = spec or FeatureSpec()
    if not cutoffs:
        raise ConfigError("give at least one cutoff")
    names = [o.name if isinstance(o, Goal) else o for o in outcomes]
    if len(set(names)) != len(names):
        raise ConfigError(f"outcome and goal names must be distinct (got {names})")
    horizon_ms = round(parse_duration(horizon) * 1000)
    n = len(batch.interners.users)
    allowed = visible_users(batch, visible, future=future)
    blocks: dict[str, list[tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.int64], int]]] = {
        name: [] for name in names
    }
    for cutoff in cutoffs:
        feats = profile_features(batch, cutoff, spec=spec, n_profiles=n, backend=backend, population=allowed)
        for name, outcome in zip(names, outcomes, strict=True):
            eligible, label = outcome_labels(batch, outcome, cutoff, horizon, future=future, n_profiles=n)
            rows = np.flatnonzero(eligible & feats.seen & allowed)
            blocks[name].append((feats.X[rows], label[rows], rows.astype(np.int64), feats.cutoff_ms))
    return {
        name: TrainingSet(
            X=np.concatenate([b[0] for b in blocks[name]]),
            y=np.concatenate([b[1] for b in blocks[name]]),
            user=np.concatenate([b[2] for b in blocks[name]]),
            cutoff_ms=np.concatenate([np.full(b[0].shape[0], b[3], dtype=np.int64) for b in blocks[name]]),
            feature_names=feature_names(spec),
            outcome=name,
            horizon_ms=horizon_ms,
            spec=spec,
            goal=outcome if isinstance(outcome, Goal) else None,
        )
        for name, outcome in zip(names, outcomes, strict=True)
    }
