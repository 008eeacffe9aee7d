"""Evaluation metrics against hand-computed cases, scipy and brute-force definitions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from affinity_sdk.activate import evaluate as E

labels_scores = st.integers(min_value=2, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < len(v)),
        st.lists(st.integers(0, 5), min_size=n, max_size=n),
    )
)


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = [(p > q) + 0.5 * (p == q) for p, q in itertools.product(pos, neg)]
    return float(np.mean(wins))


def brute_average_precision(y: np.ndarray, s: np.ndarray) -> float:
    total, ap, prev_recall = y.sum(), 0.0, 0.0
    for threshold in sorted(set(s.tolist()), reverse=True):
        chosen = s >= threshold
        recall = y[chosen].sum() / total
        ap += (recall - prev_recall) * y[chosen].mean()
        prev_recall = recall
    return float(ap)


@settings(max_examples=60, deadline=None)
@given(labels_scores)
def test_roc_auc_matches_brute_force_and_mann_whitney(data: tuple[list[int], list[int]]) -> None:
    y, s = np.array(data[0]), np.array(data[1], dtype=float)
    auc = E.roc_auc(y, s)
    assert auc == pytest.approx(brute_auc(y, s), abs=1e-12)
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert auc == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(labels_scores)
def test_pr_auc_matches_threshold_sweep(data: tuple[list[int], list[int]]) -> None:
    y, s = np.array(data[0]), np.array(data[1], dtype=float)
    assert E.pr_auc(y, s) == pytest.approx(brute_average_precision(y, s), abs=1e-12)


def test_auc_hand_cases() -> None:
    assert E.roc_auc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    assert E.roc_auc([1, 1, 0, 0], [1, 2, 3, 4]) == 0.0
    assert E.roc_auc([0, 1], [3, 3]) == 0.5
    assert E.pr_auc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    # Ranking 1 0 1: precision 1 at recall .5, 2/3 at recall 1.
    assert E.pr_auc([1, 0, 1], [3, 2, 1]) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="positive and one negative"):
        E.roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 / 1"):
        E.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        E.roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="shape"):
        E.brier_score([0, 1], [0.1])
    with pytest.raises(ValueError, match="probabilities"):
        E.reliability_table([0, 1], [0.1, 1.5])


def test_brier_hand_case() -> None:
    assert E.brier_score([1, 0, 1], [1.0, 0.5, 0.0]) == pytest.approx((0 + 0.25 + 1) / 3)


def test_gains_table_sums_and_monotone_gain() -> None:
    rng = np.random.default_rng(1)
    s = rng.random(1003)
    y = (rng.random(1003) < s).astype(int)
    t = E.gains_table(y, s)
    assert t.count.sum() == 1003 and t.count.max() - t.count.min() <= 1
    assert t.positives.sum() == y.sum()
    assert t.cum_gain[-1] == pytest.approx(1.0) and np.all(np.diff(t.cum_gain) >= 0)
    assert t.cum_lift[-1] == pytest.approx(1.0)
    # An informative score puts more positives at the top than at the bottom.
    assert t.lift[0] > 1.5 > 0.5 > t.lift[-1]
    assert np.all(np.diff(t.min_score) <= 0)


def test_reliability_table_hand_case_and_perfect_calibration() -> None:
    t = E.reliability_table([0, 0, 1, 1, 1], [0.0, 0.2, 0.6, 0.8, 1.0], n_bins=2)
    assert t.count.tolist() == [2, 3]
    assert t.mean_predicted.tolist() == pytest.approx([0.1, 0.8])
    assert t.observed_rate.tolist() == [0.0, 1.0]
    assert t.ece == pytest.approx((2 * 0.1 + 3 * 0.2) / 5)
    rng = np.random.default_rng(2)
    p = rng.random(200_000)
    y = rng.random(200_000) < p
    assert E.expected_calibration_error(y, p) < 0.01
    assert E.expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.1


def test_uplift_and_qini_hand_case() -> None:
    # Top two: one treated responder, one control non-responder -> uplift 1; bottom: none respond.
    y = [1, 0, 0, 0]
    t = [1, 0, 1, 0]
    table = E.uplift_by_decile(y, t, [4, 3, 2, 1], n_groups=2)
    assert table.n_treated.tolist() == [1, 1] and table.n_control.tolist() == [1, 1]
    assert table.uplift.tolist() == [1.0, 0.0]
    x, q = E.qini_curve(y, t, [4, 3, 2, 1])
    assert x.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert q[-1] == pytest.approx(0.25)  # overall: 1/2 treated respond, 0/2 control
    # Reversing the ranking puts the persuadable profile last: negative coefficient.
    assert E.qini_coefficient(y, t, [1, 2, 3, 4]) < 0 < E.qini_coefficient(y, t, [4, 3, 2, 1])


def test_qini_separates_uplift_score_from_random() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    persuadable = rng.random(n)
    treated = rng.random(n) < 0.5
    y = rng.random(n) < 0.1 + 0.3 * persuadable * treated
    good = E.qini_coefficient(y, treated, persuadable)
    random = E.qini_coefficient(y, treated, rng.random(n))
    # Analytically 0.15 (1/2 - 1/6) - 0.075 / 2 = 0.0125 for this design.
    assert good == pytest.approx(0.0125, abs=0.003) and abs(random) < 0.004
    table = E.uplift_by_decile(y, treated, persuadable)
    assert table.uplift[0] > table.uplift[-1] + 0.2
