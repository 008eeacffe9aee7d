"""Numba kernels for the 0-100 scores, quantile cut-offs and tiers (re-exported by :mod:`._numba`).

Same names, signatures and numbers as :mod:`._reference`. The score is computed without fastmath
so all backends round it identically and tiers agree.

Cut-offs by histogram selection (the C++ twin is csrc/tiers.hpp): each value gets a bin by a
monotone map (v <= w implies bin(v) <= bin(w)), one pass counts the bins, the prefix sums name
the bin holding each cut-off's rank, a second pass copies out the values of those bins, and an
exact partition among them gives the reference's order statistic. NaN ranks largest, alone in
the last bin.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros as _cttz
from numpy.typing import NDArray

from ._numba_common import _EXACT, _check

__all__ = ["assign_tiers", "quantile_cutoffs", "score_tiers", "scores_100"]

_BLOCK = 512
_MAX_WANTED = 8
# Score bins: 128 per binade from 2^-57 to 2^7 (zeros and anything smaller in bin 0, >= 128 in
# the top bin), a histogram small enough for L1 / L2.
_SCORE_BINS = 8192
_SCORE_SHIFT = 52 - 7
_SCORE_BASE = (1023 - 57) << 7
_SCORE_FLOOR = 2.0**-57
_RANGE_BINS = 1 << 16
_SIGN_OFF = np.int64(0x7FFFFFFFFFFFFFFF)
trailing_zeros: Any = _cttz  # LLVM cttz intrinsic (numba's typing stub misdescribes its call)


# error_model="numpy": without it numba guards the division with a ZeroDivisionError branch and
# the loops do not vectorise (r + h > 0 anyway: r >= 0 and the API checks h > 0).
@nb.njit(cache=True, fastmath=_EXACT, error_model="numpy")
def _score(raw: float, half_point: float) -> float:  # pragma: no cover - compiled
    r = 0.0 if raw < 0.0 else raw
    s = 100.0 * r / (r + half_point)
    return 100.0 if r == np.inf else s


@nb.njit(cache=True, fastmath=_EXACT, error_model="numpy")
def _scores_100(
    raw: NDArray[np.float64], half_point: float, out: NDArray[np.float64]
) -> None:  # pragma: no cover
    for i in range(raw.shape[0]):
        out[i] = _score(raw[i], half_point)


def scores_100(raw: NDArray[np.float64], half_point: float, out: NDArray[np.float64]) -> None:
    r"""0-100 score :math:`100\, r / (r + h)`, negative raw as 0, ``+inf`` as 100."""
    _check("raw", raw, np.float64)
    _check("out", out, np.float64, raw.shape[0])
    _scores_100(raw, float(half_point), out)


@nb.njit(cache=True)
def _key(v: float) -> int:  # pragma: no cover - compiled
    # Order-preserving signed key of a non-NaN double: flip the magnitude bits of negatives.
    b = np.float64(v).view(np.int64)
    return int(b ^ ((b >> 63) & _SIGN_OFF))


@nb.njit(cache=True)
def _key_value(key: int) -> float:  # pragma: no cover - compiled
    return np.int64(key ^ ((key >> 63) & _SIGN_OFF)).view(np.float64)


@nb.njit(cache=True, fastmath=_EXACT)
def _score_bin(s: float) -> int:  # pragma: no cover - compiled
    c = s if s > _SCORE_FLOOR else _SCORE_FLOOR
    d = int(np.float64(c).view(np.int64) >> _SCORE_SHIFT) - _SCORE_BASE
    d = _SCORE_BINS - 2 if d > _SCORE_BINS - 2 else d
    return _SCORE_BINS - 1 if s != s else d


@nb.njit(cache=True)
def _range_bin(v: float, lo: int, shift: int) -> int:  # pragma: no cover - compiled
    # (key - lo) as unsigned: keys span up to 2^64, so the difference is taken modulo 2^64.
    d = (np.uint64(_key(v)) - np.uint64(lo)) >> np.uint64(shift)
    return _RANGE_BINS - 1 if v != v else int(d)


@nb.njit(cache=True)
def _bins_of(
    v: NDArray[np.float64], lo: int, shift: int, bins: NDArray[np.int32]
) -> None:  # pragma: no cover - compiled
    # shift < 0 selects the score bins, else the range bins (lo, shift). The callers pass slices:
    # indexing with `i0 + j` keeps numba's negative-index wraparound and LLVM does not vectorise.
    if shift < 0:
        for j in range(v.shape[0]):
            bins[j] = _score_bin(v[j])
    else:
        for j in range(v.shape[0]):
            bins[j] = _range_bin(v[j], lo, shift)


@nb.njit(cache=True)
def _range_of(values: NDArray[np.float64]) -> tuple[int, int]:  # pragma: no cover - compiled
    lo = int(_SIGN_OFF)
    hi = -lo - 1
    for i in range(values.shape[0]):
        v = values[i]
        k = _key(v)
        if v == v:
            lo = min(lo, k)
            hi = max(hi, k)
    if lo > hi:
        return 0, 0
    span = np.uint64(hi) - np.uint64(lo)
    shift = 0
    while (span >> np.uint64(shift)) >= np.uint64(_RANGE_BINS - 2):
        shift += 1
    return lo, shift


@nb.njit(cache=True)
def _count(
    values: NDArray[np.float64], lo: int, shift: int, hist: NDArray[np.int64]
) -> None:  # pragma: no cover - compiled
    bins = np.empty(_BLOCK, dtype=np.int32)
    n = values.shape[0]
    for i0 in range(0, n, _BLOCK):
        m = min(_BLOCK, n - i0)
        _bins_of(values[i0 : i0 + m], lo, shift, bins)
        for j in range(m):
            hist[bins[j]] += 1


@nb.njit(cache=True)
def _gather(
    values: NDArray[np.float64],
    lo: int,
    shift: int,
    wanted: NDArray[np.int64],
    n_wanted: int,
    cursor: NDArray[np.int64],
    out: NDArray[np.int64],
) -> None:  # pragma: no cover - compiled
    # Keys of the values whose bin is wanted[s] to out[cursor[s]++]; per block the hit flags are
    # computed first and scanned eight at a time, so the scalar work follows the (few) hits.
    bins = np.empty(_BLOCK, dtype=np.int32)
    hit = np.zeros(_BLOCK, dtype=np.uint8)
    words = hit.view(np.uint64)
    n = values.shape[0]
    for i0 in range(0, n, _BLOCK):
        m = min(_BLOCK, n - i0)
        v = values[i0 : i0 + m]
        _bins_of(v, lo, shift, bins)
        w0 = wanted[0]
        for j in range(m):
            hit[j] = bins[j] == w0
        for s in range(1, n_wanted):
            w = wanted[s]
            for j in range(m):
                hit[j] |= bins[j] == w
        for j in range(m, _BLOCK):
            hit[j] = 0
        for g in range((m + 7) >> 3):
            word = words[g]
            while word != 0:
                j = (g << 3) + (int(trailing_zeros(word)) >> 3)
                word &= word - np.uint64(1)
                s = 0  # which wanted bin, without a data-dependent branch
                for t in range(1, n_wanted):
                    s += (bins[j] == wanted[t]) * t
                out[cursor[s]] = _key(v[j])
                cursor[s] += 1


@nb.njit(cache=True)
def _select(a: NDArray[np.int64], k: int) -> int:  # pragma: no cover - compiled
    # The k-th smallest of `a` (reordered in place): quickselect, median-of-three pivot, Hoare
    # partition (runs of equal keys split evenly). Compiles in a fraction of np.partition's time.
    lo = 0
    hi = a.shape[0] - 1
    while lo < hi:
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return int(a[k])


@nb.njit(cache=True)
def _cutoffs_from_hist(
    values: NDArray[np.float64],
    lo: int,
    shift: int,
    hist: NDArray[np.int64],
    fractions: NDArray[np.float64],
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    n = values.shape[0]
    n_bins = hist.shape[0]
    nf = fractions.shape[0]
    want_bin = np.full(nf, -1, dtype=np.int64)
    want_rank = np.zeros(nf, dtype=np.int64)
    for j in range(nf):
        q = fractions[j]
        out[j] = np.inf
        if n == 0 or not (q < 1.0):
            continue
        k = int(np.ceil(n * (1.0 - q) - 1e-9))
        k = min(max(k, 1), n)
        rank = n - k  # ascending rank of the k-th largest
        if rank < n // 2:  # walk from the nearer end of the histogram
            d = 0
            while rank >= hist[d]:
                rank -= hist[d]
                d += 1
        else:
            above = n - 1 - rank
            d = n_bins - 1
            while above >= hist[d]:
                above -= hist[d]
                d -= 1
            rank = hist[d] - 1 - above
        want_bin[j] = d
        want_rank[j] = rank
    wanted = np.empty(_MAX_WANTED, dtype=np.int64)
    start = np.empty(_MAX_WANTED + 1, dtype=np.int64)
    while True:
        n_wanted = 0
        total = 0
        for j in range(nf):
            d = want_bin[j]
            if d < 0 or n_wanted == _MAX_WANTED:
                continue
            seen = False
            for s in range(n_wanted):
                seen = seen or wanted[s] == d
            if seen:
                continue
            wanted[n_wanted] = d
            start[n_wanted] = total
            total += hist[d]
            n_wanted += 1
        if n_wanted == 0:
            return
        start[n_wanted] = total
        keys = np.empty(total, dtype=np.int64)
        cursor = start[:n_wanted].copy()
        _gather(values, lo, shift, wanted, n_wanted, cursor, keys)
        for j in range(nf):
            d = want_bin[j]
            if d < 0:
                continue
            for s in range(n_wanted):
                if wanted[s] == d:
                    out[j] = _key_value(_select(keys[start[s] : start[s + 1]], want_rank[j]))
                    want_bin[j] = -1
                    break


# The entry points below chain the compiled steps from Python (a few microseconds) rather than from
# one @njit driver: numba re-optimises a driver together with everything it calls, and two drivers
# sharing _cutoffs_from_hist would compile it twice, which more than doubled the cold-start time.


def quantile_cutoffs(values: NDArray[np.float64], fractions: NDArray[np.float64]) -> NDArray[np.float64]:
    r"""For each fraction ``q``, the value ``v`` such that values ``>= v`` are the top ``1 - q`` (O(n))."""
    _check("values", values, np.float64)
    _check("fractions", fractions, np.float64)
    out = np.empty(fractions.shape[0])
    lo, shift = _range_of(values)
    hist = np.zeros(_RANGE_BINS, dtype=np.int64)
    _count(values, lo, shift, hist)
    _cutoffs_from_hist(values, lo, shift, hist, fractions, out)
    return out


@nb.njit(cache=True, fastmath=_EXACT)
def _tier(
    v: float, p: int, up1: float, up2: float, down1: float, down2: float
) -> int:  # pragma: no cover - compiled
    # tier >= t when v > 0 and v >= (previous >= t ? down_t : up_t); the highest such t wins.
    pos = v > 0.0
    c1 = pos and (v >= down1 if p >= 1 else v >= up1)
    c2 = pos and (v >= down2 if p >= 2 else v >= up2)
    return 2 if c2 else (1 if c1 else 0)


@nb.njit(cache=True, fastmath=_EXACT)
def _assign_tiers(
    values: NDArray[np.float64],
    cut_up: NDArray[np.float64],
    cut_down: NDArray[np.float64],
    previous: NDArray[np.int8],
    out: NDArray[np.int8],
) -> None:  # pragma: no cover - compiled
    up1, up2, down1, down2 = cut_up[0], cut_up[1], cut_down[0], cut_down[1]
    for i in range(values.shape[0]):
        out[i] = _tier(values[i], previous[i], up1, up2, down1, down2)


def _check_tiers(
    values: NDArray[np.float64],
    cut_up: NDArray[np.float64],
    cut_down: NDArray[np.float64],
    previous: NDArray[np.int8],
    out: NDArray[np.int8],
) -> None:
    n = values.shape[0]
    _check("values", values, np.float64)
    _check("cut_up", cut_up, np.float64, 2)
    _check("cut_down", cut_down, np.float64, 2)
    _check("previous", previous, np.int8, n)
    _check("out", out, np.int8, n)


def assign_tiers(
    values: NDArray[np.float64],
    cut_up: NDArray[np.float64],
    cut_down: NDArray[np.float64],
    previous: NDArray[np.int8],
    out: NDArray[np.int8],
) -> None:
    """Tier codes (0 low, 1 medium, 2 high) with hysteresis against ``previous`` (-1 = none)."""
    _check_tiers(values, cut_up, cut_down, previous, out)
    _assign_tiers(values, cut_up, cut_down, previous, out)


@nb.njit(cache=True, fastmath=_EXACT, error_model="numpy")
def _scores_and_count(
    raw: NDArray[np.float64], half_point: float, out: NDArray[np.float64], hist: NDArray[np.int64]
) -> None:  # pragma: no cover - compiled
    bins = np.empty(_BLOCK, dtype=np.int32)
    n = raw.shape[0]
    for i0 in range(0, n, _BLOCK):
        m = min(_BLOCK, n - i0)
        r = raw[i0 : i0 + m]
        o = out[i0 : i0 + m]
        for j in range(m):
            o[j] = _score(r[j], half_point)
        _bins_of(o, 0, -1, bins)
        for j in range(m):
            hist[bins[j]] += 1


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
    """Raw scores -> 0-100 scores -> quantile cut-offs of the scores -> tiers (with margins);
    ``previous`` None: no tiers before (on one thread: ``threads`` is for the C++ backend)."""
    n = raw.shape[0]
    if previous is None:
        previous = np.full(n, -1, dtype=np.int8)
    _check("raw", raw, np.float64)
    _check("fractions", fractions, np.float64, 2)
    _check("margins", margins, np.float64, 2)
    _check("previous", previous, np.int8, n)
    _check("out_score", out_score, np.float64, n)
    _check("out_tier", out_tier, np.int8, n)
    _check("out_cut", out_cut, np.float64, 2)
    # Three streaming passes: scores + bin counts, candidate gather, tiers.
    hist = np.zeros(_SCORE_BINS, dtype=np.int64)
    _scores_and_count(raw, float(half_point), out_score, hist)
    _cutoffs_from_hist(out_score, 0, -1, hist, fractions, out_cut)
    _assign_tiers(out_score, out_cut, out_cut - margins, previous, out_tier)
