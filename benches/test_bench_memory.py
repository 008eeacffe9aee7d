"""Memory: state bytes per profile at 8 signals, and peak RSS of ingesting 10M events for 1M
profiles, measured in a fresh subprocess so the figure is that workload's own.

Run: ``pytest benches/test_bench_memory.py -q -s`` (``AFFINITY_BENCH_EVENTS`` /
``AFFINITY_BENCH_PROFILES`` shrink the workload; figures are printed and stored in
``benchmark.extra_info``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from affinity_sdk import DecayState, Scorer

N_EVENTS = int(os.environ.get("AFFINITY_BENCH_EVENTS", "10000000"))
N_PROFILES = int(os.environ.get("AFFINITY_BENCH_PROFILES", "1000000"))

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from affinity_sdk import EventBatch, Scorer
    from affinity_sdk.capture.events import EVENT_TYPE_CODES

    n_events, n_profiles, chunk = int(sys.argv[1]), int(sys.argv[2]), 1_000_000
    scorer = Scorer(dedupe_window=int(sys.argv[3]) or None)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    names = scorer.interners  # ids interned once, as a long-running process would hold them
    for i in range(n_profiles):
        names.users.intern(f"user-{i}")
    rng = np.random.default_rng(0)
    codes = np.array([EVENT_TYPE_CODES[t] for t in scorer.config.signal_names], dtype=np.uint8)
    start = time.perf_counter()
    for lo in range(0, n_events, chunk):
        n = min(chunk, n_events - lo)
        empty_i32, empty_f = np.zeros(0, np.int32), np.zeros(0)
        batch = EventBatch(
            user=rng.integers(0, n_profiles, n), event_type=rng.choice(codes, n),
            ts_ms=1_767_225_600_000 + np.sort(rng.integers(0, 86_400_000 * 30, n)),
            channel=np.zeros(n, np.uint8), revenue=rng.random(n) * 100, discount=np.full(n, np.nan),
            has_coupon=np.zeros(n, bool), campaign=np.full(n, -1, np.int32),
            event_id=np.arange(lo + 1, lo + n + 1, dtype=np.uint64), consent=np.full(n, -1, np.int8),
            item_event=np.zeros(0, np.int64), item_product=empty_i32, item_category=empty_i32,
            item_brand=empty_i32, item_price=empty_f, item_discount=empty_f,
            item_quantity=empty_i32, interners=names)
        scorer.ingest(batch)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mib": peak / 1024, "before_ingest_rss_mib": baseline / 1024,
                      "seconds": seconds, "users": scorer.n_users, "events": scorer.events_ingested,
                      "backend": scorer.backend}))
    """
)


def test_state_bytes_per_profile_at_8_signals(benchmark: pytest.FixtureRequest) -> None:
    state = DecayState([3600.0 * (i + 1) for i in range(8)], backend="reference")
    state.ensure_profiles(1)
    per_profile = state.nbytes_per_profile
    scorer = Scorer()
    assert len(scorer.config.signals) == 8
    benchmark.extra_info["state_bytes_per_profile_8_signals"] = per_profile  # type: ignore[attr-defined]
    print(f"\nstate bytes per profile at 8 signals: {per_profile} ((8 B acc + 32 B record) x 8)")
    assert per_profile == 40 * 8
    benchmark(state.ensure_profiles, 2)  # type: ignore[operator]


@pytest.mark.parametrize("dedupe_window", [0, 1 << 19], ids=["no-dedupe", "dedupe-512k"])
def test_peak_rss_ingesting_10m_events_for_1m_profiles(
    benchmark: pytest.FixtureRequest, tmp_path: Path, dedupe_window: int
) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    def run() -> dict[str, float]:
        out = subprocess.run(
            [sys.executable, str(script), str(N_EVENTS), str(N_PROFILES), str(dedupe_window)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    figures = benchmark.pedantic(run, rounds=1, iterations=1)  # type: ignore[attr-defined]
    assert figures["events"] == N_EVENTS
    benchmark.extra_info.update(figures)  # type: ignore[attr-defined]
    print(f"\n{dedupe_window=}: {figures}")
