"""Single-event latency: one event through ``Scorer.ingest`` (a Struct, or one NDJSON line as bytes,
without and with a unique ``event_id`` as real traffic carries: then the event-id window and the
journal see it) then ``tier_of``, and ``tier_of`` / ``score_of`` alone, p50 / p99 / p999, at 100k
and 1M users; the one-event path (``affinity_sdk.ingest.one_event``) and the batch pipeline on one row measured
alternately, in blocks, on the same scorer (``one_event.ONE_EVENT_PATH`` switches the compiled
whole-call shortcut of ``Scorer.ingest`` too; the lookups have one path: compare them with an older
checkout for a before / after).

Run: ``pytest benches/test_bench_one_event.py -s`` (or ``python benches/test_bench_one_event.py
[n_users ...]``). Each case is timed per call with ``perf_counter_ns``; on a busy host p99 and
p999 are mostly the neighbours' noise. The last column, ``min µs``, is the least thread CPU time
per call over the blocks of that case (``thread_time_ns`` around a block, divided by its calls):
what a quiet core approaches, as ``timeit``'s minimum would, since time the thread spends
descheduled is not counted (caches the neighbours evict still are).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import pytest

from affinity_sdk import Scorer
from affinity_sdk.capture.events import Product, ProductViewed
from affinity_sdk.ingest import one_event

T0 = 1_767_225_600_000
CALLS = 20_000  # per case and path: enough for a p999
BLOCK = 1_000  # calls per block; the two paths alternate block by block


def _scorer(n_users: int) -> Scorer:
    """A scorer holding ``n_users`` users (two events each), scored once (cut-offs set)."""
    scorer = Scorer()
    kinds = (b"app_opened", b"email_opened")
    for start in range(0, n_users, 250_000):
        lines = [
            b'{"type":"%s","user_id":"u%d","timestamp":%d}'
            % (kinds[(u + k) % 2], u, T0 - 86_400_000 * (u % 30 + k))
            for u in range(start, min(n_users, start + 250_000))
            for k in range(2)
        ]
        scorer.ingest(b"\n".join(lines))
    scorer.score()
    return scorer


def _time(call: Callable[[int], object], rounds: int, start: int) -> tuple[np.ndarray, float]:
    """Per-call wall times (ns) of ``rounds`` calls, and the block's thread CPU time per call (ns)."""
    out = np.empty(rounds, dtype=np.int64)
    clock = time.perf_counter_ns
    cpu = time.thread_time_ns()
    for i in range(rounds):
        t = clock()
        call(start + i)
        out[i] = clock() - t
    return out, (time.thread_time_ns() - cpu) / rounds


Row = tuple[str, str, float, float, float, float]


def measure(n_users: int, calls: int = CALLS) -> list[Row]:
    """``(case, path, p50 µs, p99 µs, p999 µs, min µs)`` for each case, both paths."""
    scorer = _scorer(n_users)
    names = scorer.interners.users.names
    rng = np.random.default_rng(7)
    # each ingest case takes 2 * calls + its warm-up events from the one shared stream
    users = [names[c] for c in rng.integers(0, n_users, size=8 * calls + 2_000).tolist()]
    product = Product(product_id="p1", category="shoes", brand="acme", price=59.0)
    events = [ProductViewed(user_id=u, timestamp=T0 + i, product=product) for i, u in enumerate(users)]
    line = (
        b'{"type":"product_viewed","user_id":"%s","timestamp":%d,%s"product":{"product_id":"p1",'
        b'"category":"shoes","brand":"acme","price":59.0}}'
    )
    lines = [line % (u.encode(), T0 + i, b"") for i, u in enumerate(users)]
    # what real traffic carries: a unique message id per event (Segment's messageId, webhook ids)
    with_ids = [
        ProductViewed(user_id=u, timestamp=T0 + i, product=product, event_id=f"m{i}")
        for i, u in enumerate(users)
    ]
    lines_with_ids = [line % (u.encode(), T0 + i, b'"event_id":"m%d",' % i) for i, u in enumerate(users)]
    clock = [0]  # events keep moving time forward, as in a live stream

    def struct_then_tier(i: int) -> None:
        clock[0] += 1
        scorer.ingest(events[clock[0]])
        scorer.tier_of(users[clock[0]])

    def bytes_then_tier(i: int) -> None:
        clock[0] += 1
        scorer.ingest(lines[clock[0]])
        scorer.tier_of(users[clock[0]])

    def struct_with_id_then_tier(i: int) -> None:
        clock[0] += 1
        scorer.ingest(with_ids[clock[0]])
        scorer.tier_of(users[clock[0]])

    def bytes_with_id_then_tier(i: int) -> None:
        clock[0] += 1
        scorer.ingest(lines_with_ids[clock[0]])
        scorer.tier_of(users[clock[0]])

    cases: dict[str, Callable[[int], object]] = {
        "ingest(Struct) + tier_of": struct_then_tier,
        "ingest(bytes) + tier_of": bytes_then_tier,
        "ingest(Struct with event_id) + tier_of": struct_with_id_then_tier,
        "ingest(bytes with event_id) + tier_of": bytes_with_id_then_tier,
        "tier_of": lambda i: scorer.tier_of(users[i % len(users)]),
        "score_of": lambda i: scorer.score_of(users[i % len(users)]),
    }
    rows = []
    for case, call in cases.items():
        samples: dict[bool, list[np.ndarray]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        _time(call, 200, 0)  # warm up
        # The lookups take no event: one path (the flag only switches how ingest takes one).
        paths = (True, False) if case.startswith("ingest") else (True,)
        for block in range(0, calls, BLOCK):
            for fast in paths:
                one_event.ONE_EVENT_PATH = fast
                try:
                    wall, per_call = _time(call, BLOCK, block)
                    samples[fast].append(wall)
                    cpu[fast].append(per_call)
                finally:
                    one_event.ONE_EVENT_PATH = True
        for fast in paths:
            us = np.concatenate(samples[fast]) / 1000.0
            p50, p99, p999 = np.percentile(us, [50, 99, 99.9]).tolist()
            rows.append((case, "one-event" if fast else "batch", p50, p99, p999, min(cpu[fast]) / 1000.0))
    return rows


def report(n_users: int, rows: list[Row]) -> str:
    head = f"{n_users:,} users | path | p50 µs | p99 µs | p999 µs | min µs"
    lines = [head, "-" * len(head)]
    lines += [
        f"{case} | {path} | {p50:.1f} | {p99:.1f} | {p999:.1f} | {least:.1f}"
        for case, path, p50, p99, p999, least in rows
    ]
    return "\n".join(lines)


@pytest.mark.parametrize("n_users", [100_000, 1_000_000])
def test_single_event_latency(n_users: int) -> None:
    rows = measure(n_users)
    print("\n" + report(n_users, rows))
    assert {path for _, path, *_ in rows} == {"one-event", "batch"} and len(rows) == 10


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [100_000, 1_000_000]:
        print(report(n, measure(n)), flush=True)
