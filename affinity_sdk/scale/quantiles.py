"""Exact global quantiles of a Dask DataFrame column by distributed radix selection.

Each round every partition sends one small histogram (2048 counts per fraction) of the next 11
bits of the order-preserving 64-bit keys of its values that still match the prefix chosen so far;
six rounds would pin down every bit. The histograms are summed in the workers; once few values
match the chosen prefixes (usually after one round) they are fetched and the order statistic
read off them. The result is the exact order statistic
:func:`affinity_sdk.kernels.quantile_cutoffs` gives in one process, and only kilobytes (at most
:data:`GATHER` values) reach the client. :class:`~affinity_sdk.score.tiers.TierPlan` turns these
quantiles into tier cut-offs (:meth:`~affinity_sdk.score.tiers.TierPlan.cutoffs_from_quantiles`).

Examples
--------
>>> import pandas as pd, dask.dataframe as dd
>>> frame = dd.from_pandas(pd.DataFrame({"raw_score": np.arange(10.0)}), npartitions=3)
>>> cuts, n = radix_select(frame, np.array([0.6, 0.9]), "raw_score", {"scheduler": "sync"})
>>> cuts.tolist(), n
([6.0, 9.0], 10)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from affinity_sdk.scale._common import dask_module, require_dask, tree_reduce

__all__ = ["exact_quantile_cutoffs", "radix_select"]

_RADIX_BITS: Final = 11  # 2048 counts per fraction per partition: 6 rounds for 64-bit keys
#: Candidate values fetched whole, once no more than this many match the prefixes chosen so far.
GATHER: Final = 1 << 16
_SIGN: Final = np.uint64(1 << 63)


def _order_keys(values: NDArray[np.float64]) -> NDArray[np.uint64]:
    """uint64 keys whose unsigned order is the float order (negative floats: all bits flipped)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    keys: NDArray[np.uint64] = np.where(bits & _SIGN, ~bits, bits | _SIGN)
    return keys


def _from_order_key(key: int) -> float:
    bits = np.uint64(key)
    raw = bits & ~_SIGN if bits & _SIGN else ~bits
    return float(np.array([raw], dtype=np.uint64).view(np.float64)[0])


