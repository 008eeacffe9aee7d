"""Live propensity: score one user (or a few) straight from the profile store's propensity view.

:meth:`PropensityModel.score_profiles <affinity_sdk.models.propensity.PropensityModel.score_profiles>`
computes the features of every profile; an app backend that asks "how likely is this user to buy"
once per request needs one row. :func:`predict_user` reads that row from the ``"propensity"``
view (:meth:`~affinity_sdk.profile.propensity_view.PropensityView.row`: the decayed sums at
``now`` and the profile's counts, the view's key tables searched, not merged), computes the
features in plain floats (:func:`~affinity_sdk.models.propensity_features.row_features`) and
applies the fitted weights and calibration, folded once per model into Python constants. No
numpy temporaries and no compiled kernel: a few microseconds per user. :func:`predict_users`
does the same for an array of users with numpy, through the very feature code the batch path runs
(:func:`~affinity_sdk.models.propensity_features.features_from_counts`).

Both equal :meth:`~affinity_sdk.models.propensity.PropensityModel.score_batch` on the same events
at the same ``now`` up to rounding (far below 1e-9). A user who is unknown, opted out, forgotten
or has no events gets NaN, as ``score_batch`` gives the users it leaves out. Models with BG/NBD
features (``spec.bgnbd``) are refused (:class:`~affinity_sdk.errors.ConfigError`): those are
fitted on the whole population at ``now``, which ``score_profiles`` does.

The public entry points are the methods
:meth:`~affinity_sdk.models.propensity.PropensityModel.predict_user` and
:meth:`~affinity_sdk.models.propensity.PropensityModel.predict_users`.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.errors import ConfigError
from affinity_sdk.models.key_tables import sum_by_key
from affinity_sdk.models.propensity_features import (
    ProfileCounts,
    _all_feature_names,
    features_from_counts,
    row_features,
)
from affinity_sdk.profile.store import ProfileStore

if TYPE_CHECKING:
    from affinity_sdk.models.propensity import PropensityModel
    from affinity_sdk.profile.propensity_view import PropensityView
    from affinity_sdk.score.scorer import Scorer

__all__ = ["predict_user", "predict_users"]

#: ``predict_users`` with ``backend="auto"`` scores fewer rows than this with the numpy kernel.
_PARALLEL_FROM = 8192


class _Constants(NamedTuple):
    """A model folded into Python numbers once: ``z = bias + Σ weight_j x[at_j]``."""

    fitted: tuple[object, ...]  # the fitted attributes these were folded from (by identity)
    half_lives_s: tuple[float, ...]
    pick: Callable[[list[float]], tuple[float, ...]]  # the model's features out of the full row
    weight: list[float]
    bias: float
    platt: tuple[float, float] | None
    knots: tuple[list[float], list[float]] | None


def _fitted(model: PropensityModel) -> tuple[object, ...]:
    return (model.coef_, model.mean_, model.scale_, model.intercept_, model.calibrator_, model.spec)


def _constants(model: PropensityModel) -> _Constants:
    """The model's folded constants, rebuilt when a fitted attribute was replaced (fit, refit and
    load assign new objects; changing a fitted array in place is not seen)."""
    cached: _Constants | None = model.__dict__.get("_live_constants")
    if cached is not None:
        coef, mean, scale, intercept, calibrator, spec = cached.fitted
        if (
            coef is model.coef_
            and mean is model.mean_
            and scale is model.scale_
            and intercept == model.intercept_
            and calibrator is model.calibrator_
            and spec is model.spec
        ):
            return cached
    if model.spec.bgnbd:
        raise ConfigError(
            "this model reads BG/NBD features, which are fitted on every profile at `now`: "
            "score it with PropensityModel.score_profiles"
        )
    names = _all_feature_names(model.spec)
    at = [names.index(name) for name in model.feature_names]
    weight, bias = model._folded()
    cal = model.calibrator_
    constants = _Constants(
        fitted=_fitted(model),
        half_lives_s=model.spec.half_lives_s,
        pick=operator.itemgetter(*at) if len(at) > 1 else lambda x: (x[at[0]],),
        weight=weight.tolist(),
        bias=float(bias),
        platt=(float(cal.a), float(cal.b)) if cal.kind == "platt" else None,
        knots=(list(cal.x), list(cal.y)) if cal.kind == "isotonic" else None,
    )
    model.__dict__["_live_constants"] = constants
    return constants


def _sigmoid(z: float) -> float:
    # The branch keeps exp's argument <= 0, as the compiled kernel does.
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _interp(p: float, xs: list[float], ys: list[float]) -> float:
    """``np.interp(p, xs, ys)`` for one value (``xs`` increasing)."""
    if p != p:
        return p
    if p <= xs[0]:
        return ys[0]
    if p >= xs[-1]:
        return ys[-1]
    j = bisect.bisect_right(xs, p) - 1
    return ys[j] + (ys[j + 1] - ys[j]) * (p - xs[j]) / (xs[j + 1] - xs[j])


def _view_of(store: ProfileStore | Scorer, constants: _Constants) -> tuple[ProfileStore, PropensityView]:
    inner = store if isinstance(store, ProfileStore) else store.store
    view: PropensityView = inner.view("propensity")
    if view.half_lives_s != constants.half_lives_s:
        raise ConfigError(
            f"this store's propensity view decays at half-lives {list(view.spec.half_lives)}; the model "
            f"needs {[_days(h) for h in constants.half_lives_s]}"
        )
    return inner, view


def _days(seconds: float) -> str:
    return f"{seconds / 86_400:g}d"


def predict_user(
    model: PropensityModel,
    store: ProfileStore | Scorer,
    user_id: str,
    now: datetime | str | int | None = None,
) -> float:
    """See :meth:`~affinity_sdk.models.propensity.PropensityModel.predict_user`."""
    constants = _constants(model)
    inner, view = _view_of(store, constants)
    spec = model.spec
    with inner.lock:
        code = inner.code_of(user_id)
        now_ms = inner.now_ms(now)
        if code is None or code >= view.n_profiles:
            view.check_now(now_ms)
            return math.nan
        row = view.row(code, now_ms, days=spec.order_days)
    if row.records[1] == 0:  # no events: the "activity" group (signal 0) counts every one
        return math.nan
    x = constants.pick(row_features(row, now_ms, spec))
    z = constants.bias + sum(map(operator.mul, constants.weight, x))
    if constants.platt is not None:
        z = constants.platt[0] * z + constants.platt[1]
    p = _sigmoid(z)
    if constants.knots is not None:
        p = _interp(p, *constants.knots)
    return p


def predict_users(
    model: PropensityModel,
    store: ProfileStore | Scorer,
    user_ids: Iterable[str],
    now: datetime | str | int | None = None,
    *,
    backend: str | None = "auto",
) -> NDArray[np.float64]:
    """See :meth:`~affinity_sdk.models.propensity.PropensityModel.predict_users`."""
    inner, view = _view_of(store, _constants(model))  # _constants refuses BG/NBD models
    ids = list(user_ids)
    with inner.lock:
        now_ms = inner.now_ms(now)
        codes = np.array([-1 if (c := inner.code_of(u)) is None else c for u in ids], dtype=np.int64)
        codes[codes >= view.n_profiles] = -1
        known = codes >= 0
        if not known.any():
            view.check_now(now_ms)
            return np.full(len(ids), np.nan)
        counts = _counts_of(view, np.where(known, codes, 0), now_ms, days=model.spec.order_days)
    feats = features_from_counts(counts, now_ms, model.spec)
    if backend in (None, "auto") and len(ids) < _PARALLEL_FROM:
        backend = "reference"  # waking the parallel kernel's threads costs more than these rows
    p = model.predict_proba(feats.X, backend=backend)
    p[~(known & feats.seen)] = np.nan
    return p


def _counts_of(view: PropensityView, codes: NDArray[np.int64], now_ms: int, *, days: bool) -> ProfileCounts:
    """:class:`ProfileCounts` of profiles ``codes`` (row ``i`` is ``codes[i]``) at ``now_ms``."""
    from affinity_sdk import kernels

    view.check_now(now_ms)
    state = view.state
    records = np.take(state.records, codes, axis=0)  # far faster than fancy indexing a structured array
    decayed = kernels.decayed(np.take(state.acc, codes, axis=0), state.factors(now_ms), backend=state.backend)
    category_keys, lines = sum_by_key(*_first_column(view.category_table.take(codes)))
    if days:
        day_keys, day_revenue = sum_by_key(*_first_column(view.day_table.take(codes)))
    else:
        day_keys, day_revenue = np.empty(0, dtype=np.int64), np.empty(0)
    return ProfileCounts(
        decayed=decayed,
        records=records,
        channels=view.channels[codes],
        refunds=view.refunds[codes],
        unsubscribes=view.unsubscribes[codes],
        last_use_ms=view.last_use_ms[codes],
        last_gone_ms=view.last_gone_ms[codes],
        category_keys=category_keys,
        category_counts=np.rint(lines).astype(np.int64),
        day_keys=day_keys,
        day_revenue=day_revenue,
    )


def _first_column(
    entries: tuple[NDArray[np.int64], NDArray[np.float64]],
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    keys, values = entries
    return keys, np.ascontiguousarray(values[:, 0]) if values.shape[0] else np.empty(0)
