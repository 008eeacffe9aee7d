"""What the Numba kernel modules share: fastmath flag sets, the record width, argument checks.

Plain Python and numpy (no numba import), used by :mod:`._numba`, :mod:`._numba_accumulate` and
:mod:`._numba_tiers`. The flag sets and ``_WORDS`` are compiled into those modules' kernels, and
numba's on-disk cache only checks the timestamp of the file that defines a kernel: after changing
a value here, clear the kernels' caches (``__pycache__/*.nbi``, ``*.nbc``) or touch their files.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ._layout import STATE_DTYPE

_FAST = {"contract", "reassoc", "nsz"}
_EXACT: set[str] = set()
# Only FMA contraction for exp: `reassoc` would fold the (x + shifter) - shifter rounding trick away.
_CONTRACT = {"contract"}
_WORDS = 4  # float64 / int64 words per record: total, count, first_ms, last_ms


def _flat(records: NDArray[np.void], writable: bool) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    if records.dtype != STATE_DTYPE:
        raise ValueError(f"Expected `records` of dtype STATE_DTYPE, got {records.dtype}")
    if records.ndim != 2:
        raise ValueError(f"Expected `records` of shape (profiles, signals), got {records.shape}")
    if not records.flags.c_contiguous:
        raise ValueError("Expected `records` to be C-contiguous")
    if writable and not records.flags.writeable:
        raise ValueError("Expected `records` to be writeable")
    flat = records.reshape(-1)
    return flat.view(np.float64), flat.view(np.int64)


def _acc_flat(acc: NDArray[np.float64], shape: tuple[int, ...], writable: bool) -> NDArray[np.float64]:
    if acc.dtype != np.float64 or acc.shape != shape:
        raise ValueError(f"Expected `acc` of dtype float64 and shape {shape}, got {acc.dtype} {acc.shape}")
    if not acc.flags.c_contiguous:
        raise ValueError("Expected `acc` to be C-contiguous")
    if writable and not acc.flags.writeable:
        raise ValueError("Expected `acc` to be writeable")
    return acc.reshape(-1)


def _check(name: str, a: NDArray[np.generic], dtype: type[np.generic], n: int | None = None) -> None:
    if a.dtype != dtype:
        raise ValueError(f"Expected `{name}` of dtype {np.dtype(dtype)}, got {a.dtype}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"Expected `{name}` of length {n}, got {a.shape[0]}")
