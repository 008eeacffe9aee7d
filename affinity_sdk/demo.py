"""``affinity demo``: simulate a shop, score it, print a summary and write the outputs.

Examples
--------
>>> import tempfile
>>> run_demo(customers=300, weeks=4, seed=1, out=tempfile.mkdtemp(), echo=lambda *a: None)
0
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run_demo"]


def run_demo(
    *,
    customers: int = 20_000,
    weeks: int = 12,
    seed: int = 7,
    out: str | Path = "affinity-demo",
    backend: str | None = "auto",
    echo: Callable[..., Any] = print,
) -> int:
    """Simulate ``customers`` shoppers over ``weeks``, score them with the default config, and
    write ``scores.csv`` into ``out``. Returns the exit status (0)."""
    from .datasets import simulate_shop
    from .scorer import Scorer

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    sim = simulate_shop(customers, weeks=weeks, seed=seed)
    n_events = len(sim.batch)
    echo(f"simulated {customers:,} customers, {n_events:,} events over {weeks} weeks ({_since(started)})")

    started = time.perf_counter()
    scorer = Scorer(backend=backend)
    scorer.ingest(sim.batch)
    result = scorer.score()
    echo(
        f"scored {len(result):,} users in {_since(started)} "
        f"(backend {scorer.backend}, config {scorer.config.version}/{scorer.config.fingerprint})"
    )
    counts = result.tier_counts()
    echo(f"tiers: high {counts['high']:,} · medium {counts['medium']:,} · low {counts['low']:,}")

    top = int(result.raw_score.argmax()) if len(result) else None
    if top is not None:
        why = scorer.explain(result.user_ids[top])
        echo(f"top user {why.user_id}: score {why.score:.1f} ({why.tier}); biggest contributions:")
        for signal in why.signals[:3]:
            echo(f"  {signal.signal:<28} {signal.contribution:8.2f}  ({signal.count} events)")

    scores_path = result.save(folder / "scores.csv")
    echo(f"wrote {scores_path}")
    return 0


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.2f}s"