def _digit_histograms(
    frame: Any, prefixes: NDArray[np.uint64], shift: int, width: int, column: str
) -> NDArray[np.int64]:
    """Per prefix, counts of the next ``width``-bit digit among keys whose higher bits match."""
    keys = _order_keys(frame[column].to_numpy(dtype=np.float64))
    out = np.zeros((prefixes.shape[0], 1 << width), dtype=np.int64)
    high = shift + width
    top = keys >> np.uint64(high) if high < 64 else np.zeros_like(keys)
    digits = ((keys >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.intp)
    for i, prefix in enumerate(prefixes):
        out[i] = np.bincount(digits[top == prefix], minlength=1 << width)
    return out


def _ranks(n: int, fractions: NDArray[np.float64]) -> list[int | None]:
    """The 1-based descending rank whose value is each fraction's cut-off (None: +inf), as in
    :func:`affinity_sdk.kernels.quantile_cutoffs`."""
    ranks: list[int | None] = []
    for q in fractions.tolist():
        if q >= 1.0 or n == 0:
            ranks.append(None)
        else:
            ranks.append(min(max(1, math.ceil(n * (1.0 - q) - 1e-9)), n))
    return ranks


def exact_quantile_cutoffs(
    frame: Any, fractions: Sequence[float] | NDArray[np.float64], *, column: str = "raw_score", **compute: Any
) -> NDArray[np.float64]:
    r"""Exact :func:`~affinity_sdk.kernels.quantile_cutoffs` of a Dask DataFrame column.

    A radix selection over the order-preserving 64-bit keys of the floats: each round every
    partition sends one small histogram (2048 counts per fraction) of the next 11 bits among the
    values that still match the prefix chosen so far; six rounds pin down every bit, so the
    result is the exact order statistic :math:`v_{(k)}`, :math:`k = \max(1, \lceil n(1-q)\rceil)`,
    never an approximation. Persist ``frame`` first: each round reads it again.

    ``compute`` is passed to :func:`dask.compute` (e.g. ``scheduler="sync"``).

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd
    >>> values = pd.DataFrame({"raw_score": np.arange(10.0)[::-1] - 3.0})
    >>> frame = dd.from_pandas(values, npartitions=3)
    >>> exact_quantile_cutoffs(frame, [0.9, 0.6, 1.0], scheduler="sync").tolist()
    [6.0, 3.0, inf]
    """
    require_dask()
    cuts, _ = radix_select(frame, np.asarray(fractions, dtype=np.float64), column, compute)
    return cuts


def _candidates(frame: Any, prefixes: NDArray[np.uint64], shift: int, column: str) -> NDArray[np.uint64]:
    """The keys whose bits above ``shift`` match one of ``prefixes`` (a worker task)."""
    keys = _order_keys(frame[column].to_numpy(dtype=np.float64))
    found: NDArray[np.uint64] = keys[np.isin(keys >> np.uint64(shift), prefixes)]
    return found


def _add(*hists: NDArray[np.int64]) -> NDArray[np.int64]:
    total: NDArray[np.int64] = np.sum(hists, axis=0)
    return total


def _concat(*arrays: NDArray[np.uint64]) -> NDArray[np.uint64]:
    return np.concatenate(arrays)


def radix_select(
    frame: Any,
    fractions: NDArray[np.float64],
    column: str,
    compute: dict[str, Any],
    split_every: int = 8,
) -> tuple[NDArray[np.float64], int]:
    """The cut-offs and the number of values (counted by the first round's histograms).

    Each round's per-partition histograms are summed in a tree of worker tasks and only the
    total reaches the client, which picks the next digit of every prefix. Once at most
    :data:`GATHER` values match the prefixes (usually after the first round) they are fetched
    whole and the exact order statistic is read off them, instead of five more rounds."""
    dask = dask_module()
    delayed = dask.delayed
    parts = frame.to_delayed()
    if not parts:
        return np.full(fractions.shape[0], np.inf), 0
    n = -1
    prefix: dict[int, int] = {}  # per fraction: its key's bits above `shift` chosen so far
    remaining: dict[int, int] = {}  # ... and its rank among the keys that share them
    matching: dict[int, int] = {}  # ... and how many keys share them
    shift = 64
    while shift > 0 and (n < 0 or prefix):
        unique = sorted(set(prefix.values())) or [0]  # fractions sharing a prefix share a row
        prefixes = np.array(unique, dtype=np.uint64)
        if n >= 0 and sum({prefix[i]: matching[i] for i in prefix}.values()) <= GATHER:
            tasks = [delayed(_candidates)(p, prefixes, shift, column) for p in parts]
            (keys,) = dask.compute(tree_reduce(tasks, _concat, split_every), **compute)
            for i in prefix:
                mine = np.sort(keys[(keys >> np.uint64(shift)) == np.uint64(prefix[i])])[::-1]
                prefix[i] = int(mine[remaining[i] - 1])
            break
        width = min(_RADIX_BITS, shift)
        shift -= width
        tasks = [delayed(_digit_histograms)(p, prefixes, shift, width, column) for p in parts]
        (total,) = dask.compute(tree_reduce(tasks, _add, split_every), **compute)
        if n < 0:
            n = int(total.sum())
            for i, rank in enumerate(_ranks(n, fractions)):
                if rank is not None:
                    prefix[i], remaining[i] = 0, rank
        for i in prefix:
            row = total[unique.index(prefix[i])][::-1]  # largest digit first
            cum = np.cumsum(row)
            j = int(np.searchsorted(cum, remaining[i]))  # first digit where the count reaches k
            remaining[i] -= int(cum[j - 1]) if j else 0
            matching[i] = int(row[j])
            prefix[i] = (prefix[i] << width) | ((1 << width) - 1 - j)
    out = np.full(fractions.shape[0], np.inf)
    for i, key in prefix.items():
        out[i] = _from_order_key(key)
    return out, max(n, 0)
