"""Numba kernels: the same names, signatures and numbers as :mod:`._reference`.

Imported only when the ``numba`` backend is used, so ``import affinity_sdk`` never pays for numba.
Every kernel is ``@njit(cache=True)`` with named fastmath flags: ``contract`` (FMA) and
``reassoc`` where a sum may be reordered, never ``nnan`` / ``ninf``, so NaN checks survive. The
0-100 score is computed without fastmath so all backends round it identically and tiers agree.

Records are handled through two flat views of the same memory (``float64`` and ``int64``, five
words per record) because numba's record-array access is slower and the layout is fixed by
``STATE_DTYPE``.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import cgutils, types
from numba.cpython.unsafe.numbers import trailing_zeros as _cttz
from numba.extending import intrinsic
from numpy.typing import NDArray

from ._layout import STATE_DTYPE

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

_FAST = {"contract", "reassoc", "nsz"}
_EXACT: set[str] = set()
# Only FMA contraction for exp: `reassoc` would fold the (x + shifter) - shifter rounding trick away.
_CONTRACT = {"contract"}
_WORDS = 5  # float64 / int64 words per record: acc, total, count, first_ms, last_ms
_CHUNK = 512
_EXP_LO = -708.0
_EXP_HI = 708.0
_SLICE = 1 << 24  # events partitioned at once (16 bytes of scratch each)
_BLOCK_BYTES = 2 << 20  # records of one profile block, kept in cache while its events apply
_AHEAD = 16  # how far ahead the scatter loops prefetch the record they will update
_SIGN_OFF = np.int64(0x7FFFFFFFFFFFFFFF)


def _flat(records: NDArray[np.void], writable: bool) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    if records.dtype != STATE_DTYPE:
        raise ValueError(f"Expected `records` of dtype STATE_DTYPE, got {records.dtype}")
    if records.ndim != 2:
        raise ValueError(f"Expected `records` of shape (profiles, signals), got {records.shape}")
    if not records.flags.c_contiguous:
        raise ValueError("Expected `records` to be C-contiguous")
    if writable and not records.flags.writeable:
        raise ValueError("Expected `records` to be writeable")
    flat = records.reshape(-1)
    return flat.view(np.float64), flat.view(np.int64)


def _check(name: str, a: NDArray[np.generic], dtype: type[np.generic], n: int | None = None) -> None:
    if a.dtype != dtype:
        raise ValueError(f"Expected `{name}` of dtype {np.dtype(dtype)}, got {a.dtype}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"Expected `{name}` of length {n}, got {a.shape[0]}")


# ---------------------------------------------------------------------------------------------
# accumulate


@nb.njit(cache=True, fastmath=_CONTRACT)
def _exp_block(x: NDArray[np.float64], n: int) -> None:  # pragma: no cover - compiled
    # Cody-Waite reduction + degree-13 Taylor polynomial, branch-free so LLVM vectorises it;
    # the caller redoes out-of-range lanes (NaN, inf, overflow, subnormal results) with np.exp.
    for i in range(n):
        xi = x[i]
        lo = _EXP_LO if xi < _EXP_LO else xi
        hi = _EXP_HI if xi > _EXP_HI else xi
        xc = lo if xi < 0.0 else hi
        t = xc * 1.4426950408889634 + 6755399441055744.0
        k = t - 6755399441055744.0
        r = (xc - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        scale = np.int64((np.float64(t).view(np.int64) + 1023) << 52).view(np.float64)
        x[i] = p * scale


def _prefetch_typer(typingctx: Any, arr: Any, index: Any) -> Any:  # pragma: no cover - compiled
    """Prefetch ``arr[index]`` for writing (``llvm.prefetch``); no bounds check, never faults."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]], inbounds=False)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")  # type: ignore[no-untyped-call]
        builder.call(fn, [ptr, i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, types.intp), codegen


_prefetch: Any = intrinsic(_prefetch_typer)


@nb.njit(cache=True, fastmath=_CONTRACT)
def _exp_times(
    expo: NDArray[np.float64], vals: NDArray[np.float64], out: NDArray[np.float64], m: int
) -> None:  # pragma: no cover - compiled
    # out = vals * exp(expo): the vectorised exp, out-of-range lanes redone with np.exp.
    for j in range(m):
        out[j] = expo[j]
    _exp_block(out, m)
    for j in range(m):
        e = expo[j]
        if not ((e >= _EXP_LO) and (e <= _EXP_HI)):
            out[j] = np.exp(e)
        out[j] *= vals[j]


@nb.njit(cache=True, fastmath=_FAST)
def _contributions(
    signals: NDArray[np.int64],
    ts_ms: NDArray[np.int64],
    values: NDArray[np.float64],
    i0: int,
    m: int,
    landmark_ms: int,
    lam: NDArray[np.float64],
    expo: NDArray[np.float64],
    vals: NDArray[np.float64],
    out: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    for j in range(m):
        dt = ts_ms[i0 + j] - landmark_ms
        expo[j] = 0.0 if dt == 0 else lam[signals[i0 + j]] * np.float64(dt)
        vals[j] = values[i0 + j]
    _exp_times(expo, vals, out, m)


@nb.njit(cache=True)
def _apply(
    rf: NDArray[np.float64], ri: NDArray[np.int64], cell: int, c: float, v: float, t: int
) -> None:  # pragma: no cover - compiled
    w = cell * _WORDS
    rf[w] += c
    rf[w + 1] += v
    ri[w + 2] += 1
    ri[w + 3] = min(t, ri[w + 3])
    ri[w + 4] = max(t, ri[w + 4])


@nb.njit(cache=True)
def _prefetch_cell(rf: NDArray[np.float64], cell: int) -> None:  # pragma: no cover - compiled
    # A 40-byte record may straddle two cache lines: fetch both ends.
    _prefetch(rf, cell * _WORDS)
    _prefetch(rf, cell * _WORDS + _WORDS - 1)


@nb.njit(cache=True)
def _first_bad(
    users: NDArray[np.int64], signals: NDArray[np.int64], n_profiles: int, n_signals: int
) -> int:  # pragma: no cover - compiled
    for i in range(users.shape[0]):
        u = users[i]
        s = signals[i]
        if u < 0 or u >= n_profiles or s < 0 or s >= n_signals:
            return i
    return -1


@nb.njit(cache=True)
def _accumulate_direct(
    rf: NDArray[np.float64],
    ri: NDArray[np.int64],
    n_signals: int,
    users: NDArray[np.int64],
    signals: NDArray[np.int64],
    ts_ms: NDArray[np.int64],
    values: NDArray[np.float64],
    landmark_ms: int,
    lam: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    # Events in input order, each chunk's contributions first, the record _AHEAD events ahead prefetched.
    n = users.shape[0]
    expo = np.empty(_CHUNK)
    vals = np.empty(_CHUNK)
    contrib = np.empty(_CHUNK)
    for i0 in range(0, n, _CHUNK):
        m = min(_CHUNK, n - i0)
        _contributions(signals, ts_ms, values, i0, m, landmark_ms, lam, expo, vals, contrib)
        reach = min(n, i0 + m + _AHEAD)
        for j in range(m):
            i = i0 + j
            a = i + _AHEAD
            if a < reach:
                _prefetch_cell(rf, users[a] * n_signals + signals[a])
            _apply(rf, ri, users[i] * n_signals + signals[i], contrib[j], vals[j], ts_ms[i])


@nb.njit(cache=True)
def _apply_block(
    rf: NDArray[np.float64],
    ri: NDArray[np.int64],
    base: int,
    packed: NDArray[np.int64],
    lo: int,
    hi: int,
    n_signals: int,
    key_shift: int,
    signal_bits: int,
    landmark_ms: int,
    lam: NDArray[np.float64],
    expo: NDArray[np.float64],
    vals: NDArray[np.float64],
    contrib: NDArray[np.float64],
    cell: NDArray[np.int64],
    ts: NDArray[np.int64],
) -> None:  # pragma: no cover - compiled
    # One profile block's packed events: decode, vectorised exp, scatter with prefetch.
    in_block_mask = (1 << (key_shift - signal_bits)) - 1
    signal_mask = (1 << signal_bits) - 1
    packed_f = packed.view(np.float64)
    for e0 in range(lo, hi, _CHUNK):
        m = min(_CHUNK, hi - e0)
        reach = min(m + _AHEAD, hi - e0)
        for j in range(reach):
            key = packed[2 * (e0 + j)]
            cell[j] = base + ((key >> signal_bits) & in_block_mask) * n_signals + (key & signal_mask)
        for j in range(m):
            key = packed[2 * (e0 + j)]
            dt = key >> key_shift
            expo[j] = 0.0 if dt == 0 else lam[key & signal_mask] * np.float64(dt)
            vals[j] = packed_f[2 * (e0 + j) + 1]
            ts[j] = landmark_ms + dt
        _exp_times(expo, vals, contrib, m)
        for j in range(m):
            if j + _AHEAD < reach:
                _prefetch_cell(rf, cell[j + _AHEAD])
            _apply(rf, ri, cell[j], contrib[j], vals[j], ts[j])


@nb.njit(cache=True)
def _accumulate_partitioned(
    rf: NDArray[np.float64],
    ri: NDArray[np.int64],
    n_profiles: int,
    n_signals: int,
    users: NDArray[np.int64],
    signals: NDArray[np.int64],
    ts_ms: NDArray[np.int64],
    values: NDArray[np.float64],
    landmark_ms: int,
    lam: NDArray[np.float64],
    shift: int,
    signal_bits: int,
    packed: NDArray[np.int64],
) -> int:  # pragma: no cover - compiled
    # Radix partition by profile block (see csrc/kernels.hpp accumulate), slice by slice. Returns
    # how many events were applied: all of them, or fewer when a slice has a code out of range or a
    # time too far from the landmark to pack (that slice and the later ones are left untouched).
    n = users.shape[0]
    key_shift = shift + signal_bits
    n_blocks = ((n_profiles - 1) >> shift) + 1
    slice_len = packed.shape[0] // 2
    dt_half = np.int64(1) << (63 - key_shift)
    mask = (1 << shift) - 1
    offset = np.empty(n_blocks + 1, dtype=np.int64)
    cursor = np.empty(n_blocks, dtype=np.int64)
    packed_f = packed.view(np.float64)
    expo = np.empty(_CHUNK)
    vals = np.empty(_CHUNK)
    contrib = np.empty(_CHUNK)
    cell = np.empty(_CHUNK + _AHEAD, dtype=np.int64)
    ts = np.empty(_CHUNK, dtype=np.int64)
    for s0 in range(0, n, slice_len):
        m_slice = min(slice_len, n - s0)
        offset[:] = 0
        bad = False
        for i in range(s0, s0 + m_slice):
            u = users[i]
            out = (u < 0) | (u >= n_profiles)
            bad |= out
            offset[(0 if out else u >> shift) + 1] += 1
        if bad:
            return s0
        for b in range(n_blocks):
            offset[b + 1] += offset[b]
        cursor[:] = offset[:n_blocks]
        for i in range(s0, s0 + m_slice):
            u = users[i]
            sig = signals[i]
            dt = ts_ms[i] - landmark_ms
            bad |= (sig < 0) | (sig >= n_signals) | (dt < -dt_half) | (dt >= dt_half)
            b = u >> shift
            p = cursor[b]
            cursor[b] = p + 1
            packed[2 * p] = (dt << key_shift) | ((u & mask) << signal_bits) | (sig & ((1 << signal_bits) - 1))
            packed_f[2 * p + 1] = values[i]
        if bad:
            return s0
        for b in range(n_blocks):
            _apply_block(
                rf, ri, (b << shift) * n_signals, packed, offset[b], offset[b + 1], n_signals,
                key_shift, signal_bits, landmark_ms, lam, expo, vals, contrib, cell, ts,
            )  # fmt: skip
    return int(n)


def _plan(n: int, n_profiles: int, n_signals: int) -> tuple[int, int, int]:
    """(profiles-per-block shift, signal bits, scratch events) of the partition; 0 events: go direct."""
    row_bytes = n_signals * 40
    shift = 0
    while shift < 40 and (2 << shift) * row_bytes <= _BLOCK_BYTES:
        shift += 1
    signal_bits = max(n_signals - 1, 0).bit_length()
    n_blocks = ((n_profiles - 1) >> shift) + 1
    if n_blocks <= 2 or n_profiles * row_bytes <= 4 * _BLOCK_BYTES or n < 65536 or shift + signal_bits > 24:
        return shift, signal_bits, 0
    n_slices = -(-n // _SLICE)
    return shift, signal_bits, -(-n // n_slices)


def accumulate(
    records: NDArray[np.void],
    users: NDArray[np.int64],
    signals: NDArray[np.int64],
    ts_ms: NDArray[np.int64],
    values: NDArray[np.float64],
    landmark_ms: int,
    lam_per_ms: NDArray[np.float64],
) -> None:
    """Fold events into ``records[users, signals]`` in place (see :func:`._reference.accumulate`).

    Large batches against a state bigger than the cache are radix-partitioned by profile block
    (16 bytes of scratch per event, from numpy so it gets huge pages); otherwise events are
    applied directly. Codes are checked before anything is written.
    """
    rf, ri = _flat(records, writable=True)
    n_profiles, n_signals = records.shape
    n = users.shape[0]
    _check("users", users, np.int64)
    _check("signals", signals, np.int64, n)
    _check("ts_ms", ts_ms, np.int64, n)
    _check("values", values, np.float64, n)
    _check("lam_per_ms", lam_per_ms, np.float64, n_signals)
    if n == 0:
        return
    landmark = int(landmark_ms)
    shift, signal_bits, scratch = _plan(n, n_profiles, n_signals)
    if scratch and scratch < n:
        _check_codes(users, signals, n_profiles, n_signals)  # later slices apply after the first
    start = 0
    if scratch:
        packed = np.empty(2 * scratch, dtype=np.int64)
        args = (rf, ri, n_profiles, n_signals, users, signals, ts_ms, values, landmark, lam_per_ms)
        start = _accumulate_partitioned(*args, shift, signal_bits, packed)
    if start == 0:
        _check_codes(users, signals, n_profiles, n_signals)
    if start < n:
        rest = slice(start, n)
        _accumulate_direct(
            rf, ri, n_signals, users[rest], signals[rest], ts_ms[rest], values[rest], landmark, lam_per_ms
        )


def _check_codes(
    users: NDArray[np.int64], signals: NDArray[np.int64], n_profiles: int, n_signals: int
) -> None:
    bad = _first_bad(users, signals, n_profiles, n_signals)
    if bad >= 0:
        raise ValueError(
            f"event {bad} has profile {users[bad]} / signal {signals[bad]} outside the state's "
            f"{n_profiles} x {n_signals} records"
        )


# ---------------------------------------------------------------------------------------------
# rebase, merge, decayed, raw scores


@nb.njit(cache=True, fastmath=_FAST)
def _rebase(
    rf: NDArray[np.float64], n_signals: int, factors: NDArray[np.float64]
) -> None:  # pragma: no cover
    n_cells = rf.shape[0] // _WORDS
    for c in range(n_cells):
        rf[c * _WORDS] *= factors[c % n_signals]


def rebase(records: NDArray[np.void], factors: NDArray[np.float64]) -> None:
    r"""Move the landmark: :math:`A_{us} \mathrel{*}= f_s`."""
    rf, _ = _flat(records, writable=True)
    _check("factors", factors, np.float64, records.shape[1])
    _rebase(rf, records.shape[1], factors)


@nb.njit(cache=True)
def _merge(
    af: NDArray[np.float64], ai: NDArray[np.int64], bf: NDArray[np.float64], bi: NDArray[np.int64]
) -> None:  # pragma: no cover - compiled
    for c in range(af.shape[0] // _WORDS):
        w = c * _WORDS
        af[w] += bf[w]
        af[w + 1] += bf[w + 1]
        ai[w + 2] += bi[w + 2]
        if bi[w + 3] < ai[w + 3]:
            ai[w + 3] = bi[w + 3]
        if bi[w + 4] > ai[w + 4]:
            ai[w + 4] = bi[w + 4]


def merge(into: NDArray[np.void], other: NDArray[np.void]) -> None:
    """Add ``other`` into ``into`` (same shape, same landmark): sums, min of first, max of last."""
    af, ai = _flat(into, writable=True)
    bf, bi = _flat(other, writable=False)
    if into.shape != other.shape:
        raise ValueError("Expected `into` and `other` of the same shape")
    _merge(af, ai, bf, bi)


@nb.njit(cache=True, fastmath=_FAST)
def _decayed(
    rf: NDArray[np.float64], n_signals: int, factors: NDArray[np.float64], out: NDArray[np.float64]
) -> None:  # pragma: no cover - compiled
    for c in range(out.shape[0]):
        out[c] = rf[c * _WORDS] * factors[c % n_signals]


def decayed(records: NDArray[np.void], factors: NDArray[np.float64], out: NDArray[np.float64]) -> None:
    r"""Decayed values at now: :math:`D_{us} = A_{us} f_s`."""
    rf, _ = _flat(records, writable=False)
    _check("factors", factors, np.float64, records.shape[1])
    if out.shape != records.shape or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError("Expected `out` of the records' shape, float64, C-contiguous")
    _decayed(rf, records.shape[1], factors, out.reshape(-1))


@nb.njit(cache=True, fastmath=_FAST)
def _raw_scores(
    rf: NDArray[np.float64], n_signals: int, coefs: NDArray[np.float64], out: NDArray[np.float64]
) -> None:  # pragma: no cover - compiled
    for u in range(out.shape[0]):
        w = u * n_signals * _WORDS
        acc = 0.0
        for s in range(n_signals):
            acc += coefs[s] * rf[w + s * _WORDS]
        out[u] = acc


def raw_scores(records: NDArray[np.void], coefs: NDArray[np.float64], out: NDArray[np.float64]) -> None:
    r"""Composite raw score :math:`R_u = \sum_s c_s A_{us}`."""
    rf, _ = _flat(records, writable=False)
    _check("coefs", coefs, np.float64, records.shape[1])
    _check("out", out, np.float64, records.shape[0])
    _raw_scores(rf, records.shape[1], coefs, out)


# ---------------------------------------------------------------------------------------------
# scores, quantile cut-offs, tiers
#
# Cut-offs by histogram selection (the C++ twin is csrc/tiers.hpp): each value gets a bin by a
# monotone map (v <= w implies bin(v) <= bin(w)), one pass counts the bins, the prefix sums name
# the bin holding each cut-off's rank, a second pass copies out the values of those bins, and an
# exact partition among them gives the reference's order statistic. NaN ranks largest, alone in
# the last bin.

_BLOCK = 512
_MAX_WANTED = 8
# Score bins: 128 per binade from 2^-57 to 2^7 (zeros and anything smaller in bin 0, >= 128 in
# the top bin), a histogram small enough for L1 / L2.
_SCORE_BINS = 8192
_SCORE_SHIFT = 52 - 7
_SCORE_BASE = (1023 - 57) << 7
_SCORE_FLOOR = 2.0**-57
_RANGE_BINS = 1 << 16
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
    previous: NDArray[np.int8],
    out_score: NDArray[np.float64],
    out_tier: NDArray[np.int8],
    out_cut: NDArray[np.float64],
) -> None:
    """Raw scores -> 0-100 scores -> quantile cut-offs of the scores -> tiers (with margins)."""
    n = raw.shape[0]
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


# ---------------------------------------------------------------------------------------------
# top-k


@nb.njit(cache=True)
def _topk(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int64],
    data: NDArray[np.float64],
    dense_cols: int,
    k: int,
    out_index: NDArray[np.int64],
    out_value: NDArray[np.float64],
) -> None:  # pragma: no cover - compiled
    # Per row, insertion into a sorted top-k buffer: O(m k), and k is small for affinity.
    n_rows = out_index.shape[0]
    for r in range(n_rows):
        if dense_cols >= 0:
            lo = r * dense_cols
            m = dense_cols
        else:
            lo = indptr[r]
            m = indptr[r + 1] - lo
        filled = 0
        for j in range(m):
            v = data[lo + j]
            key = -np.inf if v != v else v
            col = j if dense_cols >= 0 else indices[lo + j]
            pos = filled
            while pos > 0:
                pv = out_value[r, pos - 1]
                pk = -np.inf if pv != pv else pv
                if pk > key or (pk == key and out_index[r, pos - 1] < col):
                    break
                pos -= 1
            if pos >= k:
                continue
            last = min(filled, k - 1)
            for q in range(last, pos, -1):
                out_index[r, q] = out_index[r, q - 1]
                out_value[r, q] = out_value[r, q - 1]
            out_index[r, pos] = col
            out_value[r, pos] = v
            if filled < k:
                filled += 1
        for q in range(filled, k):
            out_index[r, q] = -1
            out_value[r, q] = np.nan


def _check_topk_out(out_index: NDArray[np.int64], out_value: NDArray[np.float64], rows: int, k: int) -> None:
    if k < 0:
        raise ValueError("Expected k >= 0")
    _check("out_index", out_index, np.int64)
    _check("out_value", out_value, np.float64)
    if out_index.shape != (rows, k) or out_value.shape != (rows, k):
        raise ValueError("Expected `out_index` and `out_value` of shape (rows, k)")


def topk_rows(
    matrix: NDArray[np.float64],
    k: int,
    out_index: NDArray[np.int64],
    out_value: NDArray[np.float64],
) -> None:
    """Per row, the ``k`` largest entries (descending; ties by lower column), NaN treated as -inf."""
    _check("matrix", matrix, np.float64)
    if matrix.ndim != 2:
        raise ValueError("Expected a 2-dimensional `matrix`")
    _check_topk_out(out_index, out_value, matrix.shape[0], k)
    empty = np.zeros(1, dtype=np.int64)
    _topk(empty, empty, np.ascontiguousarray(matrix).reshape(-1), matrix.shape[1], k, out_index, out_value)


def topk_csr(
    indptr: NDArray[np.int64],
    indices: NDArray[np.int64],
    data: NDArray[np.float64],
    k: int,
    out_index: NDArray[np.int64],
    out_value: NDArray[np.float64],
) -> None:
    """Per CSR row, the ``k`` largest stored entries' columns and values (see ``topk_rows``)."""
    _check("indptr", indptr, np.int64)
    _check("indices", indices, np.int64)
    _check("data", data, np.float64, indices.shape[0])
    if indptr.shape[0] < 1 or indptr[0] != 0 or indptr[-1] != indices.shape[0] or np.any(np.diff(indptr) < 0):
        raise ValueError("Expected `indptr` non-decreasing from 0 to len(indices)")
    _check_topk_out(out_index, out_value, indptr.shape[0] - 1, k)
    _topk(indptr, indices, data, -1, k, out_index, out_value)
