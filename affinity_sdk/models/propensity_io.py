"""Saving and loading :class:`~affinity_sdk.models.propensity.PropensityModel`: one atomic,
checksummed, versioned container (:mod:`affinity_sdk._persist`) holding the feature list, the
feature spec, the fitted arrays, the calibration, the config fingerprint and the model version.
The public entry points are :meth:`PropensityModel.save
<affinity_sdk.models.propensity.PropensityModel.save>` and :meth:`PropensityModel.load
<affinity_sdk.models.propensity.PropensityModel.load>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec
import numpy as np

from affinity_sdk._persist import read_container, write_container
from affinity_sdk.errors import StateError
from affinity_sdk.models.calibration import Calibrator
from affinity_sdk.models.goals import parse_goal
from affinity_sdk.models.propensity_features import FeatureSpec, feature_names

if TYPE_CHECKING:
    from affinity_sdk.models.propensity import PropensityModel

__all__ = ["MODEL_FORMAT", "MODEL_KIND", "load_model", "save_model"]

MODEL_KIND: Final = "propensity-model"
#: Bumped when the saved layout or the feature definitions change; older files are refused.
MODEL_FORMAT: Final = 1


def save_model(model: PropensityModel, path: str | Path) -> None:
    """See :meth:`~affinity_sdk.models.propensity.PropensityModel.save`."""
    header: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "outcome": model.outcome,
        "feature_names": list(model.feature_names),
        "spec": msgspec.to_builtins(model.spec),
        "horizon_ms": model.horizon_ms,
        "intercept": model.intercept_,
        "calibrator": msgspec.to_builtins(model.calibrator_),
        "l2": model.l2,
        "training_window_ms": list(model.training_window_ms),
        "n_train": model.n_train,
        "config_fingerprint": model.config_fingerprint,
        "version": model.version,
        "goal": None if model.goal is None else msgspec.to_builtins(model.goal),
    }
    write_container(
        path, MODEL_KIND, header, {"mean": model.mean_, "scale": model.scale_, "coef": model.coef_}
    )


def load_model(
    cls: type[PropensityModel], path: str | Path, config_fingerprint: str | None = None
) -> PropensityModel:
    """See :meth:`~affinity_sdk.models.propensity.PropensityModel.load`."""
    header, arrays = read_container(path, MODEL_KIND)
    if header.get("format") != MODEL_FORMAT:
        raise StateError(f"{path}: propensity model format {header.get('format')!r}, expected {MODEL_FORMAT}")
    try:
        spec = msgspec.convert(header["spec"], FeatureSpec)
        model = cls(
            outcome=header["outcome"],
            feature_names=tuple(header["feature_names"]),
            spec=spec,
            horizon_ms=header["horizon_ms"],
            mean=arrays["mean"],
            scale=arrays["scale"],
            coef=arrays["coef"],
            intercept=header["intercept"],
            calibrator=msgspec.convert(header["calibrator"], Calibrator),
            l2=header["l2"],
            training_window_ms=tuple(header["training_window_ms"]),
            n_train=header["n_train"],
            config_fingerprint=header["config_fingerprint"],
            version=header["version"],
            goal=None if header.get("goal") is None else parse_goal(header["goal"]),
        )
    except (KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
        raise StateError(f"{path}: malformed propensity model ({exc})") from exc
    n_features = (len(model.feature_names),)
    if any(a.shape != n_features for a in (model.coef_, model.mean_, model.scale_)):
        raise StateError(f"{path}: the model's feature list does not match its coefficients")
    if model.feature_names != feature_names(spec):
        _widen_to(model, feature_names(spec), path)
    if config_fingerprint is not None and model.config_fingerprint != config_fingerprint:
        raise StateError(
            f"{path}: model was trained under config {model.config_fingerprint!r}, not {config_fingerprint!r}"
        )
    return model


def _widen_to(model: PropensityModel, names: tuple[str, ...], path: str | Path) -> None:
    """Give a model saved before features were added to this SDK the current feature list: each
    new feature gets coefficient 0 (mean 0, scale 1), so every prediction stays what it was.
    :class:`StateError` if the saved list is not the current one with features left out."""
    at = {name: i for i, name in enumerate(names)}
    where = [at.get(name, -1) for name in model.feature_names]
    if -1 in where or where != sorted(where):
        raise StateError(f"{path}: the model's feature list does not match this SDK's features")
    coef, mean, scale = np.zeros(len(names)), np.zeros(len(names)), np.ones(len(names))
    coef[where], mean[where], scale[where] = model.coef_, model.mean_, model.scale_
    model.feature_names = names
    model.coef_, model.mean_, model.scale_ = coef, mean, scale
