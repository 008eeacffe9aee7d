"""The simulator's event, order and session id strings, and the event ids' hashes, vectorized."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def _id_prefix(seed: int) -> str:
    return f"s{seed}-"


def _event_id_hashes(seed: int, first: int, n: int) -> NDArray[np.uint64]:
    """FNV-1a (as :func:`affinity_sdk.ingest.interner.event_id_hash`) of ``f"s{seed}-{i:011d}"``,
    vectorized."""
    prime = np.uint64(0x100000001B3)
    h = 0xCBF29CE484222325
    for byte in _id_prefix(seed).encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    if n == 0:
        return np.empty(0, np.uint64)
    # Serials share their first 8 digits in runs of 1000: hash those once per run, then
    # finish the last 3 digits on a (runs, 1000) grid. uint64 arrays wrap modulo 2**64, as FNV wants.
    runs = np.arange(first // 1000, (first + n - 1) // 1000 + 1, dtype=np.int64)
    head = np.full(runs.shape[0], h, np.uint64)
    for p in range(7, -1, -1):
        head ^= ((runs // 10**p) % 10 + 48).astype(np.uint64)
        head *= prime
    grid = np.repeat(head[:, None], 1000, axis=1)
    tail = np.arange(1000, dtype=np.int64)
    for p in (2, 1, 0):
        grid ^= ((tail // 10**p) % 10 + 48).astype(np.uint64)[None, :]
        grid *= prime
    out = grid.reshape(-1)[first % 1000 : first % 1000 + n]
    out[out == 0] = 1
    return out


def _order_id(order_no: int, seed: int) -> str:
    return f"{_id_prefix(seed)}o{order_no:09d}"


def _session_id(session_no: int, seed: int) -> str:
    return f"{_id_prefix(seed)}w{session_no:09d}"
