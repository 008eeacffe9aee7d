"""Reference (numpy) kernel for scoring a fitted logistic propensity model: the oracle of
``_propensity_numba.py`` (same name, signature and numbers up to rounding).

See :class:`affinity_sdk.models.propensity.PropensityModel` for the model it serves.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

__all__ = ["logistic_scores"]


def logistic_scores(
    X: NDArray[np.float64],
    weight: NDArray[np.float64],
    bias: float,
    platt_a: float,
    platt_b: float,
    out: NDArray[np.float64],
) -> None:
    r"""Probability per feature row, written to ``out``:

    .. math:: p_i = \sigma\big(A\,(b + \textstyle\sum_j w_j x_{ij}) + B\big),\quad
              \sigma(z) = 1 / (1 + e^{-z})

    The standardisation is folded into ``weight`` and ``bias``; Platt's ``A``, ``B`` (1 and 0 for
    no calibration) are applied in the same pass. A NaN feature gives a NaN probability.
    """
    z = platt_a * (bias + X @ weight) + platt_b
    out[:] = expit(z)
