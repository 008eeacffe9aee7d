"""Sorted per-profile key tables: unique keys ``profile << KEY_BITS | value``, one number per key.

The propensity counts (:class:`~affinity_sdk.models.propensity_features.ProfileCounts`) keep
product-line counts per (profile, category) and order revenue per (profile, UTC order day) this way
(:func:`~affinity_sdk.models.order_day_features.order_day_keys`): the keys sort by profile, then
value, and ``key >> KEY_BITS`` / ``key & VALUE_MASK`` take them apart.

Examples
--------
>>> import numpy as np
>>> one = 1 << KEY_BITS
>>> keys, sums = sum_by_key(np.array([one | 5, 3, one | 5]), np.array([1.0, 2.0, 4.0]))
>>> (keys >> KEY_BITS).tolist(), (keys & VALUE_MASK).tolist(), sums.tolist()
([0, 1], [3, 5], [2.0, 5.0])
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["KEY_BITS", "VALUE_MASK", "sum_by_key"]

#: Bits of a key-table key below the profile code (``profile << KEY_BITS | value``).
KEY_BITS: Final = 32
#: The value part of a key: ``key & VALUE_MASK``.
VALUE_MASK: Final = (1 << KEY_BITS) - 1


def sum_by_key(
    keys: NDArray[np.int64], values: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Sorted unique ``keys`` and the sum of ``values`` per key."""
    unique, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse.reshape(-1), weights=values, minlength=unique.shape[0])
    return unique.astype(np.int64, copy=False), sums.astype(np.float64, copy=False)
