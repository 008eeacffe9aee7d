"""L2-penalised logistic regression: the fit behind the propensity model and its Platt calibration."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import expit

from affinity_sdk.errors import AffinityError

__all__ = ["fit_logistic"]


def fit_logistic(
    Z: NDArray[np.float64], y: NDArray[np.float64], l2: float, start: NDArray[np.float64]
) -> NDArray[np.float64]:
    """L2-penalised logistic regression on standardised ``Z``; returns ``[intercept, coefs...]``."""
    n = Z.shape[0]

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        z = theta[0] + Z @ theta[1:]
        # log(1 + e^z) - y z, stable for large |z|
        loss = float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * float(theta[1:] @ theta[1:])
        resid = expit(z) - y
        grad = np.empty_like(theta)
        grad[0] = resid.sum()
        grad[1:] = Z.T @ resid + l2 * theta[1:]
        return loss / n, grad / n

    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 500, "gtol": 1e-7})
    if not np.all(np.isfinite(result.x)):
        raise AffinityError(f"logistic fit failed: {result.message}")
    theta: NDArray[np.float64] = result.x
    return theta
