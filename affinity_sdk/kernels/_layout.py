"""Memory layout of the per-(profile, signal) decay state, shared by every backend.

One record per (profile, signal), fields together so an event touches one 40-byte record:
``acc`` (forward-decayed sum against the landmark), ``total`` (undecayed value sum),
``count``, ``first_ms`` and ``last_ms``. The C++ side mirrors it in ``csrc/kernels.hpp``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

STATE_DTYPE: Final = np.dtype(
    [
        ("acc", "<f8"),
        ("total", "<f8"),
        ("count", "<i8"),
        ("first_ms", "<i8"),
        ("last_ms", "<i8"),
    ]
)
FIRST_MS_EMPTY: Final = np.iinfo(np.int64).max
LAST_MS_EMPTY: Final = np.iinfo(np.int64).min
#: Rebase the landmark before any exponent λ·(t − L) would exceed this (exp(64) ≈ 6e27).
REBASE_EXPONENT: Final = 64.0


def empty_records(n_profiles: int, n_signals: int) -> NDArray[np.void]:
    """Records for profiles with no events yet."""
    records = np.zeros((n_profiles, n_signals), dtype=STATE_DTYPE)
    records["first_ms"] = FIRST_MS_EMPTY
    records["last_ms"] = LAST_MS_EMPTY
    return records
