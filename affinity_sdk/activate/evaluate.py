"""Evaluation of propensity scores: ranking, calibration and uplift metrics, vectorized numpy.

Every function takes plain arrays: ``y`` (0/1 outcomes), ``score`` (any real score where higher
means more likely; probabilities for the calibration metrics) and, for experiments, ``treatment``
(1 = treated, 0 = control). Ties in ``score`` are handled the way the standard definitions say:
tied profiles enter a curve together, never in an arbitrary order.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1])
>>> score = np.array([0.1, 0.4, 0.35, 0.8])
>>> roc_auc(y, score), round(pr_auc(y, score), 4), brier_score(y, np.array([0.0, 0.0, 1.0, 1.0]))
(0.75, 0.8333, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

__all__ = [
    "DecileTable",
    "ReliabilityTable",
    "UpliftTable",
    "brier_score",
    "expected_calibration_error",
    "gains_table",
    "pr_auc",
    "qini_coefficient",
    "qini_curve",
    "reliability_table",
    "roc_auc",
    "uplift_by_decile",
]


def _outcomes(y: ArrayLike, name: str = "y") -> NDArray[np.float64]:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (got shape {arr.shape})")
    if arr.dtype != np.bool_ and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must hold only 0 / 1 (or booleans)")
    return arr.astype(np.float64)


def _scores(score: ArrayLike, n: int, name: str = "score") -> NDArray[np.float64]:
    arr = np.asarray(score, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like y (got {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return arr


def _both_classes(y: NDArray[np.float64]) -> tuple[float, float]:
    n_pos = float(y.sum())
    n_neg = float(y.shape[0]) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the metric needs at least one positive and one negative outcome")
    return n_pos, n_neg


def _descending_groups(score: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Order by score, highest first, and the last index of each run of tied scores."""
    order = np.argsort(-score, kind="stable")
    ordered = score[order]
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
    return order, ends


def roc_auc(y: ArrayLike, score: ArrayLike) -> float:
    r"""Area under the ROC curve: the chance a random positive outscores a random negative.

    .. math:: \mathrm{AUC} = \frac{\sum_{i: y_i = 1} \mathrm{rank}_i - n_1 (n_1 + 1) / 2}{n_1 n_0}

    with mid-ranks for ties (a tie counts one half), i.e. the Mann-Whitney U over :math:`n_1 n_0`.

    Examples
    --------
    >>> roc_auc([0, 1, 0, 1], [0.2, 0.9, 0.5, 0.5])
    0.875
    """
    yy = _outcomes(y)
    s = _scores(score, yy.shape[0])
    n_pos, n_neg = _both_classes(yy)
    ranks = rankdata(s, method="average")
    return float((ranks @ yy - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))


def pr_auc(y: ArrayLike, score: ArrayLike) -> float:
    r"""Area under the precision-recall curve as *average precision* (step interpolation).

    .. math:: \mathrm{AP} = \sum_k (R_k - R_{k-1}) P_k

    over the distinct score thresholds, highest first; a random score gives about the positive
    rate, a perfect one gives 1.

    Examples
    --------
    >>> pr_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    0.8333333333333333
    """
    yy = _outcomes(y)
    s = _scores(score, yy.shape[0])
    n_pos, _ = _both_classes(yy)
    order, ends = _descending_groups(s)
    tp = np.cumsum(yy[order])[ends]
    precision = tp / (ends + 1.0)
    recall_step = np.diff(np.r_[0.0, tp]) / n_pos
    return float(recall_step @ precision)


def brier_score(y: ArrayLike, p: ArrayLike) -> float:
    r"""Mean squared error of probabilities, :math:`\frac1n \sum (p_i - y_i)^2` (lower is better).

    Examples
    --------
    >>> brier_score([1, 0], [0.8, 0.4])
    0.1
    """
    yy = _outcomes(y)
    pp = _scores(p, yy.shape[0], "p")
    return float(np.mean((pp - yy) ** 2))


@dataclass(frozen=True)
class DecileTable:
    """Lift and cumulative gains by score group (group 0 holds the highest scores).

    ``lift`` is each group's response rate over the overall rate; ``cum_gain`` the share of all
    positives captured by the groups up to and including this one; ``cum_lift`` the lift of the
    top groups taken together.
    """

    count: NDArray[np.int64]
    positives: NDArray[np.float64]
    rate: NDArray[np.float64]
    lift: NDArray[np.float64]
    cum_gain: NDArray[np.float64]
    cum_lift: NDArray[np.float64]
    min_score: NDArray[np.float64]


