"""A first run gives the configured tier fractions whatever the hysteresis band: a user with no tier
yet (``NO_TIER``) is tiered at the plain cut-offs, and only users who have a tier get the band
(enter above ``q + b``, stay above ``q - b``). With README's config (``high = 0.9``, ``medium =
0.6``, ``hysteresis = 0.02``) the first run used to give 8 % High and 30 % Medium instead of 10 %
and 30 %."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from affinity_sdk import Scorer, kernels
from affinity_sdk._backends import native
from affinity_sdk.capture.events import Event, Product, ProductViewed
from affinity_sdk.config import ScoringConfig
from affinity_sdk.score.tiers import NO_TIER, TierPlan

BACKENDS = ["reference", "numba", *(["cpp"] if native() is not None else [])]
# README's "Configuration" section.
README_CONFIG = ScoringConfig.from_toml(
    """
version = "spring-2027"
[signals.product_viewed]
weight = 1.0
half_life = "3d"
[signals.order_completed]
weight = 10.0
half_life = "30d"
[tiers]
method = "quantile"
high = 0.9
medium = 0.6
hysteresis = 0.02
[score]
half_point = 10.0
"""
)
N = 10_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PRODUCT = Product(product_id="p", category="c", brand="b", price=1.0)


def _counts(tiers: NDArray[np.int8]) -> list[int]:
    return np.bincount(tiers, minlength=3).tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_readme_config_first_run_gives_the_configured_fractions(backend: str) -> None:
    plan = TierPlan.from_config(README_CONFIG)
    assert plan.banded
    raw = np.random.default_rng(11).lognormal(1.0, 1.5, N)  # distinct values: no ties
    up, down = plan.cutoffs(raw, backend=backend)
    for previous in (None, np.full(N, NO_TIER, dtype=np.int8)):
        tiers = plan.assign(raw, up, down, previous, backend=backend)
        assert _counts(tiers) == [6000, 3000, 1000]  # Low, Medium, High: exactly 60 / 30 / 10 %
    # One user at a time agrees with the kernel.
    assert [plan.tier_of(float(x), up, down) for x in raw[:500]] == tiers[:500].tolist()
    # Users who have a tier get the band: from Low they must clear the top 38 % / 8 %.
    from_low = plan.assign(raw, up, down, np.zeros(N, dtype=np.int8), backend=backend)
    assert _counts(from_low) == [6200, 3000, 800]


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_run_keeps_the_hysteresis(backend: str) -> None:
    plan = TierPlan.from_config(README_CONFIG)
    rng = np.random.default_rng(12)
    raw = rng.lognormal(1.0, 1.5, N)
    up, down = plan.cutoffs(raw, backend=backend)
    first = plan.assign(raw, up, down, backend=backend)
    # Small changes: every score moves by up to ±3 %, and 500 newcomers arrive.
    moved = np.concatenate([raw * rng.uniform(0.97, 1.03, N), rng.lognormal(1.0, 1.5, 500)])
    previous = np.concatenate([first, np.full(500, NO_TIER, dtype=np.int8)])
    up2, down2 = plan.cutoffs(moved, backend=backend)
    enter, plain = plan.split_up(up2)
    second = plan.assign(moved, up2, down2, previous, backend=backend)
    # The rule, written out: a user with a tier enters at q + b and stays down to q - b; a
    # newcomer is cut at the plain quantiles.
    want = np.zeros(moved.shape[0], dtype=np.int8)
    for level in (1, 2):
        t = level - 1
        threshold = np.where(previous == NO_TIER, plain[t], np.where(previous >= level, down2[t], enter[t]))
        want[(moved > 0) & (moved >= threshold)] = level
    assert second.tolist() == want.tolist()
    # the band holds users in place: far fewer tier changes than re-cutting at the plain quantiles
    plain_cut = kernels.assign_tiers(moved, plain, plain, backend=backend)
    changes = int((second[:N] != first).sum())
    assert changes < int((plain_cut[:N] != first).sum()) / 2
    # a user between q - b and q stays High; one between q and q + b coming from Medium does not
    high_q = plain[1]
    stayed = (previous == 2) & (moved < high_q) & (moved >= down2[1])
    blocked = (previous == 1) & (moved >= high_q) & (moved < enter[1])
    assert stayed.any() and (second[stayed] == 2).all()
    assert blocked.any() and (second[blocked] == 1).all()
    # newcomers are tiered like a first run
    assert second[N:].tolist() == plan.assign(moved[N:], up2, down2, backend=backend).tolist()


def _views(user: str, n: int) -> list[Event]:
    return [ProductViewed(user_id=user, timestamp=T0, product=PRODUCT) for _ in range(n)]


def test_scorer_first_run_new_users_and_a_reload(tmp_path: Path) -> None:
    """200 users with raw scores 1..200: the first score() gives 20 High and 60 Medium; a newcomer
    is tiered at the plain cut-offs at ingest and by tier_of, before and after a save / load,
    while a Medium user with the same score stays Medium (the band)."""
    scorer = Scorer(README_CONFIG, backend="reference")
    scorer.ingest([e for i in range(200) for e in _views(f"u{i:03d}", i + 1)])
    result = scorer.score()
    tiers = dict(zip(result.user_ids, result.tier.tolist(), strict=True))
    assert [list(tiers.values()).count(t) for t in ("low", "medium", "high")] == [120, 60, 20]
    assert tiers["u180"] == "high" and tiers["u179"] == "medium"  # raw 181 and 180
    # cut-offs: enter High at 185 (top 8 %), plain 181 (top 10 %), stay down to 177 (top 12 %)
    assert scorer._cutoffs is not None
    assert scorer._cutoffs[0].tolist() == [125.0, 185.0, 121.0, 181.0]
    assert scorer._cutoffs[1].tolist() == [117.0, 177.0]
    changes: list[tuple[str, str, str]] = []
    scorer.on_tier_change(lambda c: changes.append((c.user_id, c.old, c.new)))
    scorer.ingest(_views("newcomer", 183) + _views("u179", 3))  # both at raw 183
    assert changes == [("newcomer", "low", "high")]
    assert (scorer.tier_of("newcomer"), scorer.tier_of("u179")) == ("high", "medium")
    late = Scorer.load(scorer.save(tmp_path / "state.afs"), backend="reference")
    late.ingest(_views("late", 182))
    assert (late.tier_of("late"), late.tier_of("u179"), late.tier_of("newcomer")) == (
        "high",
        "medium",
        "high",
    )
