"""Live propensity latency: ``PropensityModel.predict_user`` against a profile store of 100k and 1M
users (p50 / p99 / p999 per call), ingest one event + predict that user, ``predict_users`` per user,
and ``score_profiles`` (every user) as the path it replaces.

Run the table: ``python benches/test_bench_live_propensity.py`` (``AFFINITY_LIVE_USERS=100k`` for
the small store only). pytest-benchmark entries: ``pytest benches/test_bench_live_propensity.py
--benchmark-only -s``. Each timed call is one ``time.perf_counter_ns`` pair around one call;
correctness (live = store scoring to 1e-9) is asserted outside the timed loops.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from affinity_sdk.capture.events import CHANNELS, EVENT_TYPE_CODES, PageViewed
from affinity_sdk.ingest.batch import EventBatch, Interners
from affinity_sdk.models.propensity import PropensityModel, build_training_set
from affinity_sdk.profile.store import ProfileStore
from affinity_sdk.sim.shop import simulate_shop

SIZES = {"100k": 100_000, "1M": 1_000_000}
CHOSEN = [s for s in os.environ.get("AFFINITY_LIVE_USERS", "100k,1M").split(",") if s in SIZES]
EVENTS_PER_USER = 5
T0 = 1_767_225_600_000  # 2026-01-01
DAY = 86_400_000
_TYPES = (
    "page_viewed",
    "product_viewed",
    "product_added",
    "checkout_started",
    "order_completed",
    "email_opened",
    "app_opened",
)


def synthetic_batch(n_users: int, seed: int = 7) -> EventBatch:
    """``EVENTS_PER_USER`` events per user over 60 days (types of :data:`_TYPES`), one product
    line (30 categories) per product / checkout / order event; built column-wise, seeded."""
    rng = np.random.default_rng(seed)
    n = n_users * EVENTS_PER_USER
    etype = np.array([EVENT_TYPE_CODES[t] for t in _TYPES], dtype=np.uint8)[
        rng.choice(len(_TYPES), n, p=[0.35, 0.25, 0.12, 0.06, 0.07, 0.1, 0.05])
    ]
    ts = np.sort(T0 + rng.integers(0, 60 * DAY, n))
    order = etype == EVENT_TYPE_CODES["order_completed"]
    with_line = np.isin(etype, [EVENT_TYPE_CODES[t] for t in _TYPES[1:5]])
    item_event = np.flatnonzero(with_line).astype(np.int64)
    m = item_event.shape[0]
    interners = Interners()
    interners.users.intern_many(f"u{i}" for i in range(n_users))
    interners.categories.intern_many(f"c{i}" for i in range(30))
    interners.products.intern_many(f"p{i}" for i in range(1000))
    interners.brands.intern_many(f"b{i}" for i in range(20))
    return EventBatch(
        user=rng.integers(0, n_users, n).astype(np.int64),
        event_type=etype,
        ts_ms=ts.astype(np.int64),
        channel=rng.integers(0, len(CHANNELS), n).astype(np.uint8),
        revenue=np.where(order, np.round(rng.exponential(60.0, n), 2), np.nan),
        discount=np.zeros(n),
        has_coupon=np.zeros(n, dtype=np.bool_),
        campaign=np.full(n, -1, dtype=np.int32),
        event_id=np.zeros(n, dtype=np.uint64),
        consent=np.full(n, -1, dtype=np.int8),
        item_event=item_event,
        item_product=rng.integers(0, 1000, m).astype(np.int32),
        item_category=rng.integers(0, 30, m).astype(np.int32),
        item_brand=rng.integers(0, 20, m).astype(np.int32),
        item_price=np.round(rng.exponential(40.0, m), 2),
        item_discount=np.zeros(m),
        item_quantity=np.ones(m, dtype=np.int32),
        interners=interners,
    )


@functools.cache
def model() -> PropensityModel:
    sim = simulate_shop(2000, weeks=8, horizon_weeks=2, seed=3)
    week = 7 * DAY
    cutoffs = [sim.end_ms - 4 * week, sim.end_ms - 2 * week]
    return PropensityModel.fit(build_training_set(sim.batch, "purchase", cutoffs, "2w"), calibration="platt")


@functools.cache
def store_of(size: str) -> tuple[ProfileStore, list[str]]:
    """A store keeping the propensity view, fed the synthetic batch in one ingest, and the ids
    of its users with events (the others score NaN at once)."""
    store = ProfileStore(views=("propensity",), dedupe_window=None, max_future=None)
    store.ingest(synthetic_batch(SIZES[size]))
    return store, model().score_profiles(store)[0]


def percentiles(fn: Callable[[int], Any], n: int) -> dict[str, float]:
    """p50 / p99 / p999 in µs of ``n`` calls ``fn(i)``, each timed on its own."""
    times = np.empty(n)
    clock = time.perf_counter_ns
    for i in range(n):
        start = clock()
        fn(i)
        times[i] = clock() - start
    p50, p99, p999 = np.percentile(times, [50, 99, 99.9]) / 1e3
    return {"p50_us": float(p50), "p99_us": float(p99), "p999_us": float(p999)}


def measure(size: str, n: int = 20_000) -> dict[str, dict[str, float]]:
    """Every case at one store size (a fresh store: the single-event case ingests into it)."""
    store, _ = store_of(size)
    m = model()
    users, p_all = m.score_profiles(store)  # the path predict_user replaces (and the oracle)
    by_user = dict(zip(users, p_all.tolist(), strict=True))
    rng = np.random.default_rng(1)
    picks = [users[i] for i in rng.integers(0, len(users), n).tolist()]  # users with events
    check = picks[:200]
    live = [m.predict_user(store, u) for u in check]
    assert np.allclose(live, [by_user[u] for u in check], rtol=0, atol=1e-9)
    assert np.allclose(m.predict_users(store, check), live, rtol=0, atol=1e-9)
    out = {"predict_user": percentiles(lambda i: m.predict_user(store, picks[i]), n)}
    ids = [[users[j] for j in rng.integers(0, len(users), 1000).tolist()] for _ in range(20)]
    per_1k = percentiles(lambda i: m.predict_users(store, ids[i]), 20)
    out["predict_users (per user, 1k at once)"] = {k: v / 1000 for k, v in per_1k.items()}
    now = store.latest_ms or T0

    def ingest_then_predict(i: int) -> None:
        store.ingest(PageViewed(user_id=picks[i], timestamp=now + i))
        m.predict_user(store, picks[i])

    def ingest_only(i: int) -> None:
        store.ingest(PageViewed(user_id=picks[i], timestamp=now + 10 * n + i))

    out["ingest 1 event (alone, for scale)"] = percentiles(ingest_only, min(n, 5_000))
    out["ingest 1 event + predict_user"] = percentiles(ingest_then_predict, min(n, 5_000))
    out["score_profiles (every user)"] = percentiles(lambda i: m.score_profiles(store), 3)
    return out


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| case | users | p50 µs | p99 µs | p999 µs |", "| --- | --- | ---: | ---: | ---: |"]
    for size, cases in results.items():
        for case, q in cases.items():
            lines.append(f"| {case} | {size} | {q['p50_us']:.1f} | {q['p99_us']:.1f} | {q['p999_us']:.1f} |")
    return "\n".join(lines)


# --- pytest-benchmark entries ---------------------------------------------------------------
@pytest.mark.benchmark(group="live-propensity")
@pytest.mark.parametrize("users", CHOSEN)
def test_predict_user(benchmark, users: str) -> None:  # type: ignore[no-untyped-def]
    store, names = store_of(users)
    m = model()
    counter = iter(range(10**9))
    picks = np.random.default_rng(2).integers(0, len(names), 1 << 16).tolist()
    p = benchmark.pedantic(
        lambda: m.predict_user(store, names[picks[next(counter) & 0xFFFF]]), rounds=5_000, warmup_rounds=200
    )
    assert 0.0 < p < 1.0
    data = np.asarray(benchmark.stats.stats.data) * 1e6
    print(f"\npredict_user at {users}: p50 {np.median(data):.1f} µs, p99 {np.percentile(data, 99):.1f} µs")


@pytest.mark.benchmark(group="live-propensity")
@pytest.mark.parametrize("users", CHOSEN)
def test_predict_users_1k(benchmark, users: str) -> None:  # type: ignore[no-untyped-def]
    store, names = store_of(users)
    m = model()
    ids = [names[i] for i in np.random.default_rng(3).integers(0, len(names), 1000).tolist()]
    p = benchmark.pedantic(lambda: m.predict_users(store, ids), rounds=20, warmup_rounds=2)
    assert p.shape == (1000,)


@pytest.mark.benchmark(group="live-propensity")
@pytest.mark.parametrize("users", CHOSEN)
def test_live_latency_table(benchmark, users: str) -> None:  # type: ignore[no-untyped-def]
    """The perf_counter_ns table for one size (the benchmark entry times ``predict_user`` once more)."""
    results = measure(users, n=5_000)
    print("\n" + table({users: results}))
    store, names = store_of(users)
    benchmark.pedantic(lambda: model().predict_user(store, names[0]), rounds=200, warmup_rounds=10)
    assert results["predict_user"]["p50_us"] > 0


if __name__ == "__main__":
    n_calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    all_results = {}
    for size in CHOSEN:
        all_results[size] = measure(size, n_calls)
        store_of.cache_clear()  # free the store before building the next one
    print(table(all_results))
