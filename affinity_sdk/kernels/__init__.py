"""The kernel interface: one function per operation, a ``backend`` argument picks the engine.

Backends are ``"reference"`` (numpy, the oracle), ``"numba"`` and ``"cpp"`` (the compiled
``affinity_sdk._native`` extension); see :mod:`affinity_sdk._backends`. All of them write into
caller-provided outputs and give the same numbers (checked by the parity tests).

Examples
--------
>>> import numpy as np
>>> from affinity_sdk.kernels import quantile_cutoffs
>>> quantile_cutoffs(np.arange(10.0), np.array([0.9, 0.6]), backend="reference").tolist()
[9.0, 6.0]
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import BackendName, native, resolve_backend
from affinity_sdk.errors import ConfigError

from . import _reference
from ._layout import (
    REBASE_EXPONENT,
    SAVED_STATE_DTYPE,
    STATE_DTYPE,
    empty_records,
    join_state,
    reset_records,
    split_state,
)
from .protocol import Kernels

__all__ = [
    "REBASE_EXPONENT",
    "SAVED_STATE_DTYPE",
    "STATE_DTYPE",
    "accumulate",
    "assign_tiers",
    "decay_factors",
    "decayed",
    "empty_records",
    "join_state",
    "merge",
    "quantile_cutoffs",
    "raw_scores",
    "rebase",
    "reset_records",
    "score_tiers",
    "scores_100",
    "split_state",
    "topk_csr",
    "topk_rows",
]


def _impl(backend: str | None) -> Kernels:
    name: BackendName = resolve_backend(backend)
    if name == "reference":
        return _reference
    if name == "numba":
        from . import _numba

        return _numba
    module: ModuleType | None = native()
    assert module is not None  # resolve_backend checked it
    return module


def decay_factors(lam_per_ms: NDArray[np.float64], delta_ms: int) -> NDArray[np.float64]:
    r"""Per-signal factor :math:`e^{-\lambda_s \Delta}`, exactly 1 when ``delta_ms == 0``.

    Taking the exponent as 0 at ``Δ = 0`` keeps a zero half-life (``λ = inf``) well defined.

    Examples
    --------
    >>> decay_factors(np.array([np.log(2) / 1000.0, np.inf, 0.0]), 1000).tolist()
    [0.5, 0.0, 1.0]
    """
    if delta_ms == 0:
        return np.ones_like(lam_per_ms)
    with np.errstate(over="ignore"):
        return np.exp(-lam_per_ms * float(delta_ms))


def accumulate(
    acc: NDArray[np.float64],
    records: NDArray[np.void],
    users: NDArray[np.int64],
    signals: NDArray[np.int64],
    ts_ms: NDArray[np.int64],
    values: NDArray[np.float64],
    landmark_ms: int,
    lam_per_ms: NDArray[np.float64],
    *,
    backend: str | None = None,
) -> None:
    """Fold events into the state ``(acc, records)`` in place (see :func:`._reference.accumulate`).

    Examples
    --------
    >>> acc, records = np.zeros((1, 1)), empty_records(1, 1)
    >>> one = np.zeros(1, dtype=np.int64)
    >>> accumulate(acc, records, one, one, one, np.ones(1), 0, np.ones(1), backend="reference")
    >>> acc.tolist(), records["count"].tolist()
    ([[1.0]], [[1]])
    """
    _impl(backend).accumulate(acc, records, users, signals, ts_ms, values, landmark_ms, lam_per_ms)


def rebase(acc: NDArray[np.float64], factors: NDArray[np.float64], *, backend: str | None = None) -> None:
    """Multiply each signal's accumulator by its factor (a landmark move)."""
    _impl(backend).rebase(acc, factors)


def merge(
    into_acc: NDArray[np.float64],
    into: NDArray[np.void],
    other_acc: NDArray[np.float64],
    other: NDArray[np.void],
    *,
    backend: str | None = None,
) -> None:
    """Add the state ``(other_acc, other)`` into ``(into_acc, into)`` (same landmark, same shape)."""
    _impl(backend).merge(into_acc, into, other_acc, other)


def decayed(
    acc: NDArray[np.float64],
    factors: NDArray[np.float64],
    out: NDArray[np.float64] | None = None,
    *,
    backend: str | None = None,
) -> NDArray[np.float64]:
    """Decayed value per (profile, signal) given :func:`decay_factors` from the landmark to now."""
    if out is None:
        out = np.empty(acc.shape, dtype=np.float64)
    _impl(backend).decayed(acc, factors, out)
    return out


def raw_scores(
    acc: NDArray[np.float64],
    coefs: NDArray[np.float64],
    out: NDArray[np.float64] | None = None,
    *,
    threads: int = 1,
    backend: str | None = None,
) -> NDArray[np.float64]:
    """Composite raw score per profile, ``coefs = weights * decay_factors``.

    ``threads`` splits the profiles over that many threads in the C++ backend (the other
    backends run on one); each profile's sum is taken in the same order whatever the split, so
    the result is bit-identical for any count.

    Examples
    --------
    >>> raw_scores(np.array([[1.0, 2.0]]), np.array([3.0, 0.5]), backend="reference").tolist()
    [4.0]
    """
    if threads < 1:
        raise ConfigError(f"threads must be >= 1 (got {threads})")
    if out is None:
        out = np.empty(acc.shape[0], dtype=np.float64)
    _impl(backend).raw_scores(acc, coefs, out, threads)
    return out


