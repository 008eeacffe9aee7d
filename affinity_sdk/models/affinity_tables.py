"""Affinity results as tables: every profile's top values from population totals given apart
(one partition of a Dask job), and the long-format columns the CLI writes.

:func:`top_affinities_from_totals` is the formula and top-k kernel of
:meth:`AffinityModel.top_affinities_all <affinity_sdk.models.affinity.AffinityModel.top_affinities_all>`
for rows that are only part of the population; :func:`affinities_table` and
:func:`lookalikes_table` turn a model's top values and lookalikes into columns
(``affinity affinities ... --out F``, ``affinity lookalikes ... --out F``).

Examples
--------
>>> from affinity_sdk.models.affinity import AffinityModel
>>> affinities_table(AffinityModel(backend="reference"), "category", top=1)
{'user_id': [], 'rank': [], 'value': [], 'affinity': []}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from affinity_sdk._backends import resolve_backend
from affinity_sdk.models.affinity_base import Now
from affinity_sdk.profile.affinity_view import Dimension, _impl

if TYPE_CHECKING:
    from affinity_sdk.models.affinity import AffinityModel

__all__ = ["affinities_table", "lookalikes_table", "top_affinities_from_totals"]


# --- top values from population totals ----------------------------------------------------------
def top_affinities_from_totals(
    indptr: NDArray[np.int64],
    cols: NDArray[np.int64],
    decayed: NDArray[np.float64],
    value_totals: NDArray[np.float64],
    k: int,
    *,
    shrinkage: float,
    backend: str | None = "auto",
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    r"""Each CSR row's ``k`` highest shrunk lifts, the population totals :math:`\sum_u d_{uv}`
    given rather than summed from the rows.

    What :meth:`AffinityModel.top_affinities_all` computes (same formula, same top-k kernel and
    tie-breaking: lower column first) when the rows are only part of the population, e.g. one
    partition of a Dask job with ``value_totals`` reduced over all partitions. Rows hold
    ``decayed`` engagement :math:`d_{uv}` at columns ``cols`` (ascending within a row); returns
    codes (-1 padded) and affinities (NaN padded), shape ``(rows, k)``.

    Examples
    --------
    >>> from affinity_sdk.capture.events import Product, ProductViewed
    >>> from affinity_sdk.ingest.batch import EventBatch
    >>> from affinity_sdk.models.affinity import AffinityModel
    >>> p = [Product(product_id=f"p{i}", category=c, brand="b", price=1.0) for i, c in enumerate("xyx")]
    >>> pairs = [("a", 0), ("a", 1), ("b", 2)]
    >>> events = [ProductViewed(user_id=u, timestamp=0, product=p[i]) for u, i in pairs]
    >>> model = AffinityModel(backend="reference").ingest(EventBatch.from_events(events))
    >>> s = model.scores("category")
    >>> totals = np.bincount(s.cols, weights=s.decayed)
    >>> codes, lift = top_affinities_from_totals(s.indptr, s.cols, s.decayed, totals, 2, shrinkage=5.0)
    >>> bool((codes == model.top_affinities_all("category", 2).codes).all())
    True
    """
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    n_rows = indptr.shape[0] - 1
    totals = np.asarray(value_totals, dtype=np.float64)
    grand = totals.sum()
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    profile = np.bincount(rows, weights=decayed, minlength=n_rows)
    share = totals[cols] / grand if grand > 0 else np.zeros(cols.shape[0])
    expected = profile[rows] * share + shrinkage
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(expected > 0.0, (decayed + shrinkage) / expected, 1.0)
    codes = np.empty((n_rows, k), dtype=np.int64)
    values = np.empty((n_rows, k))
    _impl(resolve_backend(backend)).topk_segments(
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(cols, dtype=np.int64),
        np.ascontiguousarray(lift),
        int(k),
        codes,
        values,
    )
    return codes, values


# --- tables for the CLI -------------------------------------------------------------------------
def affinities_table(
    model: AffinityModel, dimension: Dimension, top: int = 3, now_ms: Now = None
) -> dict[str, list[Any]]:
    """Long-format columns ``user_id, rank, value, affinity`` of every visible profile's top values.

    Profiles without product events are left out. For ``affinity affinities ... --out F``.

    Examples
    --------
    >>> from affinity_sdk.models.affinity import AffinityModel
    >>> affinities_table(AffinityModel(backend="reference"), "brand")
    {'user_id': [], 'rank': [], 'value': [], 'affinity': []}
    """
    with model.store.lock:
        result = model.top_affinities_all(dimension, top, now_ms)
        user_names = model.store.interners.users.names
    users, ranks = np.nonzero(result.codes >= 0)
    codes = result.codes[users, ranks].tolist()
    return {
        "user_id": [user_names[u] for u in users.tolist()],
        "rank": (ranks + 1).tolist(),
        "value": [result.names[c] for c in codes],
        "affinity": result.affinity[users, ranks].tolist(),
    }


def lookalikes_table(
    model: AffinityModel, seed_user_ids: Iterable[str], n: int = 100, *, min_score: float = -1.0
) -> dict[str, list[Any]]:
    """Columns ``user_id, rank, score`` of the ``n`` best lookalikes scoring ``>= min_score``.

    Examples
    --------
    >>> from affinity_sdk.models.affinity import AffinityModel
    >>> lookalikes_table(AffinityModel(backend="reference"), ["x"], n=3)
    {'user_id': [], 'rank': [], 'score': []}
    """
    rows = [(u, s) for u, s in model.lookalikes(seed_user_ids, n) if s >= min_score]
    return {
        "user_id": [u for u, _ in rows],
        "rank": list(range(1, len(rows) + 1)),
        "score": [s for _, s in rows],
    }
