"""A web-backend-shaped use of the Scorer: events arrive one by one, tier lookups are answered
from memory, a periodic job rescores everyone and triggers journeys on tier changes, an erasure
request forgets a user for good, and state is checkpointed with the source position so a restart
resumes exactly.

Run it: ``python examples/backend_embed.py``. No web framework is needed; ``handle_event`` and
``handle_tier_lookup`` are what a route handler would call.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from affinity_sdk import Scorer
from affinity_sdk.score.scorer import TierChange

scorer = Scorer()  # the built-in default config; pass a TOML path in production
journeys: list[TierChange] = []


@scorer.on_tier_change
def start_journey(change: TierChange) -> None:
    """A marketing trigger: e.g. enqueue a 'welcome to VIP' email when a user becomes High."""
    if change.new == "high":
        journeys.append(change)


def handle_event(body: bytes) -> dict[str, object]:
    """POST /events: one JSON event per request."""
    report = scorer.ingest(body, format="json", errors="collect")
    return {"accepted": report.accepted, "rejected": report.rejected}


def handle_tier_lookup(user_id: str) -> dict[str, object]:
    """GET /users/<id>/tier: answered from in-process state."""
    return {"user_id": user_id, "tier": scorer.tier_of(user_id), "score": scorer.score_of(user_id)}


def handle_erasure(user_id: str) -> dict[str, object]:
    """DELETE /users/<id>: the right to be forgotten. Every view erases the user, and their
    events stamped before now are dropped if a replay or a late delivery brings them back."""
    return {"user_id": user_id, "was_known": scorer.forget(user_id)}


def simulated_traffic(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    start = 1_767_225_600_000  # 2026-01-01
    kinds = ["product_viewed", "product_added", "order_completed", "app_opened", "email_clicked"]
    bodies = []
    for i in range(n):
        kind = kinds[int(rng.choice(len(kinds), p=[0.6, 0.15, 0.05, 0.15, 0.05]))]
        event: dict[str, object] = {
            "type": kind,
            "user_id": f"user-{int(rng.zipf(1.5)) % 500}",
            "timestamp": start + i * 60_000,
            "event_id": f"evt-{i}",
        }
        product = {"product_id": f"p{rng.integers(100)}", "category": "shoes", "brand": "acme", "price": 49.0}
        if kind in ("product_viewed", "product_added"):
            event["product"] = product
        if kind == "order_completed":
            event.update(order_id=f"o{i}", products=[product], revenue=49.0)
        bodies.append(json.dumps(event).encode())
    return bodies


def main() -> None:
    traffic = simulated_traffic(5_000)
    for body in traffic[:4_000]:
        handle_event(body)
    scorer.score()  # the periodic job: refresh cut-offs, fire journeys

    latencies = []
    for i, body in enumerate(traffic[4_000:]):
        t0 = time.perf_counter()
        handle_event(body)
        handle_tier_lookup(f"user-{i % 500}")
        latencies.append(time.perf_counter() - t0)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e6
    print(f"ingest + tier lookup: median {p50:.0f} µs, p99 {p99:.0f} µs over {len(latencies)} requests")

    result = scorer.score()
    print(f"{len(result)} users; tiers {result.tier_counts()}; {len(journeys)} journeys started")
    print("lookup:", handle_tier_lookup("user-1"))

    print("erasure:", handle_erasure("user-2"))
    replayed = [body for body in traffic if b'"user-2"' in body]
    for body in replayed:
        handle_event(body)  # an upstream replay of the user's old events
    print(f"after replaying {len(replayed)} of their events: {handle_tier_lookup('user-2')}")

    with tempfile.TemporaryDirectory() as tmp:
        path = scorer.save(Path(tmp) / "state.afs", source_position=len(traffic))
        restored = Scorer.load(path)
        print(f"checkpoint restored at source position {restored.source_position}: {restored!r}")


if __name__ == "__main__":
    main()
