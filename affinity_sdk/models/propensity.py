"""Propensity models: purchase, repurchase, churn, unsubscribe and uninstall probabilities.

The pipeline, each step a small function:

1. :func:`profile_features` turns the events up to a cutoff ``T`` into one feature row per
   profile, from the same forward-decay state (:class:`~affinity_sdk.profile.decay.DecayState`) the
   scorer keeps: each signal group decayed at two or more half-lives (so trend shows), recency,
   frequency, monetary value, tenure, category concentration and channel engagement. Nothing
   after ``T`` is read, by construction (events are filtered before the state is built).
2. :func:`build_training_set` labels the outcome in ``(T, T + H]`` and stacks several cutoffs;
   a custom goal (:mod:`~affinity_sdk.models.goals`) goes wherever an outcome name goes.
3. :meth:`PropensityModel.fit` fits an L2-regularised logistic regression on standardised features
   (scipy's L-BFGS-B with the analytic gradient), then calibrates it (Platt or isotonic, chosen on
   held-out rows). Coefficients are readable per feature (:meth:`PropensityModel.explain`).
4. :meth:`PropensityModel.predict_proba` scores through a compiled (Numba) kernel, or its numpy
   reference twin with ``backend="reference"``;
   :meth:`PropensityModel.tiers` buckets probabilities into High / Medium / Low.
5. :meth:`PropensityModel.refit` warm-starts on newer cutoffs (campaign outcomes feed back);
   :meth:`PropensityModel.save` / :meth:`PropensityModel.load` keep the feature list, config
   fingerprint, training window and a model version.
6. :meth:`PropensityModel.score_profiles` scores the visible users of a profile store from its
   ``"propensity"`` view (:class:`~affinity_sdk.profile.propensity_view.PropensityView`), with the
   same numbers :meth:`PropensityModel.score_batch` gives on the same events;
   :meth:`PropensityModel.predict_user` / :meth:`PropensityModel.predict_users` score one user /
   a few live from the view (:mod:`~affinity_sdk.models.propensity_live`).

Consent: the batch paths (:func:`build_training_set`, :meth:`PropensityModel.score_batch`) leave
out every user whose latest consent decision in the batch is a revocation, and with ``visible``
(a mask, a callable or a profile store / scorer, see :func:`visible_users`) the users it hides
too: they get no training row, no probability, and their orders do not enter the population-fitted
BG/NBD features.

This module keeps the model and its tiers; the other steps live in their own modules, their
public names re-exported here: the features in :mod:`~affinity_sdk.models.propensity_features`
(order-day and BG/NBD ones in :mod:`~affinity_sdk.models.order_day_features`), labels and
training sets in :mod:`~affinity_sdk.models.training`, consent and visibility in
:mod:`~affinity_sdk.models.visibility`, calibration in :mod:`~affinity_sdk.models.calibration`
and the logistic fit in :mod:`~affinity_sdk.models.logistic`.

Examples
--------
>>> from affinity_sdk.sim.shop import simulate_shop
>>> sim = simulate_shop(400, weeks=8, horizon_weeks=2, seed=3)
>>> week = 7 * 86_400_000
>>> train = build_training_set(sim.batch, "purchase", [sim.end_ms - 4 * week, sim.end_ms - 2 * week], "2w")
>>> model = PropensityModel.fit(train)
>>> p = model.predict_proba(profile_features(sim.batch, sim.end_ms, spec=model.spec).X)
>>> p.shape == (400,) and bool(((p >= 0) & (p <= 1)).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Protocol

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray

from affinity_sdk._backends import BackendName, resolve_backend
from affinity_sdk.errors import AffinityError, ConfigError
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.kernels import _propensity_reference
from affinity_sdk.kernels.protocol import PropensityKernels
from affinity_sdk.models.calibration import Calibrator, _choose_calibrator
from affinity_sdk.models.goals import Goal
from affinity_sdk.models.logistic import fit_logistic
from affinity_sdk.models.order_day_features import _ORDER_DAY_FEATURES as _ORDER_DAY_FEATURES
from affinity_sdk.models.order_day_features import _order_days as _order_days
from affinity_sdk.models.order_day_features import decayed_order_days
from affinity_sdk.models.propensity_features import _SCALAR_FEATURES as _SCALAR_FEATURES
from affinity_sdk.models.propensity_features import (
    Features,
    FeatureSpec,
    feature_names,
    profile_features,
)
from affinity_sdk.models.propensity_io import MODEL_FORMAT as MODEL_FORMAT
from affinity_sdk.models.propensity_io import MODEL_KIND as MODEL_KIND
from affinity_sdk.models.training import (
    OUTCOMES,
    Outcome,
    TrainingSet,
    build_training_set,
    outcome_labels,
)
from affinity_sdk.models.visibility import Visibility, visible_users
from affinity_sdk.score.tiers import TierPlan

if TYPE_CHECKING:
    from affinity_sdk.profile.store import ProfileStore
    from affinity_sdk.score.scorer import Scorer

__all__ = [
    "OUTCOMES",
    "TIER_NAMES",
    "Calibrator",
    "FeatureSpec",
    "Features",
    "Outcome",
    "PropensityClassifier",
    "PropensityModel",
    "TierSpec",
    "TrainingSet",
    "Visibility",
    "assign_tiers",
    "build_training_set",
    "decayed_order_days",
    "feature_names",
    "outcome_labels",
    "profile_features",
    "tier_plan",
    "visible_users",
]


# --- the model ------------------------------------------------------------------------------


def _impl(backend: BackendName) -> PropensityKernels:
    """The scoring kernel of ``backend`` (no C++ twin: ``"cpp"`` runs the Numba kernel, which
    is imported on first use)."""
    if backend == "reference":
        return _propensity_reference
    from affinity_sdk.kernels import _propensity_numba

    return _propensity_numba


class _TierLike(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def high(self) -> float: ...
    @property
    def medium(self) -> float: ...


class TierSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """High / Medium / Low from a probability: ``threshold`` cut-offs on the probability, or
    ``quantile`` cut-offs (0.9 = top 10 % High). :class:`~affinity_sdk.config.TierConfig`-shaped,
    so a scoring config's tier section can be passed instead (``absolute`` = ``threshold``)."""

    method: Literal["quantile", "threshold", "absolute"] = "quantile"
    high: float = 0.9
    medium: float = 0.6


