"""Shadow configs: a candidate folded beside the live config scores exactly like a separate
``Scorer(candidate)`` fed the same events, the report counts what it says, and ``promote`` gives
the state a ``Scorer(candidate)`` would have, without re-ingesting."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest
from scipy.stats import spearmanr

from affinity_sdk import Scorer
from affinity_sdk.capture.events import AppOpened, Event, OrderCompleted, Product, ProductAdded, ProductViewed
from affinity_sdk.config import AffinityConfig, ScoringConfig
from affinity_sdk.errors import AffinityError, ConfigError
from affinity_sdk.score.results import ScoreResult
from affinity_sdk.score.scorer import TierChange

LIVE = ScoringConfig.from_toml(
    """
version = "live"
[signals.product_viewed]
weight = 1.0
half_life = "3d"
[signals.product_added]
weight = 4.0
half_life = "7d"
[signals.order_completed]
weight = 10.0
half_life = "30d"
value = "revenue"
[tiers]
high = 0.8
medium = 0.5
"""
)
# Same signals, half-lives and values: only weights, tiers and the score mapping differ.
WEIGHTS = ScoringConfig.from_toml(
    """
version = "weights"
[signals.product_viewed]
weight = 3.0
half_life = "3d"
[signals.product_added]
weight = 1.0
half_life = "7d"
[signals.order_completed]
weight = 2.0
half_life = "30d"
value = "revenue"
[tiers]
method = "absolute"
high = 70.0
medium = 40.0
[score]
half_point = 50.0
"""
)
# Other half-lives, another value field and one more scored event type: a state of its own.
HALF_LIVES = ScoringConfig.from_toml(
    """
