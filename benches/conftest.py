"""Seeded, cached workloads for the kernel benchmarks (pytest-benchmark).

Sizes: ``1M`` = 1M events over 100k profiles, ``10M`` = 10M events over 1M profiles, 8 signals,
random event order. Pick sizes with ``AFFINITY_BENCH_SIZES=1M`` (default ``1M,10M``).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import pytest

from affinity_sdk import available_backends

SIGNALS = 8
LANDMARK_MS = 1_700_000_000_000
SIZES = {"1M": (1_000_000, 100_000), "10M": (10_000_000, 1_000_000)}
HALF_LIVES_S = np.array([1, 3, 7, 14, 30, 60, 90, 365], dtype=np.float64) * 86_400.0


@functools.cache
def workload(size: str) -> dict[str, Any]:
    """Events (users, signals, ts_ms, values), decay rates and a raw-score array; seed 42."""
    n_events, n_profiles = SIZES[size]
    rng = np.random.default_rng(42)
    return {
        "n_profiles": n_profiles,
        "users": rng.integers(0, n_profiles, n_events),
        "signals": rng.integers(0, SIGNALS, n_events),
        "ts_ms": LANDMARK_MS - rng.integers(0, 90 * 86_400_000, n_events),
        "values": np.round(rng.exponential(20.0, n_events), 2),
        "lam": np.log(2.0) / (HALF_LIVES_S * 1000.0),
        "raw": rng.exponential(5.0, n_profiles),
    }


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "size" in metafunc.fixturenames:
        chosen = os.environ.get("AFFINITY_BENCH_SIZES", "1M,10M").split(",")
        metafunc.parametrize("size", [s for s in SIZES if s in chosen])
    if "bench_backend" in metafunc.fixturenames:
        metafunc.parametrize("bench_backend", available_backends())