TIER_NAMES: Final = ("Low", "Medium", "High")


class PropensityModel:
    """A fitted, calibrated logistic propensity model for one outcome.

    Fitted attributes end in ``_``: ``mean_`` / ``scale_`` (standardisation), ``coef_``
    (per standardised feature), ``intercept_``, ``calibrator_``. Metadata: ``outcome``,
    ``feature_names``, ``spec``, ``horizon_ms``, ``training_window_ms``, ``config_fingerprint``,
    ``version`` (1 on fit, +1 on every :meth:`refit`), ``n_train``, ``l2``, and ``goal`` (the
    :class:`~affinity_sdk.models.goals.Goal` of a custom-goal model, whose name is ``outcome``).
    """

    def __init__(
        self,
        *,
        outcome: Outcome | str,
        feature_names: tuple[str, ...],
        spec: FeatureSpec,
        horizon_ms: int,
        mean: NDArray[np.float64],
        scale: NDArray[np.float64],
        coef: NDArray[np.float64],
        intercept: float,
        calibrator: Calibrator,
        l2: float,
        training_window_ms: tuple[int, int],
        n_train: int,
        config_fingerprint: str | None = None,
        version: int = 1,
        goal: Goal | None = None,
    ) -> None:
        self.outcome: Outcome | str = outcome
        self.goal = goal
        self.feature_names = tuple(feature_names)
        self.spec = spec
        self.horizon_ms = int(horizon_ms)
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.scale_ = np.asarray(scale, dtype=np.float64)
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = float(intercept)
        self.calibrator_ = calibrator
        self.l2 = float(l2)
        self.training_window_ms = (int(training_window_ms[0]), int(training_window_ms[1]))
        self.n_train = int(n_train)
        self.config_fingerprint = config_fingerprint
        self.version = int(version)

    def __repr__(self) -> str:
        return (
            f"PropensityModel(outcome={self.outcome!r}, features={len(self.feature_names)}, "
            f"calibration={self.calibrator_.kind!r}, version={self.version}, n_train={self.n_train})"
        )

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        data: TrainingSet,
        *,
        l2: float = 1.0,
        calibration: Literal["auto", "platt", "isotonic", "none"] = "auto",
        calibration_fraction: float = 0.25,
        config_fingerprint: str | None = None,
        seed: int = 0,
    ) -> PropensityModel:
        """Fit on ``data``: logistic regression on ``1 - calibration_fraction`` of the profiles,
        calibration on the rest (split by profile, so one profile's cutoffs stay together).

        Examples
        --------
        >>> import numpy as np
        >>> from affinity_sdk.sim.shop import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> model = PropensityModel.fit(data, config_fingerprint="cfg-1")
        >>> model.version, model.config_fingerprint, len(model.explain()) == len(data.feature_names)
        (1, 'cfg-1', True)
        """
        model = cls._blank(data, l2, config_fingerprint)
        return model._fit_rows(data, None, calibration, calibration_fraction, seed)

    @classmethod
    def _blank(cls, data: TrainingSet, l2: float, fingerprint: str | None) -> PropensityModel:
        f = len(data.feature_names)
        return cls(
            outcome=data.outcome,
            feature_names=data.feature_names,
            spec=data.spec,
            horizon_ms=data.horizon_ms,
            mean=np.zeros(f),
            scale=np.ones(f),
            coef=np.zeros(f),
            intercept=0.0,
            calibrator=Calibrator(),
            l2=l2,
            training_window_ms=data.window_ms,
            n_train=0,
            config_fingerprint=fingerprint,
            version=0,
            goal=data.goal,
        )

    def _fit_rows(
        self,
        data: TrainingSet,
        start: NDArray[np.float64] | None,
        calibration: str,
        calibration_fraction: float,
        seed: int,
    ) -> PropensityModel:
        if len(data) == 0:
            raise AffinityError("the training set is empty (no eligible profiles at the cutoffs)")
        if not 0.0 <= calibration_fraction < 1.0:
            raise ConfigError(f"calibration_fraction must be in [0, 1) (got {calibration_fraction})")
        if calibration not in ("auto", "platt", "isotonic", "none"):
            raise ConfigError(f"unknown calibration {calibration!r}")
        rng = np.random.default_rng(seed)
        # Split by profile so a profile's rows at several cutoffs do not straddle fit / calibration.
        users = np.unique(data.user)
        held = rng.random(users.shape[0]) < calibration_fraction
        in_cal = np.isin(data.user, users[held]) if calibration != "none" else np.zeros(len(data), bool)
        fit_rows = ~in_cal
        X, y = data.X[fit_rows], data.y[fit_rows].astype(np.float64)
        if y.shape[0] == 0 or y.min() == y.max():
            raise AffinityError(
                f"the training set needs both outcomes (positives: {int(y.sum())} of {len(y)})"
            )
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 1e-12] = 1.0  # a constant column carries no information; keep it inert
        if start is None:
            start = np.zeros(X.shape[1] + 1)
            rate = y.mean()
            start[0] = math.log(rate / (1.0 - rate))
        theta = fit_logistic((X - mean) / scale, y, self.l2, start)
        self.mean_, self.scale_, self.intercept_, self.coef_ = mean, scale, float(theta[0]), theta[1:].copy()
        self.calibrator_ = Calibrator()
        if in_cal.any():
            raw = self.predict_proba(data.X[in_cal])
            self.calibrator_ = _choose_calibrator(raw, data.y[in_cal].astype(np.float64), calibration, rng)
        self.n_train = int(fit_rows.sum())
        self.version += 1
        return self

    def refit(
        self,
        data: TrainingSet,
        *,
        calibration: Literal["auto", "platt", "isotonic", "none"] = "auto",
        calibration_fraction: float = 0.25,
        seed: int = 0,
    ) -> PropensityModel:
        """Update on newer cutoffs (e.g. campaign outcomes), warm-started from the current
        coefficients; the training window grows and ``version`` goes up. Returns ``self``.

        Examples
        --------
        >>> from affinity_sdk.sim.shop import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> day = 86_400_000
        >>> old = build_training_set(sim.batch, "purchase", [sim.end_ms - 14 * day], "1w")
        >>> new = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * day], "1w")
        >>> model = PropensityModel.fit(old).refit(new)
        >>> model.version, model.training_window_ms[1] == sim.end_ms
        (2, True)
        """
        if (data.feature_names, data.outcome, data.horizon_ms, data.goal) != (
            self.feature_names,
            self.outcome,
            self.horizon_ms,
            self.goal,
        ):
            raise ConfigError("refit needs the same features, outcome and horizon as the model")
        # Carry the old decision function into the new standardisation: z = b + Σ w (x - m) / s.
        new_mean = data.X.mean(axis=0)
        new_scale = data.X.std(axis=0)
        new_scale[new_scale < 1e-12] = 1.0
        raw_w = self.coef_ / self.scale_
        start = np.empty(len(self.feature_names) + 1)
        start[1:] = raw_w * new_scale
        start[0] = self.intercept_ + float(raw_w @ (new_mean - self.mean_))
        window = (
            min(self.training_window_ms[0], data.window_ms[0]),
            max(self.training_window_ms[1], data.window_ms[1]),
        )
        self._fit_rows(data, start, calibration, calibration_fraction, seed)
        self.training_window_ms = window
        return self

    # -- scoring ---------------------------------------------------------------------------
    def _folded(self) -> tuple[NDArray[np.float64], float]:
        weight = np.ascontiguousarray(self.coef_ / self.scale_)
        return weight, self.intercept_ - float(weight @ self.mean_)

    def predict_proba(
        self, X: ArrayLike, *, calibrated: bool = True, backend: str | None = "auto"
    ) -> NDArray[np.float64]:
        """Probability of the outcome for each feature row (compiled, parallel).

        ``backend`` picks the scoring kernel: ``"reference"`` is the numpy oracle; ``"numba"``
        and ``"cpp"`` (no C++ twin) run the parallel Numba kernel. They agree up to rounding.

        Examples
        --------
        >>> import numpy as np
        >>> from affinity_sdk.sim.shop import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> model = PropensityModel.fit(data, calibration="platt")
        >>> p = model.predict_proba(data.X)
        >>> bool(np.all((0 < p) & (p < 1)))
        True
        """
        rows = np.ascontiguousarray(X, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected feature rows of shape (n, {len(self.feature_names)}), got {rows.shape}"
            )
        weight, bias = self._folded()
        cal = self.calibrator_ if calibrated else Calibrator()
        a, b = (cal.a, cal.b) if cal.kind == "platt" else (1.0, 0.0)
        out = np.empty(rows.shape[0])
        _impl(resolve_backend(backend)).logistic_scores(rows, weight, bias, a, b, out)
        if cal.kind == "isotonic":
            out = cal.apply(out)
        return out

    def score_batch(
        self,
        batch: EventBatch,
        now: int | str | datetime,
        *,
        backend: str | None = "auto",
        visible: Visibility = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """``(probability, seen)`` for every interned user from ``batch``'s events up to ``now``.

        Users whose latest consent decision in ``batch`` is a revocation, or whom ``visible``
        hides (a mask, a callable or a profile store / scorer: see :func:`visible_users`), are
        left out: probability NaN, ``seen`` False, and their orders do not enter the BG/NBD fit.
        Keep ``p[seen]`` (and ``users[seen]``) for the users to act on; :meth:`tiers` ranks only
        the users with a probability.

        Examples
        --------
        >>> from affinity_sdk.sim.shop import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> p, seen = PropensityModel.fit(data).score_batch(sim.batch, sim.end_ms)
        >>> p.shape, seen.dtype
        ((300,), dtype('bool'))
        """
        allowed = visible_users(batch, visible)
        feats = profile_features(batch, now, spec=self.spec, backend=backend, population=allowed)
        p = self.predict_proba(feats.X, backend=backend)
        p[~allowed] = np.nan
        return p, feats.seen & allowed

    def score_profiles(
        self,
        store: ProfileStore | Scorer,
        now: datetime | str | int | None = None,
        *,
        backend: str | None = "auto",
    ) -> tuple[list[str], NDArray[np.float64]]:
        """``(user_ids, probabilities)`` of every visible user with events in a profile store (or
        a :class:`~affinity_sdk.score.scorer.Scorer`'s store) that keeps the ``"propensity"`` view,
        at ``now`` (default: the newest folded event; not before it). Users in store code order.

        The same numbers :meth:`score_batch` gives for those users on the same events (up to
        rounding), opted-out and forgotten users left out; the view must decay at this model's
        ``spec.half_lives`` (the store's view uses the default :class:`FeatureSpec`'s).

        Examples
        --------
        >>> from affinity_sdk.profile.store import ProfileStore
        >>> from affinity_sdk.sim.shop import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> model = PropensityModel.fit(data)
        >>> store = ProfileStore(views=("propensity",))
        >>> _ = store.ingest(sim.batch)
        >>> users, p = model.score_profiles(store, now=sim.end_ms)
        >>> p_batch, seen = model.score_batch(sim.batch, sim.end_ms)
        >>> codes = [sim.batch.interners.users.lookup(u) for u in users]
        >>> len(users) == int(seen.sum()) and bool(np.allclose(p, p_batch[codes], rtol=0, atol=1e-9))
        True
        """
        from affinity_sdk.profile.store import ProfileStore

        if not isinstance(store, ProfileStore):
            store = store.store
        with store.lock:
            view = store.view("propensity")
            now_ms = store.now_ms(now)
            store.grow(store.n_users)
            shown = store.visible()
            feats = view.features(now_ms, self.spec, population=shown)
            codes = np.flatnonzero(shown & feats.seen)
            names = store.interners.users.names
            users = [names[c] for c in codes.tolist()]
        return users, self.predict_proba(feats.X[codes], backend=backend)

    def predict_user(
        self, store: ProfileStore | Scorer, user_id: str, now: datetime | str | int | None = None
    ) -> float:
        """One user's probability, live from a profile store (or a scorer's store) that keeps the
        ``"propensity"`` view, at ``now`` (default: the newest folded event): what
        :meth:`score_batch` gives on the same events, in microseconds
        (:mod:`~affinity_sdk.models.propensity_live`). NaN for an unknown, opted-out or
        forgotten user or one without events; :class:`ConfigError` for a BG/NBD model.

        Examples
        --------
        >>> from affinity_sdk.profile.store import ProfileStore
        >>> from affinity_sdk.sim.shop import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> model, store = PropensityModel.fit(data), ProfileStore(views=("propensity",))
        >>> _ = store.ingest(sim.batch)
        >>> p, seen = model.score_batch(sim.batch, store.latest_ms)
        >>> live = model.predict_user(store, sim.batch.interners.users.names[0])
        >>> bool(abs(live - p[0]) < 1e-9), math.isnan(model.predict_user(store, "nobody"))
        (True, True)
        """
        from affinity_sdk.models.propensity_live import predict_user

        return predict_user(self, store, user_id, now)

    def predict_users(
        self,
        store: ProfileStore | Scorer,
        user_ids: Iterable[str],
        now: datetime | str | int | None = None,
        *,
        backend: str | None = "auto",
    ) -> NDArray[np.float64]:
        """:meth:`predict_user` for several users at once (vectorised; NaN for those it leaves out).

        Examples
        --------
        >>> from affinity_sdk.score.scorer import Scorer
        >>> from affinity_sdk.sim.shop import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> model, scorer = PropensityModel.fit(data), Scorer(views=("signals", "propensity"))
        >>> _ = scorer.ingest(sim.batch)
        >>> p = model.predict_users(scorer, [sim.batch.interners.users.names[0], "nobody"])
        >>> bool(abs(p[0] - model.predict_user(scorer, sim.batch.interners.users.names[0])) < 1e-9)
        True
        """
        from affinity_sdk.models.propensity_live import predict_users

        return predict_users(self, store, user_ids, now, backend=backend)

    def explain(self) -> dict[str, float]:
        """Coefficient per standardised feature (log-odds per standard deviation), largest
        magnitude first: the model's explanation.

        Examples
        --------
        >>> from affinity_sdk.sim.shop import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> top = next(iter(PropensityModel.fit(data).explain()))
        >>> top in data.feature_names
        True
        """
        order = np.argsort(-np.abs(self.coef_), kind="stable")
        return {self.feature_names[i]: float(self.coef_[i]) for i in order}

    def tiers(
        self,
        p: NDArray[np.float64],
        spec: TierSpec | _TierLike | None = None,
        *,
        backend: str | None = "auto",
    ) -> NDArray[np.int8]:
        """Tier codes 0 / 1 / 2 (Low / Medium / High, names in :data:`TIER_NAMES`) for probabilities.

        Examples
        --------
        >>> import numpy as np
        >>> from affinity_sdk.sim.shop import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> m = PropensityModel.fit(data)
        >>> m.tiers(np.array([0.9, 0.5, 0.1]), TierSpec(method="threshold", high=0.7, medium=0.3)).tolist()
        [2, 1, 0]
        """
        return assign_tiers(p, spec, backend=backend)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model atomically (checksummed, versioned container).

        Examples
        --------
        >>> import tempfile, os
        >>> from affinity_sdk.sim.shop import simulate_shop
        >>> sim = simulate_shop(300, weeks=6, horizon_weeks=1, seed=2)
        >>> data = build_training_set(sim.batch, "purchase", [sim.end_ms - 7 * 86_400_000], "1w")
        >>> model = PropensityModel.fit(data, config_fingerprint="abc")
        >>> path = os.path.join(tempfile.mkdtemp(), "purchase.model")
        >>> model.save(path)
        >>> again = PropensityModel.load(path)
        >>> again.config_fingerprint, bool((again.predict_proba(data.X) == model.predict_proba(data.X)).all())
        ('abc', True)
        """
        from affinity_sdk.models.propensity_io import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path: str | Path, *, config_fingerprint: str | None = None) -> PropensityModel:
        """Read a model written by :meth:`save`. With ``config_fingerprint``, refuse a model
        trained under another scoring configuration (:class:`~affinity_sdk.errors.StateError`).
        """
        from affinity_sdk.models.propensity_io import load_model

        return load_model(cls, path, config_fingerprint)


def assign_tiers(
    p: NDArray[np.float64], spec: TierSpec | _TierLike | None = None, *, backend: str | None = "auto"
) -> NDArray[np.int8]:
    """Tier codes 0 / 1 / 2 (Low / Medium / High) from probabilities by threshold or quantile.
    A NaN probability (a user left out, see :meth:`PropensityModel.score_batch`) is Low and does
    not count in the quantiles.

    Examples
    --------
    >>> import numpy as np
    >>> assign_tiers(np.arange(1, 11) / 10, TierSpec(method="quantile", high=0.8, medium=0.5)).tolist()
    [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
    """
    plan = tier_plan(spec)
    values = np.ascontiguousarray(p, dtype=np.float64)
    scored = ~np.isnan(values)
    up, down = plan.cutoffs(values if scored.all() else values[scored], backend=backend)
    return plan.assign(values, up, down, backend=backend)


def tier_plan(spec: TierSpec | _TierLike | None = None) -> TierPlan:
    """The :class:`~affinity_sdk.score.tiers.TierPlan` of a tier spec (default ``TierSpec()``):
    cut-offs on the probability itself (no score mapping, no hysteresis; ``threshold`` and
    ``absolute`` are the same). Raises :class:`ConfigError` unless ``0 <= medium <= high <= 1``.

    Examples
    --------
    >>> tier_plan(TierSpec(method="threshold", high=0.7, medium=0.3)).absolute_cutoffs()[0].tolist()
    [0.3, 0.7]
    """
    spec = spec or TierSpec()
    if not 0.0 <= spec.medium <= spec.high <= 1.0:
        raise ConfigError(f"tiers need 0 <= medium <= high <= 1 (got medium={spec.medium}, high={spec.high})")
    if spec.method not in ("quantile", "threshold", "absolute"):
        raise ConfigError(f"unknown tier method {spec.method!r}")
    method: Literal["quantile", "absolute"] = "quantile" if spec.method == "quantile" else "absolute"
    return TierPlan(method=method, high=float(spec.high), medium=float(spec.medium), half_point=None)


# The scikit-learn-style estimator over plain arrays (after PropensityModel: it imports it).
from affinity_sdk.models.sklearn_api import PropensityClassifier as PropensityClassifier  # noqa: E402
