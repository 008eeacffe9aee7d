"""The tier plan (affinity_sdk.score.tiers): quantile and absolute cut-offs, hysteresis, the score
mapping, edge inputs, and equality with the three implementations it replaces (the Scorer's
``_compute_cutoffs`` / ``_raw_threshold`` / ``_to_score`` / ``tier_of`` loop, the Dask module's
``_cutoff_plan`` / ``_absolute_cutoffs`` and the propensity model's ``assign_tiers``)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from affinity_sdk import kernels
from affinity_sdk._backends import native
from affinity_sdk.config import ScoringConfig, TierConfig, default_config
from affinity_sdk.errors import ConfigError
from affinity_sdk.models import propensity as P
from affinity_sdk.score.results import TIER_LABELS
from affinity_sdk.score.tiers import NO_TIER, TierPlan

BACKENDS = ["reference", "numba", *(["cpp"] if native() is not None else [])]


# --- the code this module replaced, verbatim in substance ------------------------------------
def old_to_score(raw: NDArray[np.float64], half_point: float) -> NDArray[np.float64]:
    positive = np.maximum(raw, 0.0)
    score: NDArray[np.float64] = 100.0 * positive / (positive + half_point)
    return score


def old_raw_threshold(score: float, half_point: float) -> float:
    if score >= 100.0:
        return float("inf")
    return half_point * score / (100.0 - score)


def old_scorer_cutoffs(
    config: ScoringConfig, raw: NDArray[np.float64], backend: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    t = config.tiers
    band = t.hysteresis
    h = config.score.half_point
    if t.method == "absolute":
        up = np.array([old_raw_threshold(t.medium + band, h), old_raw_threshold(t.high + band, h)])
        down = np.array(
            [old_raw_threshold(max(t.medium - band, 0.0), h), old_raw_threshold(max(t.high - band, 0.0), h)]
        )
        return up, down
    fractions = np.array([t.medium, t.high, min(t.medium + band, 1.0), min(t.high + band, 1.0)])
    fractions = np.concatenate([fractions, [max(t.medium - band, 0.0), max(t.high - band, 0.0)]])
    cuts = kernels.quantile_cutoffs(raw, fractions, backend=backend)
    if band == 0.0:
        return cuts[:2], cuts[:2]
    return cuts[2:4], cuts[4:6]


def plain_cutoffs(config: ScoringConfig, raw: NDArray[np.float64], backend: str) -> NDArray[np.float64]:
    """The cut-offs of ``medium`` / ``high`` themselves, no band: where a user with no tier yet
    enters (the old code entered them at the banded ``up``, so a first run missed its fractions)."""
    t = config.tiers
    if t.method == "absolute":
        h = config.score.half_point
        return np.array([old_raw_threshold(t.medium, h), old_raw_threshold(t.high, h)])
    return kernels.quantile_cutoffs(raw, np.array([t.medium, t.high]), backend=backend)


def expected_tiers(
    values: NDArray[np.float64],
    old_up: NDArray[np.float64],
    old_down: NDArray[np.float64],
    plain: NDArray[np.float64],
    previous: NDArray[np.int8],
    backend: str,
) -> NDArray[np.int8]:
    """The old kernel call for users with a tier, the plain cut-offs for those without."""
    kept = kernels.assign_tiers(values, old_up, old_down, previous, backend=backend)
    first = kernels.assign_tiers(values, plain, plain, backend=backend)
    out: NDArray[np.int8] = np.where(previous == NO_TIER, first, kept).astype(np.int8)
    return out


def old_dask_fractions(config: ScoringConfig) -> tuple[NDArray[np.float64], bool]:
    t = config.tiers
    band = t.hysteresis
    if band == 0.0:
        return np.array([t.medium, t.high]), False
    return np.array(
        [
            min(t.medium + band, 1.0),
            min(t.high + band, 1.0),
            max(t.medium - band, 0.0),
            max(t.high - band, 0.0),
        ]
    ), True


def old_tier_of(raw: float, cut_up: NDArray[np.float64], cut_down: NDArray[np.float64], previous: int) -> int:
    tier = 0
    if raw > 0.0:
        for level in (1, 2):
            threshold = cut_down[level - 1] if previous >= level else cut_up[level - 1]
            if raw >= threshold:
                tier = level
    return tier


def old_propensity_tiers(p: NDArray[np.float64], spec: Any, backend: str) -> NDArray[np.int8]:
    values = np.ascontiguousarray(p, dtype=np.float64)
    fractions = np.array([spec.medium, spec.high])
    cuts = (
        kernels.quantile_cutoffs(values, fractions, backend=backend)
        if spec.method == "quantile"
        else fractions
    )
    return kernels.assign_tiers(values, np.ascontiguousarray(cuts), backend=backend)


def config_with(**tiers: Any) -> ScoringConfig:
    return ScoringConfig.from_dict({**msgspec.to_builtins(default_config()), "tiers": tiers})


def same(a: NDArray[np.float64], b: NDArray[np.float64]) -> bool:
    """Equal values, NaN where NaN, and the same sign of zero."""
    if a.shape != b.shape:
        return False
    nan = np.isnan(a)
    return bool(
        (nan == np.isnan(b)).all()
        and (a[~nan] == b[~nan]).all()
        and (np.signbit(a) == np.signbit(b))[~nan].all()
    )


# --- quantile plans ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_quantile_plan_without_band(backend: str) -> None:
    plan = TierPlan.from_config(default_config())
    assert plan == TierPlan(method="quantile", high=0.9, medium=0.6, hysteresis=0.0, half_point=10.0)
    assert plan.quantile_fractions.tolist() == [0.6, 0.9] and not plan.banded
    raw = np.arange(1.0, 11.0)
    up, down = plan.cutoffs(raw, backend=backend)
    assert up.tolist() == down.tolist() == [7.0, 10.0]  # top 40 % Medium or above, top 10 % High
    tiers = plan.assign(raw, up, down, backend=backend)
    assert tiers.dtype == np.int8 and tiers.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]
    assert plan.labels(tiers).tolist() == TIER_LABELS[tiers].tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantile_hysteresis_enters_above_and_stays_above_the_band(backend: str) -> None:
    plan = TierPlan(high=0.8, medium=0.5, hysteresis=0.1)
    assert plan.banded
    assert plan.quantile_fractions.tolist() == pytest.approx([0.6, 0.9, 0.4, 0.7, 0.5, 0.8])
    raw = np.arange(1.0, 11.0)
    up, down = plan.cutoffs(raw, backend=backend)
    # enter Medium in the top 40 % (7), High in the top 10 % (10); stay in the top 60 % / 30 %;
    # a user with no tier yet enters at the plain top 50 % (6) / top 20 % (9).
    assert up.tolist() == [7.0, 10.0, 6.0, 9.0] and down.tolist() == [5.0, 8.0]
    fresh = plan.assign(raw, up, down, backend=backend)
    assert fresh.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]  # the configured 50 % / 20 %
    from_low = plan.assign(raw, up, down, np.zeros(10, dtype=np.int8), backend=backend)
    assert from_low.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]  # coming from Low: the band applies
    previous = np.array([1, 1, 1, 1, 2, 2, 2, 2, 2, 2], dtype=np.int8)
    kept = plan.assign(raw, up, down, previous, backend=backend)
    assert kept.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]  # High drops to Medium below 8, Low below 5
    # The scalar rule is the kernel's.
    assert [
        plan.tier_of(float(x), up, down, int(p)) for x, p in zip(raw, previous, strict=True)
    ] == kept.tolist()


def test_band_fractions_clip_to_unit_interval() -> None:
    plan = TierPlan(high=0.95, medium=0.05, hysteresis=0.1)
    assert plan.quantile_fractions.tolist() == [0.15000000000000002, 1.0, 0.0, 0.85, 0.05, 0.95]
    up, down = plan.cutoffs(np.arange(20.0), backend="reference")
    assert up[1] == math.inf  # nobody enters High from below
    assert down[0] == 0.0  # the lowest value; only values > 0 leave Low


# --- absolute plans ----------------------------------------------------------------------------
def test_absolute_plan_cuts_on_the_score_scale() -> None:
    plan = TierPlan.from_config(config_with(method="absolute", high=75.0, medium=50.0, hysteresis=5.0))
    assert plan.quantile_fractions.shape == (0,)
    up, down = plan.cutoffs(np.array([1.0, 2.0]))  # the population does not matter
    h = 10.0
    # entering [medium, high], then the plain thresholds of a first assignment; staying
    assert up.tolist() == [h * 55 / 45, h * 80 / 20, h * 50 / 50, h * 75 / 25]
    assert down.tolist() == [h * 45 / 55, h * 70 / 30]
    assert plan.to_score(up).tolist() == pytest.approx([55.0, 80.0, 50.0, 75.0])
    assert plan.cutoffs_from_quantiles(np.zeros(0))[0].tolist() == up.tolist()
    top = TierPlan(method="absolute", high=100.0, medium=98.0, hysteresis=5.0, half_point=h)
    assert top.absolute_cutoffs()[0].tolist() == [math.inf, math.inf, h * 98 / 2, math.inf]
    with pytest.raises(ValueError, match="absolute"):
        TierPlan().absolute_cutoffs()


def test_plan_without_a_mapping_cuts_the_values_themselves() -> None:
    plan = TierPlan(method="absolute", high=0.7, medium=0.3, half_point=None)
    assert plan.cutoffs(np.zeros(3))[0].tolist() == [0.3, 0.7]
    assert plan.raw_threshold(0.5) == 0.5 and plan.to_score([0.25, -1.0]).tolist() == [0.25, -1.0]
    assert (
        TierPlan.from_section(P.TierSpec(method="threshold", high=0.7, medium=0.3), half_point=None) == plan
    )


# --- the score mapping -------------------------------------------------------------------------
def test_score_mapping_and_its_inverse() -> None:
    plan = TierPlan(half_point=4.0)
    raw = np.array([0.0, 4.0, 12.0, -3.0, np.inf, -np.inf, np.nan])
    score = plan.to_score(raw)
    assert score[:6].tolist() == [0.0, 50.0, 75.0, 0.0, 100.0, 0.0] and np.isnan(score[6])
    assert same(score, kernels.scores_100(raw, 4.0, backend="reference"))
    for s in (0.0, 12.5, 50.0, 99.0):
        assert plan.to_score([plan.raw_threshold(s)])[0] == pytest.approx(s)
    assert plan.raw_threshold(100.0) == plan.raw_threshold(150.0) == math.inf
    assert plan.to_score(np.inf).shape == () and float(plan.to_score(np.inf)) == 100.0


@settings(max_examples=200, deadline=None)
@given(
    raw=st.lists(st.floats(-1e300, 1e300), max_size=50),
    half_point=st.floats(1e-3, 1e6),
)
def test_finite_scores_equal_the_old_mapping_bit_for_bit(raw: list[float], half_point: float) -> None:
    values = np.array(raw, dtype=np.float64)
    assert same(TierPlan(half_point=half_point).to_score(values), old_to_score(values, half_point))


# --- edge inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_population_puts_everyone_low(backend: str) -> None:
    plan = TierPlan(hysteresis=0.05)
    up, down = plan.cutoffs(np.zeros(0), backend=backend)
    assert up.tolist() == [math.inf] * 4 and down.tolist() == [math.inf] * 2
    assert plan.assign(np.zeros(0), up, down, backend=backend).shape == (0,)
    assert plan.tier_of(5.0, up, down, previous=2) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_inf_and_nan_values(backend: str) -> None:
    plan = TierPlan(high=0.75, medium=0.5)
    raw = np.array([np.inf, 1.0, 2.0, np.nan, 0.0, 3.0, 4.0, -np.inf])
    up, down = plan.cutoffs(raw, backend=backend)
    # NaN ranks above +inf in the order statistics (the kernels' rule): the top 25 % is {NaN, inf}.
    assert up[1] == math.inf
    assert up[0] == 3.0
    tiers = plan.assign(raw, up, down, backend=backend)
    assert tiers.tolist() == [2, 0, 0, 0, 0, 1, 1, 0]  # NaN, 0 and -inf are Low
    assert plan.tier_of(float("nan"), up, down) == 0 and plan.tier_of(math.inf, up, down) == 2
    assert plan.to_score(raw)[0] == 100.0


def test_invalid_plans_are_config_errors() -> None:
    for kwargs in (
        {"method": "zscore"},
        {"high": 0.5, "medium": 0.7},
        {"high": 1.5},
        {"hysteresis": -0.1},
        {"hysteresis": math.nan},
        {"half_point": 0.0},
        {"method": "absolute", "high": 120.0, "medium": 50.0},
    ):
        with pytest.raises(ConfigError):
            TierPlan(**kwargs)
    with pytest.raises(ValueError, match="expected 6 quantiles"):
        TierPlan(hysteresis=0.1).cutoffs_from_quantiles([1.0, 2.0])


# --- equality with the replaced implementations --------------------------------------------------
tier_settings = st.one_of(
    st.builds(
        lambda m, h, b: {"method": "quantile", "medium": min(m, h), "high": max(m, h), "hysteresis": b},
        st.floats(0.0, 1.0),
        st.floats(0.0, 1.0),
        st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.3]),
    ),
    st.builds(
        lambda m, h, b: {"method": "absolute", "medium": min(m, h), "high": max(m, h), "hysteresis": b},
        st.floats(0.0, 100.0),
        st.floats(0.0, 100.0),
        st.sampled_from([0.0, 1.0, 5.0, 30.0]),
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    tiers=tier_settings,
    raw=st.lists(st.floats(-5.0, 500.0), max_size=80),
    previous=st.lists(st.integers(-1, 2), min_size=80, max_size=80),
    backend=st.sampled_from(BACKENDS),
)
def test_scorer_numbers_equal_the_old_scorer(
    tiers: dict[str, Any], raw: list[float], previous: list[int], backend: str
) -> None:
    config = config_with(**tiers)
    plan = TierPlan.from_config(config)
    values = np.array(raw, dtype=np.float64)
    prev = np.array(previous[: len(raw)], dtype=np.int8)
    up, down = plan.cutoffs(values, backend=backend)
    old_up, old_down = old_scorer_cutoffs(config, values, backend)
    plain = plain_cutoffs(config, values, backend)
    enter, first = plan.split_up(up)
    assert same(enter, old_up) and same(down, old_down) and same(first, plain)
    assert up.shape == ((4,) if plan.banded else (2,))
    tiers_new = plan.assign(values, up, down, prev, backend=backend)
    tiers_old = expected_tiers(values, old_up, old_down, plain, prev, backend)
    assert tiers_new.tolist() == tiers_old.tolist()
    scalar = [plan.tier_of(float(x), up, down, int(p)) for x, p in zip(values, prev, strict=True)]
    assert scalar == [
        old_tier_of(float(x), plain, plain, -1)
        if p == NO_TIER
        else old_tier_of(float(x), old_up, old_down, p)
        for x, p in zip(values.tolist(), prev.tolist(), strict=True)
    ]
    assert scalar == tiers_new.tolist()
    # Nobody with a tier yet (a first run): the plain cut-offs for all.
    assert (
        plan.assign(values, up, down, backend=backend).tolist()
        == kernels.assign_tiers(values, plain, plain, backend=backend).tolist()
    )
    for score in (0.0, tiers["medium"], tiers["high"], 100.0):
        assert plan.raw_threshold(score) == old_raw_threshold(score, config.score.half_point)
    # The Dask path: the quantiles it computes distributedly give the same cut-offs.
    if tiers["method"] == "quantile":
        fractions, banded = old_dask_fractions(config)
        extra = [tiers["medium"], tiers["high"]] if banded else []
        assert plan.quantile_fractions.tolist() == [*fractions.tolist(), *extra] and plan.banded == banded
        quantiles = kernels.quantile_cutoffs(values, plan.quantile_fractions, backend=backend)
        got_up, got_down = plan.cutoffs_from_quantiles(quantiles)
        assert same(got_up, up) and same(got_down, old_down)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scorer_cutoffs_on_a_real_population_equal_the_old_ones(backend: str) -> None:
    rng = np.random.default_rng(7)
    raw = np.concatenate([np.zeros(300), rng.lognormal(1.0, 2.0, 5000), -rng.random(20)])
    for tiers in (
        {"high": 0.9, "medium": 0.6},
        {"high": 0.9, "medium": 0.6, "hysteresis": 0.02},
        {"method": "absolute", "high": 70.0, "medium": 40.0, "hysteresis": 3.0},
    ):
        config = config_with(**tiers)
        plan = TierPlan.from_config(config)
        up, down = plan.cutoffs(raw, backend=backend)
        old_up, old_down = old_scorer_cutoffs(config, raw, backend)
        plain = plain_cutoffs(config, raw, backend)
        enter, first = plan.split_up(up)
        assert same(enter, old_up) and same(down, old_down) and same(first, plain)
        previous = rng.integers(-1, 3, raw.shape[0]).astype(np.int8)
        assert (
            plan.assign(raw, up, down, previous, backend=backend).tolist()
            == expected_tiers(raw, old_up, old_down, plain, previous, backend).tolist()
        )


@settings(max_examples=100, deadline=None)
@given(
    p=st.lists(st.floats(0.0, 1.0), max_size=60),
    m=st.floats(0.0, 1.0),
    h=st.floats(0.0, 1.0),
    method=st.sampled_from(["quantile", "threshold", "absolute"]),
    backend=st.sampled_from(BACKENDS),
)
def test_propensity_tiers_equal_the_old_ones(
    p: list[float], m: float, h: float, method: str, backend: str
) -> None:
    spec = P.TierSpec(method=method, medium=min(m, h), high=max(m, h))
    values = np.array(p, dtype=np.float64)
    assert (
        P.assign_tiers(values, spec, backend=backend).tolist()
        == old_propensity_tiers(values, spec, backend).tolist()
    )


def test_propensity_tier_plan_reads_a_scoring_tier_section_without_its_band() -> None:
    plan = P.tier_plan(TierConfig(method="quantile", high=0.8, medium=0.5, hysteresis=0.1))
    assert plan == TierPlan(method="quantile", high=0.8, medium=0.5, hysteresis=0.0, half_point=None)
    assert P.tier_plan() == TierPlan(half_point=None)
    with pytest.raises(ConfigError, match="medium <= high"):
        P.tier_plan(P.TierSpec(method="threshold", high=0.2, medium=0.3))
    with pytest.raises(ConfigError, match="unknown tier method"):
        P.tier_plan(SimpleNamespace(method="zscore", high=0.9, medium=0.6))


def test_no_tier_is_a_user_from_low() -> None:
    up = np.array([1.0, 2.0])
    down = np.array([0.5, 1.5])
    raw = np.array([0.75, 1.75])
    fresh = TierPlan.assign(raw, up, down, np.full(2, NO_TIER, dtype=np.int8), backend="reference")
    assert fresh.tolist() == TierPlan.assign(raw, up, down, backend="reference").tolist() == [0, 1]
