"""Affinity throughput: aggregation (events/s), all-profile top-k, ``audience`` and lookalikes
(profiles/s) at 1M profiles, per backend.

The workload is a seeded product-event stream built straight into :class:`EventBatch` columns
(``AFFINITY_BENCH_PROFILES`` profiles, default 1M, with 5 product lines each on average: views,
cart adds, wishlist adds and multi-line orders over 90 days; 200 categories, 2,000 brands). The
reference (numpy) backend runs on a 1 % slice only. JIT kernels are warmed up before timing and
results are checked outside the timed region.

Run: ``pytest benches/test_bench_affinity.py --benchmark-only --benchmark-group-by=group``
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import pytest

from affinity_sdk import available_backends
from affinity_sdk.capture.events import EVENT_TYPE_CODES
from affinity_sdk.ingest.batch import EventBatch
from affinity_sdk.ingest.interner import Interners
from affinity_sdk.models.affinity import AffinityModel

N_PROFILES = int(os.environ.get("AFFINITY_BENCH_PROFILES", "1000000"))
FAST = [b for b in available_backends() if b != "reference"]
CASES = [(b, N_PROFILES) for b in FAST] + [("reference", max(N_PROFILES // 100, 1000))]


@functools.cache
def workload(n_profiles: int, seed: int = 11) -> EventBatch:
    rng = np.random.default_rng(seed)
    n_events = 4 * n_profiles
    names = Interners()
    for i in range(n_profiles):
        names.users.intern(f"u{i}")
    for i in range(200):
        names.categories.intern(f"c{i}")
    for i in range(2000):
        names.brands.intern(f"b{i}")
    n_products = 50_000
    for i in range(n_products):
        names.products.intern(f"p{i}")
    category = (rng.zipf(1.3, n_products) % 200).astype(np.int32)
    brand = (rng.zipf(1.2, n_products) % 2000).astype(np.int32)
    price = np.round(rng.lognormal(3.0, 1.0, n_products), 2)
    kinds = [EVENT_TYPE_CODES[k] for k in ("product_viewed", "product_added", "product_added_to_wishlist")]
    event_type = rng.choice([*kinds, EVENT_TYPE_CODES["order_completed"]], n_events, p=[0.7, 0.15, 0.05, 0.1])
    lines = np.where(event_type == EVENT_TYPE_CODES["order_completed"], 1 + rng.poisson(1.0, n_events), 1)
    item_event = np.repeat(np.arange(n_events), lines)
    # each profile keeps to a few favourite products' neighbourhoods, like real shoppers
    user = rng.integers(0, n_profiles, n_events)
    product = ((user[item_event] * 7919 + rng.zipf(1.5, item_event.shape[0])) % n_products).astype(np.int32)
    coupon = (event_type == EVENT_TYPE_CODES["order_completed"]) & (rng.random(n_events) < 0.3)
    return EventBatch(
        user=user.astype(np.int64),
        event_type=event_type.astype(np.uint8),
        ts_ms=1_700_000_000_000 + rng.integers(0, 90 * 86_400_000, n_events),
        channel=np.zeros(n_events, np.uint8),
        revenue=np.zeros(n_events),
        discount=np.full(n_events, np.nan),
        has_coupon=coupon,
        campaign=np.full(n_events, -1, np.int32),
        event_id=np.zeros(n_events, np.uint64),
        consent=np.full(n_events, -1, np.int8),
        item_event=item_event.astype(np.int64),
        item_product=product,
        item_category=category[product],
        item_brand=brand[product],
        item_price=price[product],
        item_discount=np.full(item_event.shape[0], np.nan),
        item_quantity=np.ones(item_event.shape[0], np.int32),
        interners=names,
    )


@functools.cache
def fitted(backend: str, n_profiles: int) -> AffinityModel:
    model = AffinityModel(backend=backend).ingest(workload(n_profiles))
    model.top_affinities_all("brand", 3)  # compacts, scores and JIT-compiles outside the timing
    return model


def _warm(backend: str) -> None:
    small = workload(1000)
    AffinityModel(backend=backend).ingest(small).top_affinities_all("brand", 3)


@pytest.mark.benchmark(group="affinity-aggregate")
@pytest.mark.parametrize(("backend", "n_profiles"), CASES)
def test_aggregate(benchmark: Any, backend: str, n_profiles: int) -> None:
    """Ingest (decay weights, price bands, sorted runs) + compaction into the CSR tables."""
    batch = workload(n_profiles)
    _warm(backend)

    def run() -> AffinityModel:
        model = AffinityModel(backend=backend).ingest(batch)
        for table in model._tables.values():
            table.compact(model._impl)
        return model

    model = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["events"] = len(batch)
    benchmark.extra_info["product_lines"] = batch.n_items
    benchmark.extra_info["events_per_s"] = len(batch) / benchmark.stats.stats.mean
    assert model.n_profiles == n_profiles
    assert model._tables["brand"].keys.shape[0] > n_profiles


@pytest.mark.benchmark(group="affinity-scores")
@pytest.mark.parametrize(("backend", "n_profiles"), CASES)
def test_scores(benchmark: Any, backend: str, n_profiles: int) -> None:
    """Decayed engagement and shrunk lift of every stored (profile, brand) at a new ``now``."""
    model = fitted(backend, n_profiles)
    now = model.last_ms
    assert now is not None

    def setup() -> None:
        model._cache.pop(("scores", "brand", now, n_profiles), None)

    result = benchmark.pedantic(lambda: model.scores("brand", now), setup=setup, rounds=5, iterations=1)
    benchmark.extra_info["profiles_per_s"] = n_profiles / benchmark.stats.stats.mean
    assert np.all(np.isfinite(result.affinity))


@pytest.mark.benchmark(group="affinity-topk")
@pytest.mark.parametrize(("backend", "n_profiles"), CASES)
def test_topk_all(benchmark: Any, backend: str, n_profiles: int) -> None:
    """Top-3 brands of every profile (scores cached)."""
    model = fitted(backend, n_profiles)
    result = benchmark.pedantic(lambda: model.top_affinities_all("brand", 3), rounds=5, iterations=1)
    benchmark.extra_info["profiles_per_s"] = n_profiles / benchmark.stats.stats.mean
    assert result.codes.shape == (n_profiles, 3)
    ok = result.codes[:, 1] >= 0
    assert np.all(result.affinity[ok, 0] >= result.affinity[ok, 1])


@pytest.mark.benchmark(group="affinity-audience")
@pytest.mark.parametrize(("backend", "n_profiles"), CASES)
def test_audience(benchmark: Any, backend: str, n_profiles: int) -> None:
    """Everyone with affinity >= 2 to the most popular brand (scores and by-value index cached)."""
    model = fitted(backend, n_profiles)
    scores = model.scores("brand")
    brand = int(np.argmax(scores.population_share))
    result = benchmark(model.audience_codes, "brand", brand, 2.0)
    benchmark.extra_info["profiles_per_s"] = n_profiles / benchmark.stats.stats.mean
    benchmark.extra_info["audience"] = int(result.shape[0])
    dense_check = scores.affinity[scores.cols == brand] >= 2.0
    assert result.shape[0] == int(dense_check.sum())


@pytest.mark.benchmark(group="affinity-lookalikes")
@pytest.mark.parametrize(("backend", "n_profiles"), CASES)
def test_lookalikes(benchmark: Any, backend: str, n_profiles: int) -> None:
    """Rank every profile against 1,000 seeds (features cached after the first call)."""
    model = fitted(backend, n_profiles)
    seeds = np.arange(0, n_profiles, max(n_profiles // 1000, 1))
    model.lookalike_codes(seeds, 1000)
    codes, scores = benchmark.pedantic(lambda: model.lookalike_codes(seeds, 1000), rounds=3, iterations=1)
    benchmark.extra_info["profiles_per_s"] = n_profiles / benchmark.stats.stats.mean
    assert not np.isin(codes, seeds).any()
    assert np.all(np.diff(scores) <= 0)