version = "half-lives"
[signals.product_viewed]
weight = 1.0
half_life = "1d"
[signals.product_added]
weight = 4.0
half_life = "14d"
[signals.order_completed]
weight = 10.0
half_life = "60d"
[signals.app_opened]
weight = 0.5
half_life = "7d"
[tiers]
high = 0.9
medium = 0.6
"""
)
CANDIDATES = {"weights": WEIGHTS, "half-lives": HALF_LIVES}
DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = T0 + 61 * DAY_MS


def events(n: int, n_users: int, seed: int) -> list[Event]:
    rng = np.random.default_rng(seed)
    out: list[Event] = []
    for _ in range(n):
        user, ts = f"u{rng.integers(n_users)}", T0 + int(rng.integers(0, 60 * DAY_MS))
        product = Product(
            product_id=f"p{rng.integers(20)}",
            category=f"c{rng.integers(4)}",
            brand=f"b{rng.integers(5)}",
            price=float(rng.integers(100, 9_000)) / 100,
            quantity=1,
        )
        kind = rng.integers(4)
        if kind == 0:
            out.append(ProductViewed(user_id=user, timestamp=ts, product=product))
        elif kind == 1:
            out.append(ProductAdded(user_id=user, timestamp=ts, product=product))
        elif kind == 2:
            order = f"o{rng.integers(1 << 30)}"
            out.append(
                OrderCompleted(
                    user_id=user, timestamp=ts, order_id=order, products=[product], revenue=product.price
                )
            )
        else:
            out.append(AppOpened(user_id=user, timestamp=ts))
    return out


def feed(scorer: Scorer, stream: list[Event], mode: str) -> None:
    if mode == "batch":
        scorer.ingest(stream)
    else:
        for event in stream:
            scorer.ingest(event)


def assert_same(a: ScoreResult, b: ScoreResult) -> None:
    assert a.user_ids == b.user_ids
    np.testing.assert_array_equal(a.raw_score, b.raw_score)
    np.testing.assert_array_equal(a.score, b.score)
    np.testing.assert_array_equal(a.tier_code, b.tier_code)
    np.testing.assert_array_equal(a.decayed, b.decayed)
    assert (a.signal_names, a.config_version, a.config_fingerprint) == (
        b.signal_names,
        b.config_version,
        b.config_fingerprint,
    )


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_shadow_scores_exactly_like_a_separate_scorer(backend: str, mode: str) -> None:
    stream = events(400 if mode == "stream" else 3_000, 60, seed=1)
    scorer = Scorer(LIVE, backend=backend, shadow=list(CANDIDATES.values()))
    alone = {name: Scorer(cfg, backend=backend) for name, cfg in CANDIDATES.items()}
    feed(scorer, stream, mode)
    for other in alone.values():
        feed(other, stream, mode)
    for name, other in alone.items():
        assert_same(scorer.shadow_score(name, NOW), other.score(NOW))
    assert set(scorer.shadows) == set(CANDIDATES)
    # the weights-only candidate keeps no state; the other keeps exactly one view more
    extra = [key for key in scorer.store.views if key != "signals"]
    assert len(extra) == 1 and extra[0].startswith("shadow:")
    report = scorer.shadow_report(NOW)
    assert report["weights"].shares_state and not report["half-lives"].shares_state


def test_ingest_report_counts_the_live_signals_only() -> None:
    stream = events(300, 20, seed=2)
    with_shadow = Scorer(LIVE, backend="reference", shadow=[HALF_LIVES]).ingest(stream)
    plain = Scorer(LIVE, backend="reference").ingest(stream)
    assert with_shadow.scored == plain.scored < with_shadow.accepted  # app_opened is HALF_LIVES' only


def test_first_run_tiers_with_hysteresis_match_a_separate_scorer() -> None:
    banded = msgspec.structs.replace(
        HALF_LIVES, version="banded", tiers=msgspec.structs.replace(HALF_LIVES.tiers, hysteresis=0.05)
    )
    stream = events(1_000, 80, seed=3)
    scorer, other = Scorer(LIVE, shadow=[banded]), Scorer(banded)
    scorer.ingest(stream)
    other.ingest(stream)
    assert_same(scorer.shadow_score("banded", NOW), other.score(NOW))


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_promote_gives_the_state_of_a_scorer_that_ingested_everything(name: str, tmp_path: Path) -> None:
    first, second = events(1_500, 70, seed=4), events(500, 90, seed=5)
    scorer = Scorer(LIVE, shadow=CANDIDATES)
    scorer.ingest(first)
    scorer.promote(name, demote_as="old")
    scorer.ingest(second)
    for cfg_name, cfg in {**CANDIDATES, "old": LIVE}.items():
        alone = Scorer(cfg)
        alone.ingest(first)
        alone.ingest(second)
        if cfg_name == name:
            assert scorer.config == cfg and cfg.fingerprint in repr(scorer)
            assert_same(scorer.score(NOW), alone.score(NOW))
            assert scorer.explain("u3", NOW) == alone.explain("u3", NOW)
            assert scorer.tier_of("u7") == alone.tier_of("u7")
        else:  # the other candidate and the demoted live config still shadow exactly
            assert_same(scorer.shadow_score(cfg_name, NOW), alone.score(NOW))
    assert set(scorer.shadows) == {"old", *CANDIDATES} - {name}
    # and back again
    scorer.promote("old")
    back = Scorer(LIVE)
    back.ingest(first)
    back.ingest(second)
    assert_same(scorer.score(NOW), back.score(NOW))
    assert set(scorer.shadows) == set(CANDIDATES) - {name}
    loaded = Scorer.load(scorer.save(tmp_path / "s.affs"), config=LIVE)
    assert_same(loaded.score(NOW), back.score(NOW))


def test_after_promote_the_triggers_fire_for_exactly_the_movers() -> None:
    stream = events(2_000, 120, seed=6)
    scorer, alone = Scorer(LIVE, shadow=[HALF_LIVES]), Scorer(HALF_LIVES)
    scorer.ingest(stream)
    alone.ingest(stream)
    scorer.score(NOW)  # the live tiers every user was last told
    report = scorer.shadow_report(NOW, top=None)
    assert report["half-lives"].n_moved > 0
    changes: list[TierChange] = []
    scorer.on_tier_change(changes.append)
    scorer.promote("half-lives")
    result = scorer.score(NOW)
    moves = {m.user_id: (m.live_tier, m.candidate_tier) for m in report["half-lives"].moved}
    assert {c.user_id: (c.old, c.new) for c in changes} == moves
    assert_same(result, alone.score(NOW))  # no hysteresis: the tiers of a fresh Scorer too
    assert len(changes) == report["half-lives"].n_moved


def test_report_matrix_and_movers_match_a_hand_count() -> None:
    stream = events(2_500, 150, seed=7)
    scorer = Scorer(LIVE, shadow=[HALF_LIVES])
    scorer.ingest(stream)
    for user in ("u1", "u2", "u3"):
        scorer.opt_out(user)
    scorer.forget("u4")
    report = scorer.shadow_report(NOW, top=None)
    live = scorer.score(NOW)  # the report is read-only: score() still sees a first run
    other = Scorer(HALF_LIVES)
    other.ingest(stream)
    for user in ("u1", "u2", "u3"):
        other.opt_out(user)
    other.forget("u4")
    candidate = other.score(NOW)
    assert live.user_ids == candidate.user_ids and not {"u1", "u2", "u3", "u4"} & set(live.user_ids)
    labels = ("low", "medium", "high")
    counts = Counter(zip(live.tier.tolist(), candidate.tier.tolist(), strict=True))
    comparison = report["half-lives"]
    for i, before in enumerate(labels):
        for j, after in enumerate(labels):
            assert comparison.transitions[i, j] == counts[(before, after)]
    assert comparison.transitions.sum() == comparison.n_users == len(live.user_ids)
    expected_rho = spearmanr(live.raw_score, candidate.raw_score).statistic
    assert comparison.spearman == pytest.approx(expected_rho, rel=1e-12)
    rows = {u: i for i, u in enumerate(live.user_ids)}
    movers = {u for u in live.user_ids if live.tier[rows[u]] != candidate.tier[rows[u]]}
    assert {m.user_id for m in comparison.moved} == movers and comparison.n_moved == len(movers)
    for move in comparison.moved:
        i = rows[move.user_id]
        assert (move.live_tier, move.candidate_tier) == (live.tier[i], candidate.tier[i])
        assert (move.live_score, move.candidate_score) == (live.score[i], candidate.score[i])
    change = [abs(m.candidate_score - m.live_score) for m in comparison.moved]
    assert change == sorted(change, reverse=True)
    top = scorer.shadow_report(NOW, top=3)["half-lives"]
    assert top.moved == comparison.moved[:3] and top.n_moved == comparison.n_moved


def test_consent_forget_and_identity_apply_to_shadows() -> None:
    stream = events(1_500, 50, seed=8)
    scorer = Scorer(LIVE, shadow=[HALF_LIVES])
    other = Scorer(HALF_LIVES)
    for s in (scorer, other):
        s.ingest(stream)
        s.opt_out("u5")
        s.forget("u6")
        s.identify("u7", "u8")
        s.ingest(events(200, 60, seed=9))  # later events of u6 and u7 (merged into u8)
    assert_same(scorer.shadow_score("half-lives", NOW), other.score(NOW))
    view = scorer._shadows.view_of("half-lives")
    forgotten = [c for c, name in enumerate(scorer.interners.users.names) if name == ""]
    assert forgotten and (view.state.records[forgotten]["count"] == 0).all()
    assert "u5" not in scorer.shadow_score("half-lives", NOW).user_ids


def test_save_load_round_trip_keeps_the_shadows(tmp_path: Path) -> None:
    first, second = events(1_200, 60, seed=10), events(300, 80, seed=11)
    scorer = Scorer(LIVE, shadow=CANDIDATES)
    scorer.ingest(first)
    loaded = Scorer.load(scorer.save(tmp_path / "s.affs"))
    assert {n: c.fingerprint for n, c in loaded.shadows.items()} == {
        n: c.fingerprint for n, c in CANDIDATES.items()
    }
    for s in (scorer, loaded):
        s.ingest(second)
    for name in CANDIDATES:
        assert_same(loaded.shadow_score(name, NOW), scorer.shadow_score(name, NOW))
    assert list(loaded.store.views) == list(scorer.store.views)
    loaded.promote("half-lives")
    again = Scorer.load(loaded.save(tmp_path / "p.affs"), config=HALF_LIVES)
    assert set(again.shadows) == {"weights"}
    assert_same(again.score(NOW), scorer.shadow_score("half-lives", NOW))


def test_merging_shards_with_shadows_is_exact() -> None:
    stream = events(2_000, 80, seed=12)
    whole = Scorer(LIVE, shadow=[HALF_LIVES, WEIGHTS])
    whole.ingest(stream)
    a, b = Scorer(LIVE, shadow=CANDIDATES), Scorer(LIVE, shadow=CANDIDATES)
    a.ingest(stream[:1_100])
    b.ingest(stream[1_100:])
    a.merge(b)
    for name in CANDIDATES:
        merged, one = a.shadow_score(name, NOW), whole.shadow_score(name, NOW)
        assert sorted(merged.user_ids) == sorted(one.user_ids)
        order = np.argsort(merged.user_ids)
        np.testing.assert_allclose(
            merged.raw_score[order], one.raw_score[np.argsort(one.user_ids)], rtol=1e-12
        )
    with pytest.raises(ConfigError, match="different shadow configs"):
        a.merge(Scorer(LIVE, shadow=[WEIGHTS]))


def test_bad_shadow_arguments_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="two shadow configs are named 'live'"):
        Scorer(LIVE, shadow=[LIVE, msgspec.structs.replace(WEIGHTS, version="live")])
    with pytest.raises(ConfigError, match="not one config"):
        Scorer(LIVE, shadow=WEIGHTS)  # type: ignore[arg-type]
    other_affinity = msgspec.structs.replace(WEIGHTS, affinity=AffinityConfig(shrinkage=8.0))
    with pytest.raises(ConfigError, match=r"\[affinity\] section differs"):
        Scorer(LIVE, shadow=[other_affinity])
    scorer = Scorer(LIVE, shadow=CANDIDATES)
    with pytest.raises(KeyError, match="no shadow config 'nope'"):
        scorer.promote("nope")
    with pytest.raises(ConfigError, match="demote_as='half-lives'"):
        scorer.promote("weights", demote_as="half-lives")
    assert scorer.config == LIVE and set(scorer.shadows) == set(CANDIDATES)  # nothing changed
    with pytest.raises(ValueError, match="top must be"):
        scorer.shadow_report(top=-1)
    scorer.drop_shadow("half-lives")
    assert list(scorer.store.views) == ["signals"] and list(scorer.shadows) == ["weights"]
    assert issubclass(ConfigError, AffinityError)


def test_with_hysteresis_the_shadow_tiers_are_those_promote_then_score_gives() -> None:
    banded = msgspec.structs.replace(
        HALF_LIVES, version="banded", tiers=msgspec.structs.replace(HALF_LIVES.tiers, hysteresis=0.1)
    )
    stream = events(2_000, 150, seed=13)
    scorer, fresh = Scorer(LIVE, shadow=[banded]), Scorer(banded)
    scorer.ingest(stream)
    fresh.ingest(stream)
    scorer.score(NOW)  # every user now has a live tier: the band applies against it
    shadow = scorer.shadow_score("banded", NOW)
    first_run = fresh.score(NOW)
    np.testing.assert_array_equal(shadow.raw_score, first_run.raw_score)
    assert (shadow.tier_code != first_run.tier_code).any()  # the band made a difference here
    after = scorer.promote("banded").score(NOW)
    assert_same(after, shadow)


def test_a_state_file_with_broken_shadow_metadata_is_refused(tmp_path: Path) -> None:
    from affinity_sdk import StateError
    from affinity_sdk._persist import read_container, write_container

    scorer = Scorer(LIVE, shadow=CANDIDATES)
    scorer.ingest(events(200, 20, seed=14))
    header, arrays = read_container(scorer.save(tmp_path / "s.affs"), "affinity_sdk.Scorer")
    broken = [
        {**header, "shadows": {"configs": [["x", {"signals": {}}]], "views": {}}},
        {**header, "shadows": {"configs": header["shadows"]["configs"], "views": {}}},
        {**header, "shadows": {"configs": header["shadows"]["configs"], "views": [1]}},
        {**header, "shadows": {"configs": [[1, 2, 3]], "views": {}}},
    ]
    for i, bad in enumerate(broken):
        write_container(tmp_path / f"b{i}.affs", "affinity_sdk.Scorer", bad, arrays)
        with pytest.raises(StateError, match="shadow"):
            Scorer.load(tmp_path / f"b{i}.affs")
