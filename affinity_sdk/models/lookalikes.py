"""Lookalikes: profiles ranked by similarity to a seed list (the arithmetic behind
:meth:`AffinityModel.lookalikes <affinity_sdk.models.affinity.AffinityModel.lookalikes>`).

Each profile is a vector of blocks: per dimension (category, brand, price band) the IDF-weighted
shares :math:`s_{uv} / \\sqrt{P_v}`, plus a standardised behaviour block (event-type mix, activity
level and discount sensitivity), each block L2-normalised; profiles are scored by cosine
similarity to the centroid of the seeds' vectors. Only visible profiles (consenting, not
forgotten) take part: hidden ones are neither seeds nor candidates, and the behaviour block is
standardised over visible profiles only.

The functions here expect the caller (the model) to hold the store's lock and to have synced the
view with the store's visibility (``view.cache_mask``).

Examples
--------
>>> codes, scores = top_lookalikes(np.array([0.1, 0.9, 0.5]), np.array([0]), np.ones(3, bool), 5)
>>> codes.tolist(), scores.tolist()
([1, 2], [0.9, 0.5])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.profile.affinity_view import DIMENSIONS, Dimension

if TYPE_CHECKING:
    from affinity_sdk.models.affinity import AffinityModel

__all__ = ["behaviour_block", "feature_block", "lookalike_scores", "top_lookalikes"]


def behaviour_block(model: AffinityModel, now: int) -> NDArray[np.float64]:
    """Per profile: standardised event-type mix, log activity and log discount sensitivity
    (rows of hidden profiles are 0; mean and spread come from visible profiles)."""
    view = model.view
    n = view.n_profiles
    key = ("behaviour", now, n)
    if key not in view.cache:
        factors = view.factors(view.activity_lam, now)
        activity = view.activity[:, 2:] * factors[2:]
        total = activity.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mix = np.where(total[:, None] > 0, activity / total[:, None], 0.0)
        sens = model.discount_sensitivity(now).sensitivity
        raw = np.column_stack([mix, np.log1p(total), np.log(np.clip(sens, 1e-3, 1e3))])
        visible = view.cache_mask
        assert visible is not None  # the model synced
        rows = raw if view.cache_all_visible else raw[visible]
        z = np.zeros_like(raw)
        if rows.shape[0]:
            std = rows.std(axis=0)
            z = (raw - rows.mean(axis=0)) / np.where(std > 0, std, 1.0)
            if not view.cache_all_visible:
                z[~visible] = 0.0
        view.cache[key] = np.ascontiguousarray(z)
    result: NDArray[np.float64] = view.cache[key]
    return result


def feature_block(model: AffinityModel, dimension: Dimension, now: int) -> NDArray[np.float64]:
    """Per stored entry of ``dimension``'s scores: the profile's share over ``sqrt(P_v)``."""
    view = model.view
    key = ("features", dimension, now, view.n_profiles)
    if key not in view.cache:
        s = model.scores(dimension, now)
        rows = np.repeat(np.arange(s.n_profiles), np.diff(s.indptr))
        totals = np.bincount(rows, weights=s.decayed, minlength=s.n_profiles)
        share = s.population_share[s.cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(share > 0, s.decayed / totals[rows] / np.sqrt(share), 0.0)
        view.cache[key] = np.ascontiguousarray(x)
    result: NDArray[np.float64] = view.cache[key]
    return result


def lookalike_scores(
    model: AffinityModel, seeds: NDArray[np.int64], now: int, behaviour_weight: float
) -> NDArray[np.float64]:
    """Cosine similarity of every profile to the centroid of ``seeds`` (sorted, unique, visible
    profile codes); 0 for every profile when there are no seeds."""
    view = model.view
    impl = view.impl
    n = view.n_profiles
    dot = np.zeros(n)
    sq_total = np.zeros(n)
    centroid_sq = 0.0
    if seeds.shape[0] == 0:
        return dot
    for dimension in DIMENSIONS:
        s = model.scores(dimension, now)
        x = feature_block(model, dimension, now)
        # the seeds' rows, gathered without a Python loop over seeds
        counts = np.diff(s.indptr)[seeds]
        entries = np.repeat(s.indptr[seeds] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        owner = np.repeat(np.arange(seeds.shape[0]), counts)
        seed_norms = np.sqrt(np.bincount(owner, weights=x[entries] ** 2, minlength=seeds.shape[0]))
        seed_x = x[entries]
        unit = np.divide(seed_x, seed_norms[owner], out=np.zeros_like(seed_x), where=seed_norms[owner] > 0)
        centroid: NDArray[np.float64] = np.bincount(
            s.cols[entries], weights=unit, minlength=s.population_share.shape[0]
        ).astype(np.float64)
        centroid /= seeds.shape[0]
        block_dot = np.zeros(n)
        block_sq = np.zeros(n)
        impl.csr_dot(s.indptr, s.cols, x, centroid, block_dot, block_sq)
        with np.errstate(divide="ignore", invalid="ignore"):
            dot += np.where(block_sq > 0, block_dot / np.sqrt(block_sq), 0.0)
        sq_total += block_sq > 0
        centroid_sq += float(centroid @ centroid)
    if behaviour_weight > 0:
        z = behaviour_block(model, now)
        z_norm = np.sqrt((z * z).sum(axis=1))
        unit = np.divide(z, z_norm[:, None], out=np.zeros_like(z), where=z_norm[:, None] > 0)
        centroid_b = behaviour_weight * unit[seeds].mean(axis=0)
        dot += behaviour_weight * (unit @ centroid_b)
        sq_total += behaviour_weight**2 * (z_norm > 0)
        centroid_sq += float(centroid_b @ centroid_b)
    denominator = np.sqrt(sq_total * centroid_sq)
    return np.divide(dot, denominator, out=np.zeros(n), where=denominator > 0)


def top_lookalikes(
    scores: NDArray[np.float64], seeds: NDArray[np.int64], visible: NDArray[np.bool_], n: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Codes and scores of the ``n`` best candidates (visible, not seeds), best first, ties by
    code."""
    candidates = visible.copy()
    candidates[seeds] = False
    n = max(0, min(n, int(candidates.sum())))
    ranked = np.where(candidates, scores, -np.inf)
    if 0 < n < ranked.shape[0]:
        top = np.argpartition(-ranked, n - 1)[:n]
    else:
        top = np.flatnonzero(candidates)[:n]
    top = top[np.lexsort((top, -ranked[top]))]
    return top.astype(np.int64), scores[top]
