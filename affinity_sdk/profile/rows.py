"""Per-profile row buffers that grow geometrically: the one home of amortised O(1) profile growth.

Examples
--------
>>> import numpy as np
>>> buf = np.zeros(0)
>>> buf = ensure_capacity(buf, n_live=0, n_needed=3, make=np.zeros)
>>> buf.shape[0] >= 3, ensure_capacity(buf, 3, 3, np.zeros) is buf
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import numpy as np

__all__ = ["FAST_GROWTH_ROWS", "MIN_CAPACITY", "ensure_capacity"]

#: Rows allocated at least, so a stream of single new profiles does not reallocate every time.
MIN_CAPACITY: Final = 1024
#: Below this many rows a buffer grows 4x, above it 2x. A growth's cost is mostly the page faults
#: of the copy's destination, while spare rows cost address space only until they go live (they
#: are allocated zeroed, lazily, and filled when used), so small stores copy less often; large
#: ones keep the address space they reserve within 2x of what they hold.
FAST_GROWTH_ROWS: Final = 1 << 20

_A = TypeVar("_A", bound=np.ndarray[Any, Any])


def ensure_capacity(buffer: _A, n_live: int, n_needed: int, make: Callable[[int], _A]) -> _A:
    """``buffer`` if it has ``n_needed`` rows, else a buffer from ``make(capacity)`` (capacity
    at least 4x below :data:`FAST_GROWTH_ROWS` rows, else doubled) holding a copy of the ``n_live``
    first rows; rows past them are ``make``'s."""
    if n_needed <= buffer.shape[0]:
        return buffer
    factor = 4 if buffer.shape[0] < FAST_GROWTH_ROWS else 2
    grown = make(max(n_needed, factor * buffer.shape[0], MIN_CAPACITY))
    if buffer.dtype.names is not None and buffer.flags.c_contiguous and grown.flags.c_contiguous:
        # As bytes: numpy copies structured elements one at a time (~7x slower than a block).
        grown[:n_live].view(np.uint8)[...] = buffer[:n_live].view(np.uint8)
    else:
        grown[:n_live] = buffer[:n_live]
    return grown
