"""Shop simulator throughput: events generated per second at 1k customers, ~1M and ~10M events.

Sizes are given in events (history + horizon, default 12 + 2 weeks); the customer count is derived
from the simulator's measured density of about 87 events per customer. Each size runs a few rounds
(one for 10M: it takes seconds and a few GB); events/s is recorded in ``extra_info``. Set
``DATASETS_BENCH_MAX_EVENTS`` to skip sizes above it (e.g. ``2000000`` on a small machine).

Run: ``pytest benches/test_bench_datasets.py --benchmark-only --benchmark-group-by=group``
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from affinity_sdk.sim.shop import ShopSimulation, simulate_shop

EVENTS_PER_CUSTOMER = 87
MAX_EVENTS = int(os.environ.get("DATASETS_BENCH_MAX_EVENTS", "20000000"))
SIZES = [n for n in (1_000_000, 10_000_000) if n <= MAX_EVENTS]


def _events(sim: ShopSimulation) -> int:
    return len(sim.batch) + len(sim.future)


@pytest.mark.benchmark(group="datasets: simulate_shop")
def test_simulate_1k_customers(benchmark: Any) -> None:
    sim = benchmark(simulate_shop, 1000, seed=0)
    events = _events(sim)
    benchmark.extra_info["events"] = events
    benchmark.extra_info["events_per_s"] = events / benchmark.stats.stats.mean
    assert len(sim.truth.user_ids) == 1000


@pytest.mark.parametrize("target", SIZES, ids=[f"{n // 1_000_000}M_events" for n in SIZES])
@pytest.mark.benchmark(group="datasets: simulate_shop")
def test_simulate_events(benchmark: Any, target: int) -> None:
    n_customers = target // EVENTS_PER_CUSTOMER
    rounds = 1 if target >= 5_000_000 else 3
    sim = benchmark.pedantic(
        simulate_shop, args=(n_customers,), kwargs={"seed": 0}, rounds=rounds, iterations=1
    )
    events = _events(sim)
    benchmark.extra_info["customers"] = n_customers
    benchmark.extra_info["events"] = events
    benchmark.extra_info["items"] = sim.batch.n_items + sim.future.n_items
    benchmark.extra_info["events_per_s"] = events / benchmark.stats.stats.mean
    assert 0.8 * target < events < 1.2 * target


@pytest.mark.benchmark(group="datasets: export")
def test_to_arrow_1m_events(benchmark: Any) -> None:
    pytest.importorskip("pyarrow")
    sim = simulate_shop(1_000_000 // EVENTS_PER_CUSTOMER, seed=0)
    table = benchmark.pedantic(sim.to_arrow, rounds=3, iterations=1)
    benchmark.extra_info["events_per_s"] = table.num_rows / benchmark.stats.stats.mean
    assert table.num_rows == len(sim.batch)
