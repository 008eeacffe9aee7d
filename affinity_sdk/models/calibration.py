"""Probability calibration of the propensity model: Platt scaling or isotonic regression.

:meth:`~affinity_sdk.models.propensity.PropensityModel.fit` calibrates its raw probabilities on
held-out profiles with :func:`_choose_calibrator`: Platt (``σ(a · logit(p) + b)``), isotonic
(a monotone step function), or, with ``"auto"``, whichever has the lower 2-fold held-out Brier
score. A :class:`Calibrator` is a small frozen struct, saved with the model.

Examples
--------
>>> import numpy as np
>>> Calibrator(kind="platt", a=1.0, b=0.0).apply(np.array([0.25])).round(12).tolist()
[0.25]
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import isotonic_regression
from scipy.special import expit

from affinity_sdk.models.logistic import fit_logistic

__all__ = ["Calibrator"]


class Calibrator(msgspec.Struct, frozen=True, kw_only=True):
    """A monotone map from raw model probability to calibrated probability.

    ``platt``: ``σ(a · logit(p) + b)``; ``isotonic``: a step function through ``(x, y)``
    interpolated linearly; ``none``: identity.
    """

    kind: Literal["none", "platt", "isotonic"] = "none"
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def apply(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.kind == "isotonic":
            out: NDArray[np.float64] = np.interp(raw, np.asarray(self.x), np.asarray(self.y))
            return out
        if self.kind == "platt":
            result: NDArray[np.float64] = expit(self.a * _logit(raw) + self.b)
            return result
        return raw


def _logit(p: NDArray[np.float64]) -> NDArray[np.float64]:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    result: NDArray[np.float64] = np.log(q) - np.log1p(-q)
    return result


def _fit_platt(raw: NDArray[np.float64], y: NDArray[np.float64]) -> Calibrator:
    theta = fit_logistic(_logit(raw)[:, None], y, 0.0, np.array([0.0, 1.0]))
    return Calibrator(kind="platt", a=float(theta[1]), b=float(theta[0]))


def _fit_isotonic(raw: NDArray[np.float64], y: NDArray[np.float64]) -> Calibrator:
    values, inverse, counts = np.unique(raw, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    fitted = np.asarray(isotonic_regression(means, weights=counts.astype(np.float64), increasing=True).x)
    # Keep only the ends of each constant block: the same interpolant with far fewer knots.
    change = np.r_[True, fitted[1:] != fitted[:-1]]
    knots = change | np.r_[change[1:], True]
    return Calibrator(kind="isotonic", x=tuple(values[knots].tolist()), y=tuple(fitted[knots].tolist()))


def _choose_calibrator(
    raw: NDArray[np.float64], y: NDArray[np.float64], method: str, rng: np.random.Generator
) -> Calibrator:
    """Fit the requested calibrator; ``auto`` picks Platt or isotonic by 2-fold held-out Brier."""
    if method == "none" or y.min() == y.max():
        return Calibrator()
    fitters = {"platt": _fit_platt, "isotonic": _fit_isotonic}
    if method in fitters:
        return fitters[method](raw, y)
    fold = rng.permutation(raw.shape[0]) % 2 == 0
    brier = {}
    for name, fitter in fitters.items():
        err = 0.0
        for train in (fold, ~fold):
            test = ~train
            if y[train].min() == y[train].max():
                err = math.inf
                break
            err += float(np.sum((fitter(raw[train], y[train]).apply(raw[test]) - y[test]) ** 2))
        brier[name] = err
    best = min(brier, key=lambda k: brier[k])
    return fitters[best](raw, y)
