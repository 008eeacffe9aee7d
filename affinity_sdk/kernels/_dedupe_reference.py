"""Reference (plain Python) probe for the event-id window: the oracle of ``_dedupe_numba.py``.

The probe is inherently sequential (each insert changes the table the next id probes), so the
reference is a plain loop over the ids, slow and obvious; the Numba twin has the same name,
signature and results. See :mod:`affinity_sdk.ingest.dedupe` for the window it serves.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["GOLDEN", "probe_insert"]

#: Fibonacci hashing multiplier (2⁶⁴ / φ): spreads the FNV hash's bits over the table index.
GOLDEN: Final = 0x9E3779B97F4A7C15
_U64: Final = (1 << 64) - 1


def _slot(table: NDArray[np.uint64], key: int, home: int) -> int:
    """The slot holding ``key``, else the first empty (0) slot on its linear-probe path from ``home``."""
    mask = table.shape[0] - 1
    pos = home
    while int(table[pos]) not in (0, key):
        pos = (pos + 1) & mask
    return pos


def probe_insert(
    cur: NDArray[np.uint64],
    old: NDArray[np.uint64],
    keys: NDArray[np.uint64],
    dup: NDArray[np.bool_],
    start: int,
    room: int,
    shift: int,
) -> tuple[int, int]:
    r"""Look up ``keys[start:]`` in the two generations and insert the new ones into ``cur``.

    ``cur`` and ``old`` are open-addressing tables of ``2^(64 - shift)`` slots (0 = empty, load at
    most 1/2), probed linearly from :math:`h(k) = (k \cdot \mathrm{GOLDEN} \bmod 2^{64}) \gg
    \mathrm{shift}`. ``dup[i]`` becomes True where ``keys[i]`` is in ``old`` or ``cur`` (including
    an id inserted earlier in this call); id 0 is never a duplicate and never stored.

    At most ``room`` new ids are inserted: the call stops *before* inserting one more, so the
    caller can rotate the generations and resume there. Returns ``(i, inserted)``: the index to
    resume at (``len(keys)`` when done; ``start`` itself if it is already past the end) and the
    number of ids inserted into ``cur``.
    """
    inserted = 0
    for i in range(start, keys.shape[0]):
        key = int(keys[i])
        dup[i] = False
        if key == 0:
            continue
        home = ((key * GOLDEN) & _U64) >> shift
        if int(old[_slot(old, key, home)]) == key:
            dup[i] = True
            continue
        pos = _slot(cur, key, home)
        if int(cur[pos]) == key:
            dup[i] = True
            continue
        if inserted == room:
            return i, inserted
        cur[pos] = key
        inserted += 1
    return max(start, keys.shape[0]), inserted
