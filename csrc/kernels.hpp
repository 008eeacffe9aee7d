// Decay-state kernels of affinity_sdk in plain C++17: no Python, no allocation the caller can see
// beyond scratch buffers. The numpy reference (affinity_sdk/kernels/_reference.py) is the contract;
// every function here computes the same numbers (checked by tests/test_kernels.py).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <system_error>
#include <thread>
#include <vector>

namespace affinity {
namespace kernels {

// Mirrors STATE_DTYPE in affinity_sdk/kernels/_layout.py: one record per (profile, signal). The
// forward-decayed sums live apart, in a (profiles, signals) array of doubles `acc`, so the raw score
// streams 8 bytes per cell instead of 40; an event writes its cell of both.
struct Record {
    double total;
    int64_t count;
    int64_t first_ms;
    int64_t last_ms;
};
static_assert(sizeof(Record) == 32, "Record must match STATE_DTYPE");

namespace detail {

inline uint64_t bits_of(double x) {
    uint64_t b;
    std::memcpy(&b, &x, sizeof b);
    return b;
}

inline double double_of(uint64_t b) {
    double x;
    std::memcpy(&x, &b, sizeof x);
    return x;
}

// exp(x) for |x| <= 708 by Cody-Waite reduction and a degree-13 Taylor polynomial (error ~1 ulp),
// written branch-free so the compiler vectorises it; std::exp is 5-10x slower per event because it
// cannot be vectorised without -ffast-math. Lanes outside the range are fixed up with std::exp.
constexpr double kExpLo = -708.0;
constexpr double kExpHi = 708.0;

// Hot loops are compiled twice, for AVX2 + FMA and for the baseline ISA, and picked at run time by
// CPU feature (not by CPU model: GCC's "arch=" clones check the model and miss AMD parts).
// AFFINITY_WIDE_CLONES adds AVX-512 (x86-64-v4) for the accumulate loops: the exp runs ~25 % faster
// on eight lanes (bit-identical: each lane does the same operations in the same order).
#if defined(__GNUC__) && defined(__x86_64__)
#define AFFINITY_CLONES __attribute__((noinline, target_clones("arch=x86-64-v3", "default")))
#define AFFINITY_WIDE_CLONES \
    __attribute__((noinline, target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AFFINITY_CLONES
#define AFFINITY_WIDE_CLONES
#endif

// Contribution v · exp(x) of each event from its exponent x, vectorised; returns whether any x lies
// outside [kExpLo, kExpHi] (NaN included), whose lanes the caller redoes with std::exp.
AFFINITY_WIDE_CLONES
inline bool exp_times(const double* __restrict x, const double* __restrict v, double* __restrict out,
                      std::size_t n) {
    const double log2e = 1.4426950408889634;
    const double ln2_hi = 6.93147180369123816490e-01;
    const double ln2_lo = 1.90821492927058770002e-10;
    const double shifter = 6755399441055744.0;  // 1.5 * 2^52: rounds to an integer in the low bits
    int bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
        // Clamped through two independent selects: GCC 12 does not if-convert a chained clamp.
        const double xi = x[i];
        bad |= !(xi >= kExpLo) | !(xi <= kExpHi);
        const double lo = xi < kExpLo ? kExpLo : xi;
        const double hi = xi > kExpHi ? kExpHi : xi;
        const double xc = xi < 0.0 ? lo : hi;
        const double t = xc * log2e + shifter;
        const double k = t - shifter;
        const double r = (xc - k * ln2_hi) - k * ln2_lo;
        // |r| <= ln2 / 2: the degree-13 Taylor remainder is below 1e-19.
        double p = 1.0 / 6227020800.0;
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        const uint64_t scale = (bits_of(t) + 1023u) << 52;
        out[i] = p * double_of(scale) * v[i];
    }
    return bad != 0;
}

inline void apply(double& acc, Record& r, double c, double v, int64_t t) {
    acc += c;
    r.total += v;
    r.count += 1;
    r.first_ms = t < r.first_ms ? t : r.first_ms;
    r.last_ms = t > r.last_ms ? t : r.last_ms;
}

// Contributions v · exp(λ_s (t − L)) of a chunk of events (exponent 0 where t == L, so λ = inf
// stays exact): a scalar pass for the exponents, then the vectorised exp.
inline void contributions(const int64_t* signals, const int64_t* ts_ms, const double* values,
                          int64_t landmark_ms, const double* lam, std::size_t n, double* expo,
                          double* out) {
    for (std::size_t j = 0; j < n; ++j) {
        const int64_t dt = ts_ms[j] - landmark_ms;
        expo[j] = dt == 0 ? 0.0 : lam[signals[j]] * static_cast<double>(dt);
    }
    if (!exp_times(expo, values, out, n)) return;
    for (std::size_t j = 0; j < n; ++j) {
        const double x = expo[j];
        if (!(x >= kExpLo && x <= kExpHi)) out[j] = std::exp(x) * values[j];
    }
}

}  // namespace detail

// accumulate (folding a batch of events into the state) lives in accumulate.hpp.

inline void rebase(double* acc, int64_t n_profiles, int64_t n_signals, const double* factors) {
    for (int64_t u = 0; u < n_profiles; ++u) {
        double* row = acc + u * n_signals;
        for (int64_t s = 0; s < n_signals; ++s) row[s] *= factors[s];
    }
}

inline void merge(double* into_acc, Record* into, const double* other_acc, const Record* other, int64_t n_cells) {
    for (int64_t i = 0; i < n_cells; ++i) {
        into_acc[i] += other_acc[i];
        Record& a = into[i];
        const Record& b = other[i];
        a.total += b.total;
        a.count += b.count;
        a.first_ms = b.first_ms < a.first_ms ? b.first_ms : a.first_ms;
        a.last_ms = b.last_ms > a.last_ms ? b.last_ms : a.last_ms;
    }
}

inline void decayed(const double* acc, int64_t n_profiles, int64_t n_signals, const double* factors, double* out) {
    for (int64_t u = 0; u < n_profiles; ++u) {
        for (int64_t s = 0; s < n_signals; ++s) out[u * n_signals + s] = acc[u * n_signals + s] * factors[s];
    }
}

// Σ_s coefs[s] · acc[u, s] per profile, s in order from 0.0 (live::raw_of sums one profile the same
// way, so both give the same double). Eight profiles at a time: their sums are independent chains
// of adds that overlap, where one profile's chain alone is bound by the add latency.
inline void raw_scores(const double* acc, int64_t n_profiles, int64_t n_signals, const double* coefs, double* out) {
    constexpr int64_t kTile = 8;
    int64_t u = 0;
    for (; u + kTile <= n_profiles; u += kTile) {
        const double* rows = acc + u * n_signals;
        double sum[kTile] = {};
        for (int64_t s = 0; s < n_signals; ++s) {
            const double c = coefs[s];
            for (int64_t k = 0; k < kTile; ++k) sum[k] += c * rows[k * n_signals + s];
        }
        for (int64_t k = 0; k < kTile; ++k) out[u + k] = sum[k];
    }
    for (; u < n_profiles; ++u) {
        const double* row = acc + u * n_signals;
        double sum = 0.0;
        for (int64_t s = 0; s < n_signals; ++s) sum += coefs[s] * row[s];
        out[u] = sum;
    }
}

// How many ranges parallel_ranges(n, threads, min_each, ...) cuts [0, n) into at most: a caller
// allocates what each range needs with it, before the threads start (a thread must not throw).
inline int64_t range_count(int64_t n, int64_t threads, int64_t min_each) {
    return std::max<int64_t>(1, std::min<int64_t>(threads, n / std::max<int64_t>(min_each, 1)));
}

// fn(lo, hi, k) over [0, n) cut into up to `threads` contiguous ranges k = 0, 1, ..., each of at
// least `min_each` elements and a multiple of `align` of them (so that no two threads write one
// cache line of an output); range 0 runs on the caller, and a range whose thread cannot be started
// runs there too. Returns the number of ranges (at most range_count). `fn` must not throw.
template <class Fn>
int64_t parallel_ranges(int64_t n, int64_t threads, int64_t min_each, int64_t align, Fn fn) {
    const int64_t t = range_count(n, threads, min_each);
    if (t <= 1) {
        fn(int64_t{0}, n, int64_t{0});
        return 1;
    }
    const int64_t per = ((n + t - 1) / t + align - 1) / align * align;
    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(t - 1));
    int64_t ranges = 1;
    for (int64_t k = 1; k < t; ++k) {
        const int64_t lo = std::min(n, k * per), hi = std::min(n, lo + per);
        if (lo >= hi) break;
        ++ranges;
        try {
            pool.emplace_back(fn, lo, hi, k);
        } catch (const std::system_error&) {  // no thread to be had: this range on the caller
            fn(lo, hi, k);
        }
    }
    fn(int64_t{0}, std::min(n, per), int64_t{0});
    for (auto& th : pool) th.join();
    return ranges;
}

// Fewest cells per thread worth starting one for (a thread start costs ~20-50 us).
constexpr int64_t kCellsPerThread = int64_t{1} << 18;

// raw_scores on up to `threads` threads over contiguous ranges of profiles (ranges a multiple of 8
// profiles, so no two threads write one line of `out`). Every profile's sum is the same loop in the
// same order, so the result is bit-identical for any thread count.
inline void raw_scores_threaded(const double* acc, int64_t n_profiles, int64_t n_signals, const double* coefs,
                                double* out, int64_t threads) {
    const int64_t min_each = std::max<int64_t>(1, kCellsPerThread / std::max<int64_t>(n_signals, 1));
    parallel_ranges(n_profiles, threads, min_each, 8, [&](int64_t lo, int64_t hi, int64_t) {
        raw_scores(acc + lo * n_signals, hi - lo, n_signals, coefs, out + lo);
    });
}

// Per row, the k largest entries (descending; ties by lower column; NaN ranks as -inf), padded with
// column -1 / NaN when a row has fewer than k entries. Row i has columns cols[j] and values vals[j],
// j in [start[i], start[i + 1]); dense rows pass cols == nullptr (column = position).
inline void topk_sparse(const int64_t* start, const int64_t* cols, const double* vals, int64_t n_rows, int64_t k,
                        int64_t* out_index, double* out_value) {
    std::vector<int64_t> order;
    std::vector<double> key;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (int64_t r = 0; r < n_rows; ++r) {
        const int64_t lo = start[r];
        const int64_t m = start[r + 1] - lo;
        const int64_t kk = std::min(k, m);
        order.resize(static_cast<std::size_t>(m));
        key.resize(static_cast<std::size_t>(m));
        for (int64_t j = 0; j < m; ++j) {
            order[static_cast<std::size_t>(j)] = j;
            const double v = vals[lo + j];
            key[static_cast<std::size_t>(j)] = v != v ? -std::numeric_limits<double>::infinity() : v;
        }
        auto col = [&](int64_t j) { return cols ? cols[lo + j] : j; };
        std::partial_sort(order.begin(), order.begin() + kk, order.end(), [&](int64_t a, int64_t b) {
            const double ka = key[static_cast<std::size_t>(a)], kb = key[static_cast<std::size_t>(b)];
            return ka > kb || (ka == kb && col(a) < col(b));
        });
        for (int64_t j = 0; j < k; ++j) {
            if (j < kk) {
                const int64_t at = order[static_cast<std::size_t>(j)];
                out_index[r * k + j] = col(at);
                out_value[r * k + j] = vals[lo + at];
            } else {
                out_index[r * k + j] = -1;
                out_value[r * k + j] = nan;
            }
        }
    }
}

}  // namespace kernels
}  // namespace affinity
