"""Reference kernels in plain numpy: slow, obvious, and the oracle the fast backends must match.

Every function here has a twin with the same name and signature in ``_numba.py`` and in the C++
extension (``csrc/``). Outputs are passed in (``out``) so no backend allocates behind the caller.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "accumulate",
    "assign_tiers",
    "decayed",
    "merge",
    "quantile_cutoffs",
    "raw_scores",
    "rebase",
    "score_tiers",
    "scores_100",
    "topk_csr",
    "topk_rows",
]


def accumulate(
    acc: NDArray[np.float64],
    records: NDArray[np.void],
    users: NDArray[np.int64],
    signals: NDArray[np.int64],
    ts_ms: NDArray[np.int64],
    values: NDArray[np.float64],
    landmark_ms: int,
    lam_per_ms: NDArray[np.float64],
) -> None:
    r"""Fold events into ``acc[users, signals]`` and ``records[users, signals]`` in place.

    .. math:: A_{us} \mathrel{+}= v\, e^{\lambda_s (t - L)},\quad N_{us} \mathrel{+}= 1,\quad
              T_{us} \mathrel{+}= v,\quad F_{us} = \min(F_{us}, t),\quad
              Z_{us} = \max(Z_{us}, t)

    The exponent is taken as 0 when ``t == L`` so that a zero half-life (``λ = inf``) is exact.
    A profile or signal code outside the state's shape raises ValueError before anything changes.
    """
    n_profiles, n_signals = acc.shape
    if records.shape != acc.shape:
        raise ValueError(f"Expected `records` of the shape of `acc` {acc.shape}, got {records.shape}")
    bad = np.flatnonzero((users < 0) | (users >= n_profiles) | (signals < 0) | (signals >= n_signals))
    if bad.shape[0]:
        i = int(bad[0])
        raise ValueError(
            f"event {i} has profile {users[i]} / signal {signals[i]} outside the state's "
            f"{n_profiles} x {n_signals} records"
        )
    lam = lam_per_ms[signals]
    dt = (ts_ms - landmark_ms).astype(np.float64)
    # inf * 0 and exp overflow are defined outcomes here (NaN, inf), not something to warn about.
    with np.errstate(invalid="ignore", over="ignore"):
        exponent = np.where(dt == 0.0, 0.0, lam * dt)
        contribution = values * np.exp(exponent)
    cell = (users, signals)
    np.add.at(acc, cell, contribution)
    np.add.at(records["total"], cell, values)
    np.add.at(records["count"], cell, 1)
    np.minimum.at(records["first_ms"], cell, ts_ms)
    np.maximum.at(records["last_ms"], cell, ts_ms)


def rebase(acc: NDArray[np.float64], factors: NDArray[np.float64]) -> None:
    r"""Move the landmark: :math:`A_{us} \mathrel{*}= f_s`, :math:`f_s = e^{-\lambda_s \Delta L}`."""
    acc *= factors[np.newaxis, :]


def merge(
    into_acc: NDArray[np.float64],
    into: NDArray[np.void],
    other_acc: NDArray[np.float64],
    other: NDArray[np.void],
) -> None:
    """Add ``other`` into ``into`` (same shape, same landmark): sums, min of first, max of last."""
    into_acc += other_acc
    into["total"] += other["total"]
    into["count"] += other["count"]
    np.minimum(into["first_ms"], other["first_ms"], out=into["first_ms"])
    np.maximum(into["last_ms"], other["last_ms"], out=into["last_ms"])


def decayed(acc: NDArray[np.float64], factors: NDArray[np.float64], out: NDArray[np.float64]) -> None:
    r"""Decayed values at now: :math:`D_{us} = A_{us} f_s`, :math:`f_s = e^{-\lambda_s (now - L)}`."""
    np.multiply(acc, factors[np.newaxis, :], out=out)


def raw_scores(
    acc: NDArray[np.float64], coefs: NDArray[np.float64], out: NDArray[np.float64], threads: int = 1
) -> None:
    r"""Composite raw score :math:`R_u = \sum_s c_s A_{us}` with :math:`c_s = w_s f_s`
    (``threads`` is for the compiled backend; numpy runs as it is built)."""
    np.dot(acc, coefs, out=out)


def scores_100(raw: NDArray[np.float64], half_point: float, out: NDArray[np.float64]) -> None:
    r"""0-100 score :math:`S_u = 100\, r / (r + h)`, :math:`r = \max(R_u, 0)`; ``+inf`` gives 100.

    ``h`` (the half point) is the raw score that maps to 50; NaN stays NaN.
    """
    r = np.where(raw < 0.0, 0.0, raw)
    with np.errstate(invalid="ignore"):
        np.divide(100.0 * r, r + half_point, out=out)
    out[r == np.inf] = 100.0


def quantile_cutoffs(values: NDArray[np.float64], fractions: NDArray[np.float64]) -> NDArray[np.float64]:
    r"""For each fraction ``q``, the value ``v`` such that values ``>= v`` are the top ``1 - q``.

    With ``n`` values sorted descending, :math:`v_{(1)} \ge \dots \ge v_{(n)}`, the cut-off for
    ``q`` is :math:`v_{(k)}`, :math:`k = \max(1, \lceil n (1 - q) \rceil)`; ``q >= 1`` gives ``+inf``
    (nobody), an empty ``values`` gives ``+inf``. Ties at the cut-off all pass it.
    """
    out = np.full(fractions.shape[0], np.inf)
    n = values.shape[0]
    if n == 0:
        return out
    ordered = np.sort(values)[::-1]
    for i, q in enumerate(fractions):
        if q >= 1.0:
            continue
        k = max(1, int(np.ceil(n * (1.0 - q) - 1e-9)))
        out[i] = ordered[min(k, n) - 1]
    return out


def assign_tiers(
    values: NDArray[np.float64],
    cut_up: NDArray[np.float64],
    cut_down: NDArray[np.float64],
    previous: NDArray[np.int8],
    out: NDArray[np.int8],
) -> None:
    """Tier codes (0 low, 1 medium, 2 high) with hysteresis against ``previous`` (-1 = none).

    ``cut_up[t]`` / ``cut_down[t]`` (t = 0 medium, 1 high) are the thresholds to *enter* tier ``t``
    from below and to *stay* in it (or drop into it) from above; without hysteresis they are equal.
    A value must also be ``> 0`` to leave Low: a profile with no decayed activity is Low.
    """
    out[:] = 0
    positive = values > 0.0
    for code in (1, 2):
        t = code - 1
        threshold = np.where(previous >= code, cut_down[t], cut_up[t])
        out[(values >= threshold) & positive] = code


def topk_rows(
    matrix: NDArray[np.float64],
    k: int,
    out_index: NDArray[np.int64],
    out_value: NDArray[np.float64],
) -> None:
    """Per row, the ``k`` largest entries (descending; ties by lower column), NaN treated as -inf.

    Rows with fewer than ``k`` columns pad ``out_index`` with -1 and ``out_value`` with NaN.
    """
    n, m = matrix.shape
    out_index[:] = -1
    out_value[:] = np.nan
    kk = min(k, m)
    if kk == 0 or n == 0:
        return
    keyed = np.where(np.isnan(matrix), -np.inf, matrix)
    order = np.argsort(-keyed, axis=1, kind="stable")[:, :kk]
    out_index[:, :kk] = order
    out_value[:, :kk] = np.take_along_axis(matrix, order, axis=1)


def score_tiers(
    raw: NDArray[np.float64],
    half_point: float,
    fractions: NDArray[np.float64],
    margins: NDArray[np.float64],
    previous: NDArray[np.int8] | None,
    out_score: NDArray[np.float64],
    out_tier: NDArray[np.int8],
    out_cut: NDArray[np.float64],
    threads: int = 1,
) -> None:
    """Raw scores to 0-100 scores (:func:`scores_100`), their quantile cut-offs for ``fractions``
    (medium, high) into ``out_cut``, then tiers entering at ``out_cut`` and staying at
    ``out_cut - margins`` (:func:`assign_tiers`); ``previous`` None: no tiers before (``threads``
    is for the compiled backend)."""
    if previous is None:
        previous = np.full(raw.shape[0], -1, dtype=np.int8)
    scores_100(raw, half_point, out_score)
    out_cut[:] = quantile_cutoffs(out_score, fractions)
    assign_tiers(out_score, out_cut, out_cut - margins, previous, out_tier)


def topk_csr(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int64],
    data: NDArray[np.float64],
    k: int,
    out_index: NDArray[np.int64],
    out_value: NDArray[np.float64],
) -> None:
    """Per CSR row, the columns and values of the ``k`` largest stored entries (descending; ties
    by lower column; NaN ranks as -inf), padded with -1 / NaN like :func:`topk_rows`."""
    out_index[:] = -1
    out_value[:] = np.nan
    for r in range(indptr.shape[0] - 1):
        cols = indices[indptr[r] : indptr[r + 1]]
        vals = data[indptr[r] : indptr[r + 1]]
        keyed = np.where(np.isnan(vals), -np.inf, vals)
        order = np.lexsort((cols, -keyed))[:k]
        out_index[r, : order.shape[0]] = cols[order]
        out_value[r, : order.shape[0]] = vals[order]
