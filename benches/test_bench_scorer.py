"""The public API's cost: single-event ingest + tier lookup latency (median and p99) and batch
throughput through ``Scorer``, to set beside the raw kernel figures in ``test_bench_kernels.py``.

Run: ``pytest benches/test_bench_scorer.py --benchmark-only`` (p99 is printed per case).
"""

from __future__ import annotations

import numpy as np
import pytest

from affinity_sdk import Scorer, available_backends
from affinity_sdk.capture.events import Product, ProductViewed
from affinity_sdk.sim.shop import simulate_shop

pytest.importorskip("pytest_benchmark")

BACKENDS = [b for b in available_backends() if b != "reference"]
T0 = 1_767_225_600_000


@pytest.fixture(scope="module")
def shop_batch():  # type: ignore[no-untyped-def]
    return simulate_shop(50_000, weeks=8, seed=11).batch


def _p99(benchmark) -> None:  # type: ignore[no-untyped-def]
    data = np.asarray(benchmark.stats.stats.data)
    benchmark.extra_info["p99_us"] = float(np.percentile(data, 99) * 1e6)
    benchmark.extra_info["median_us"] = float(np.median(data) * 1e6)
    print(
        f"\n{benchmark.name}: median {np.median(data) * 1e6:.1f} µs, p99 {np.percentile(data, 99) * 1e6:.1f} µs"
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.benchmark(group="api-latency")
def test_single_event_ingest_then_tier_of(benchmark, backend, shop_batch) -> None:  # type: ignore[no-untyped-def]
    scorer = Scorer(backend=backend)
    scorer.ingest(shop_batch)
    scorer.score()
    users = scorer.interners.users.names
    product = Product(product_id="p1", category="shoes", brand="acme", price=59.0)
    counter = iter(range(10**9))

    def one_request() -> None:
        i = next(counter)
        user = users[i % len(users)]
        scorer.ingest(ProductViewed(user_id=user, timestamp=T0 + i, product=product))
        scorer.tier_of(user)

    benchmark.pedantic(one_request, rounds=3_000, iterations=1, warmup_rounds=100)
    _p99(benchmark)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.benchmark(group="api-latency")
def test_single_event_of_a_new_user_at_1m_users(benchmark, backend) -> None:  # type: ignore[no-untyped-def]
    """Every call brings a user never seen before into a scorer that holds 1M users: what the
    per-user arrays cost as they grow (amortised doubling, not a copy per call)."""
    from affinity_sdk.capture.events import AppOpened
    from affinity_sdk.ingest.batch import EventBatch

    scorer = Scorer(backend=backend)
    scorer.ingest(
        EventBatch.from_events([AppOpened(user_id=f"x{i}", timestamp=T0) for i in range(1_000_000)])
    )
    counter = iter(range(10**9))
    benchmark.pedantic(
        lambda: scorer.ingest(AppOpened(user_id=f"new{next(counter)}", timestamp=T0)),
        rounds=2_000,
        warmup_rounds=50,
    )
    _p99(benchmark)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.benchmark(group="api-latency")
def test_tier_of_only(benchmark, backend, shop_batch) -> None:  # type: ignore[no-untyped-def]
    scorer = Scorer(backend=backend)
    scorer.ingest(shop_batch)
    scorer.score()
    users = scorer.interners.users.names
    counter = iter(range(10**9))
    benchmark.pedantic(
        lambda: scorer.tier_of(users[next(counter) % len(users)]), rounds=5_000, warmup_rounds=100
    )
    _p99(benchmark)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.benchmark(group="api-batch")
def test_batch_ingest_and_score(benchmark, backend, shop_batch) -> None:  # type: ignore[no-untyped-def]
    def run() -> int:
        scorer = Scorer(backend=backend)
        scorer.ingest(shop_batch)
        return len(scorer.score())

    n_users = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    benchmark.extra_info["events"] = len(shop_batch)
    benchmark.extra_info["events_per_s"] = len(shop_batch) / benchmark.stats.stats.median
    benchmark.extra_info["users_per_s"] = n_users / benchmark.stats.stats.median
    print(f"\n{backend}: {len(shop_batch) / benchmark.stats.stats.median / 1e6:.2f} M events/s end to end")
