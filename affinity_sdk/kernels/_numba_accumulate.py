r"""Numba's compiled steps of ``accumulate``; the entry point and its plan are in :mod:`._numba`.

The events' contributions :math:`v\, e^{\lambda_s (t - L)}` come from a branch-free exp that LLVM
vectorises (:func:`_exp_block`); each record is prefetched (the ``llvm.prefetch`` intrinsic
below) :data:`_AHEAD` events before it is updated. Large batches are radix-partitioned by profile
block first: a key pass packs each event into a 64-bit key (time offset, profile within the
block, signal) and its value, staged block by block in scratch, and each block's events are then
applied while its records stay in cache (:func:`_accumulate_partitioned`, :func:`_apply_block`);
otherwise events are applied in input order (:func:`_accumulate_direct`). :func:`_first_bad`
finds the first event whose profile or signal code is out of range.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import cgutils, types
from numba.extending import intrinsic
from numpy.typing import NDArray

from ._numba_common import _CONTRACT, _FAST, _WORDS

_CHUNK = 512
_EXP_LO = -708.0
_EXP_HI = 708.0
_AHEAD = 16  # how far ahead the scatter loops prefetch the record they will update


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
    af: NDArray[np.float64],
    rf: NDArray[np.float64],
    ri: NDArray[np.int64],
    cell: int,
    c: float,
    v: float,
    t: int,
) -> None:  # pragma: no cover - compiled
    af[cell] += c
    w = cell * _WORDS
    rf[w] += v
    ri[w + 1] += 1
    ri[w + 2] = min(t, ri[w + 2])
    ri[w + 3] = max(t, ri[w + 3])


@nb.njit(cache=True)
def _prefetch_cell(af: NDArray[np.float64], rf: NDArray[np.float64], cell: int) -> None:  # pragma: no cover
    # The cell's accumulator and its 32-byte record (both ends: numpy aligns it to 16 bytes only).
    _prefetch(af, cell)
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
    af: NDArray[np.float64],
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
                _prefetch_cell(af, rf, users[a] * n_signals + signals[a])
            _apply(af, rf, ri, users[i] * n_signals + signals[i], contrib[j], vals[j], ts_ms[i])


@nb.njit(cache=True)
def _apply_block(
    af: NDArray[np.float64],
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
                _prefetch_cell(af, rf, cell[j + _AHEAD])
            _apply(af, rf, ri, cell[j], contrib[j], vals[j], ts[j])


@nb.njit(cache=True)
def _accumulate_partitioned(
    af: NDArray[np.float64],
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
    # Radix partition by profile block (see csrc/accumulate.hpp accumulate), slice by slice. Returns
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
                af, rf, ri, (b << shift) * n_signals, packed, offset[b], offset[b + 1], n_signals,
                key_shift, signal_bits, landmark_ms, lam, expo, vals, contrib, cell, ts,
            )  # fmt: skip
    return int(n)
