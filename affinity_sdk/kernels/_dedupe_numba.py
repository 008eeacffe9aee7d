"""Numba twin of :mod:`affinity_sdk.kernels._dedupe_reference` (same name, signature, results).

Imported only when the window first probes on the numba backend (or on cpp with an extension
built before ``csrc/dedupe.hpp``), so importing the SDK does not load Numba.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numpy.typing import NDArray

from ._dedupe_reference import GOLDEN

__all__ = ["probe_insert"]

_GOLDEN = np.uint64(GOLDEN)


@nb.njit(cache=True, nogil=True)
def _probe_insert(cur, old, keys, dup, start, room, shift):  # type: ignore[no-untyped-def]
    # Stops before inserting an id past `room`, so the caller can rotate generations
    # exactly when the current one is full and then resume at `i`.
    mask = np.uint64(cur.shape[0] - 1)
    zero = np.uint64(0)
    one = np.uint64(1)
    n = keys.shape[0]
    inserted = 0
    i = start
    while i < n:
        key = keys[i]
        dup[i] = False
        if key != zero:
            home = (key * _GOLDEN) >> shift
            pos = home
            found = False
            while True:
                other = old[pos]
                if other == zero:
                    break
                if other == key:
                    found = True
                    break
                pos = (pos + one) & mask
            if not found:
                pos = home
                while True:
                    other = cur[pos]
                    if other == zero or other == key:
                        break
                    pos = (pos + one) & mask
                found = other == key
                if not found:
                    if inserted == room:
                        break
                    cur[pos] = key
                    inserted += 1
            dup[i] = found
        i += 1
    return i, inserted


def probe_insert(
    cur: NDArray[np.uint64],
    old: NDArray[np.uint64],
    keys: NDArray[np.uint64],
    dup: NDArray[np.bool_],
    start: int,
    room: int,
    shift: int,
) -> tuple[int, int]:
    """See :func:`._dedupe_reference.probe_insert`."""
    i, inserted = _probe_insert(cur, old, keys, dup, int(start), int(room), np.uint64(shift))
    return int(i), int(inserted)