def scores_100(
    raw: NDArray[np.float64],
    half_point: float,
    out: NDArray[np.float64] | None = None,
    *,
    backend: str | None = None,
) -> NDArray[np.float64]:
    r"""0-100 score per profile from its raw score.

    .. math:: S_u = 100\, \frac{r}{r + h},\quad r = \max(R_u, 0)

    ``h = half_point > 0`` is the raw score that maps to 50; ``+inf`` maps to 100, NaN stays NaN.

    Examples
    --------
    >>> scores_100(np.array([0.0, 2.0, 6.0, -1.0]), 2.0, backend="reference").tolist()
    [0.0, 50.0, 75.0, 0.0]
    """
    if not half_point > 0.0:
        raise ValueError(f"half_point must be > 0 (got {half_point})")
    if out is None:
        out = np.empty(raw.shape[0], dtype=np.float64)
    _impl(backend).scores_100(raw, float(half_point), out)
    return out


def score_tiers(
    raw: NDArray[np.float64],
    half_point: float,
    fractions: NDArray[np.float64],
    margins: NDArray[np.float64] | None = None,
    previous: NDArray[np.int8] | None = None,
    *,
    threads: int = 1,
    backend: str | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int8], NDArray[np.float64]]:
    r"""Raw scores to 0-100 scores, quantile cut-offs on them, and tiers, in one call.

    .. math:: S_u = 100\, r / (r + h),\quad c_t = \text{quantile}_{q_t}(S),\quad
              \text{tier}_u = \max\{t : S_u \ge c_t \text{ (or } c_t - m_t
              \text{ if previously} \ge t),\ S_u > 0\}

    ``fractions`` are the (medium, high) quantiles, e.g. ``[0.6, 0.9]``: the top 10 % is High;
    ``margins`` (score points, default 0) is the hysteresis: a profile already in a tier stays
    while its score is at least the cut-off minus the margin; ``previous`` (None: no profile in a
    tier yet) holds the tiers before. Returns ``(scores, tiers, cut_offs)``; tiers are 0 / 1 / 2
    (low / medium / high). The fast backends do this in three O(n) passes (no sort); the C++
    backend runs them on up to ``threads`` threads, with the same result for any count.

    Examples
    --------
    >>> scores, tiers, cuts = score_tiers(np.arange(10.0), 1.0, np.array([0.6, 0.9]), backend="reference")
    >>> tiers.tolist()
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]
    """
    if not half_point > 0.0:
        raise ValueError(f"half_point must be > 0 (got {half_point})")
    if threads < 1:
        raise ConfigError(f"threads must be >= 1 (got {threads})")
    n = raw.shape[0]
    fractions = np.ascontiguousarray(fractions, dtype=np.float64)
    margins = np.zeros(2) if margins is None else np.ascontiguousarray(margins, dtype=np.float64)
    out_score = np.empty(n, dtype=np.float64)
    out_tier = np.empty(n, dtype=np.int8)
    out_cut = np.empty(2, dtype=np.float64)
    _impl(backend).score_tiers(
        raw, float(half_point), fractions, margins, previous, out_score, out_tier, out_cut, threads
    )
    return out_score, out_tier, out_cut


def quantile_cutoffs(
    values: NDArray[np.float64], fractions: NDArray[np.float64], *, backend: str | None = None
) -> NDArray[np.float64]:
    """Cut-off values so that the top ``1 - q`` of ``values`` lie at or above each (O(n))."""
    result: NDArray[np.float64] = _impl(backend).quantile_cutoffs(values, fractions)
    return result


def assign_tiers(
    values: NDArray[np.float64],
    cut_up: NDArray[np.float64],
    cut_down: NDArray[np.float64] | None = None,
    previous: NDArray[np.int8] | None = None,
    out: NDArray[np.int8] | None = None,
    *,
    backend: str | None = None,
) -> NDArray[np.int8]:
    """Tier codes 0 / 1 / 2 (low / medium / high), with hysteresis when ``previous`` is given."""
    if cut_down is None:
        cut_down = cut_up
    if previous is None:
        previous = np.full(values.shape[0], -1, dtype=np.int8)
    if out is None:
        out = np.empty(values.shape[0], dtype=np.int8)
    _impl(backend).assign_tiers(values, cut_up, cut_down, previous, out)
    return out


def topk_rows(
    matrix: NDArray[np.float64], k: int, *, backend: str | None = None
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Column indices and values of each row's ``k`` largest entries, descending."""
    out_index = np.empty((matrix.shape[0], k), dtype=np.int64)
    out_value = np.empty((matrix.shape[0], k), dtype=np.float64)
    _impl(backend).topk_rows(matrix, k, out_index, out_value)
    return out_index, out_value


def topk_csr(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int64],
    data: NDArray[np.float64],
    k: int,
    *,
    backend: str | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per row of a CSR matrix, the columns and values of its ``k`` largest stored entries.

    Descending; ties by lower column; NaN ranks as -inf; rows with fewer than ``k`` stored entries
    are padded with column -1 and value NaN.

    Examples
    --------
    >>> idx, val = topk_csr(np.array([0, 3, 3]), np.array([4, 1, 7]), np.array([0.5, 2.0, 1.0]), 2,
    ...                     backend="reference")
    >>> idx.tolist(), val.tolist()
    ([[1, 7], [-1, -1]], [[2.0, 1.0], [nan, nan]])
    """
    rows = indptr.shape[0] - 1
    out_index = np.empty((rows, k), dtype=np.int64)
    out_value = np.empty((rows, k), dtype=np.float64)
    _impl(backend).topk_csr(indptr, indices, data, k, out_index, out_value)
    return out_index, out_value