def _group_of_rank(n: int, n_groups: int) -> NDArray[np.int64]:
    if n_groups < 1 or n < n_groups:
        raise ValueError(f"need 1 <= n_groups <= n (got n_groups={n_groups}, n={n})")
    return (np.arange(n, dtype=np.int64) * n_groups) // n


def gains_table(y: ArrayLike, score: ArrayLike, n_groups: int = 10) -> DecileTable:
    """Lift and cumulative gains by decile (or ``n_groups`` equal-sized groups) of descending score.

    Profiles are ranked by score, highest first (ties in input order), and cut into groups whose
    sizes differ by at most one.

    Examples
    --------
    >>> t = gains_table([1, 1, 0, 0, 1, 0, 0, 0, 0, 0], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], n_groups=5)
    >>> t.lift.round(3).tolist(), t.cum_gain.round(3).tolist()
    ([3.333, 0.0, 1.667, 0.0, 0.0], [0.667, 0.667, 1.0, 1.0, 1.0])
    """
    yy = _outcomes(y)
    s = _scores(score, yy.shape[0])
    n = yy.shape[0]
    group = _group_of_rank(n, n_groups)
    order = np.argsort(-s, kind="stable")
    count = np.bincount(group, minlength=n_groups).astype(np.int64)
    positives = np.bincount(group, weights=yy[order], minlength=n_groups).astype(np.float64)
    min_score = np.full(n_groups, np.inf)
    np.minimum.at(min_score, group, s[order])
    overall = yy.sum() / n
    rate = positives / count
    total = max(float(yy.sum()), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = rate / overall
        cum_lift = (np.cumsum(positives) / np.cumsum(count)) / overall
    return DecileTable(
        count=count,
        positives=positives,
        rate=rate,
        lift=lift,
        cum_gain=np.cumsum(positives) / total,
        cum_lift=cum_lift,
        min_score=min_score,
    )


@dataclass(frozen=True)
class ReliabilityTable:
    """Calibration by probability bin: mean predicted vs observed rate (empty bins dropped)."""

    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    count: NDArray[np.int64]
    mean_predicted: NDArray[np.float64]
    observed_rate: NDArray[np.float64]

    @property
    def ece(self) -> float:
        """Expected calibration error: count-weighted mean of ``|observed - predicted|``."""
        gap = np.abs(self.observed_rate - self.mean_predicted)
        return float((self.count @ gap) / max(int(self.count.sum()), 1))


def reliability_table(
    y: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: Literal["uniform", "quantile"] = "uniform"
) -> ReliabilityTable:
    """Reliability (calibration) table with ``n_bins`` bins of equal width or equal count.

    Examples
    --------
    >>> t = reliability_table([0, 1, 1, 1], [0.1, 0.3, 0.9, 0.7], n_bins=2)
    >>> t.count.tolist(), t.mean_predicted.tolist(), t.observed_rate.tolist(), round(t.ece, 3)
    ([2, 2], [0.2, 0.8], [0.5, 1.0], 0.25)
    """
    yy = _outcomes(y)
    pp = _scores(p, yy.shape[0], "p")
    if np.any((pp < 0) | (pp > 1)):
        raise ValueError("p must be probabilities in [0, 1]")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1 (got {n_bins})")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        inner = np.quantile(pp, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
        edges = np.unique(np.r_[0.0, inner, 1.0])
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile' (got {strategy!r})")
    k = edges.shape[0] - 1
    # Right-closed bins except the first, so p = 1 lands in the top bin and p = 0 in the bottom one.
    idx = np.clip(np.searchsorted(edges, pp, side="left") - 1, 0, k - 1)
    count = np.bincount(idx, minlength=k).astype(np.int64)
    sum_p = np.bincount(idx, weights=pp, minlength=k)
    sum_y = np.bincount(idx, weights=yy, minlength=k)
    keep = count > 0
    return ReliabilityTable(
        lower=edges[:-1][keep],
        upper=edges[1:][keep],
        count=count[keep],
        mean_predicted=sum_p[keep] / count[keep],
        observed_rate=sum_y[keep] / count[keep],
    )


def expected_calibration_error(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-count bins (see :class:`ReliabilityTable`).

    Examples
    --------
    >>> expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], n_bins=1)
    0.0
    """
    return reliability_table(y, p, n_bins=n_bins, strategy="quantile").ece


@dataclass(frozen=True)
class UpliftTable:
    """Treated minus control response rate by decile of descending score (group 0 = top)."""

    n_treated: NDArray[np.int64]
    n_control: NDArray[np.int64]
    rate_treated: NDArray[np.float64]
    rate_control: NDArray[np.float64]
    uplift: NDArray[np.float64]


def _treatment(treatment: ArrayLike, n: int) -> NDArray[np.float64]:
    t = _outcomes(treatment, "treatment")
    if t.shape[0] != n:
        raise ValueError(f"treatment must have shape ({n},) like y (got {t.shape})")
    return t


def uplift_by_decile(y: ArrayLike, treatment: ArrayLike, score: ArrayLike, n_groups: int = 10) -> UpliftTable:
    """Observed uplift (treated rate minus control rate) per score group; NaN where a group has no
    treated or no control profiles.

    Examples
    --------
    >>> t = uplift_by_decile([1, 0, 0, 0], [1, 0, 1, 0], [4, 3, 2, 1], n_groups=2)
    >>> t.uplift.tolist()
    [1.0, 0.0]
    """
    yy = _outcomes(y)
    tt = _treatment(treatment, yy.shape[0])
    s = _scores(score, yy.shape[0])
    group = _group_of_rank(yy.shape[0], n_groups)
    order = np.argsort(-s, kind="stable")
    yo, to = yy[order], tt[order]
    n_t = np.bincount(group, weights=to, minlength=n_groups)
    n_c = np.bincount(group, weights=1.0 - to, minlength=n_groups)
    y_t = np.bincount(group, weights=yo * to, minlength=n_groups)
    y_c = np.bincount(group, weights=yo * (1.0 - to), minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_t = np.where(n_t > 0, y_t / n_t, np.nan)
        rate_c = np.where(n_c > 0, y_c / n_c, np.nan)
    return UpliftTable(
        n_treated=n_t.astype(np.int64),
        n_control=n_c.astype(np.int64),
        rate_treated=rate_t,
        rate_control=rate_c,
        uplift=rate_t - rate_c,
    )


def qini_curve(
    y: ArrayLike, treatment: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""The Qini curve at each distinct score threshold, highest first, starting at (0, 0).

    .. math:: Q(k) = Y_T(k) - Y_C(k) \, \frac{N_T(k)}{N_C(k)}

    where :math:`Y_T(k), N_T(k)` are responders and counts among treated profiles in the top
    :math:`k` (likewise :math:`C` for control; the control term is 0 while :math:`N_C(k) = 0`).
    Returns ``(fraction targeted, Q / n)``: incremental responders as a share of the population.

    Examples
    --------
    >>> x, q = qini_curve([1, 0, 0, 0], [1, 0, 1, 0], [4, 3, 2, 1])
    >>> x.tolist(), q.tolist()
    ([0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 0.25, 0.25, 0.25, 0.25])
    """
    yy = _outcomes(y)
    tt = _treatment(treatment, yy.shape[0])
    s = _scores(score, yy.shape[0])
    n = yy.shape[0]
    order, ends = _descending_groups(s)
    yo, to = yy[order], tt[order]
    n_t = np.cumsum(to)[ends]
    n_c = np.cumsum(1.0 - to)[ends]
    y_t = np.cumsum(yo * to)[ends]
    y_c = np.cumsum(yo * (1.0 - to))[ends]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = y_t - np.where(n_c > 0, y_c * n_t / n_c, 0.0)
    return np.r_[0.0, (ends + 1.0) / n], np.r_[0.0, q / n]


def qini_coefficient(y: ArrayLike, treatment: ArrayLike, score: ArrayLike) -> float:
    """Area between the Qini curve and the random-targeting diagonal (trapezoids, x in [0, 1]).

    Positive when the score puts persuadable profiles first, about 0 for a random score, negative
    when it ranks them last. In units of incremental responders per profile.

    Examples
    --------
    >>> qini_coefficient([1, 0, 0, 0], [1, 0, 1, 0], [4, 3, 2, 1])
    0.09375
    """
    x, q = qini_curve(y, treatment, score)
    random = x * q[-1]
    gap = q - random
    return float(np.sum((gap[1:] + gap[:-1]) * np.diff(x)) / 2.0)
