// Decay-state kernels of affinity_sdk in plain C++17: no Python, no allocation the caller can see
// beyond scratch buffers. The numpy reference (affinity_sdk/kernels/_reference.py) is the contract;
// every function here computes the same numbers (checked by tests/test_kernels.py).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

namespace affinity {
namespace kernels {

// Mirrors STATE_DTYPE in affinity_sdk/kernels/_layout.py: one record per (profile, signal), fields
// together so an event touches a single 40-byte record.
struct Record {
    double acc;
    double total;
    int64_t count;
    int64_t first_ms;
    int64_t last_ms;
};
static_assert(sizeof(Record) == 40, "Record must match STATE_DTYPE");

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
#if defined(__GNUC__) && defined(__x86_64__)
#define AFFINITY_CLONES __attribute__((noinline, target_clones("arch=x86-64-v3", "default")))
#else
#define AFFINITY_CLONES
#endif

AFFINITY_CLONES
inline void exp_fast_block(double* __restrict x, std::size_t n) {
    const double log2e = 1.4426950408889634;
    const double ln2_hi = 6.93147180369123816490e-01;
    const double ln2_lo = 1.90821492927058770002e-10;
    const double shifter = 6755399441055744.0;  // 1.5 * 2^52: rounds to an integer in the low bits
    for (std::size_t i = 0; i < n; ++i) {
        // Clamped through two independent selects: GCC 12 does not if-convert a chained clamp.
        const double xi = x[i];
        const double lo = xi < kExpLo ? kExpLo : xi;
        const double hi = xi > kExpHi ? kExpHi : xi;
        const double xc = xi < 0.0 ? lo : hi;
        const double t = xc * log2e + shifter;
        const double k = t - shifter;
        const double r = (xc - k * ln2_hi) - k * ln2_lo;
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
        x[i] = p * double_of(scale);
    }
}

AFFINITY_CLONES
inline bool any_outside_exp_range(const double* __restrict x, std::size_t n) {
    int bad = 0;
    for (std::size_t i = 0; i < n; ++i) bad |= !(x[i] >= kExpLo) | !(x[i] <= kExpHi);
    return bad != 0;
}

// exp in place over a block; `orig` keeps the exponents so out-of-range lanes (NaN, +-inf, and
// results that overflow or are subnormal) are redone exactly with std::exp.
inline void exp_block(double* __restrict x, const double* __restrict orig, std::size_t n) {
    exp_fast_block(x, n);
    if (!any_outside_exp_range(orig, n)) return;
    for (std::size_t i = 0; i < n; ++i) {
        const double xi = orig[i];
        if (!(xi >= kExpLo && xi <= kExpHi)) x[i] = std::exp(xi);
    }
}

inline void apply(Record& r, double c, double v, int64_t t) {
    r.acc += c;
    r.total += v;
    r.count += 1;
    r.first_ms = t < r.first_ms ? t : r.first_ms;
    r.last_ms = t > r.last_ms ? t : r.last_ms;
}

// One event routed to its profile block: cell within the block and what it adds.
struct Packed {
    int64_t cell;
    double contribution;
    double value;
    int64_t ts_ms;
};

constexpr std::size_t kChunk = 1024;

// Exponents λ_s (t − L) of a chunk, 0 where t == L (so λ = inf stays exact), then exp in place.
inline void contributions(const int64_t* signals, const int64_t* ts_ms, const double* values,
                          int64_t landmark_ms, const double* lam, std::size_t n, double* expo,
                          double* out) {
    for (std::size_t j = 0; j < n; ++j) {
        const int64_t dt = ts_ms[j] - landmark_ms;
        expo[j] = dt == 0 ? 0.0 : lam[signals[j]] * static_cast<double>(dt);
        out[j] = expo[j];
    }
    exp_block(out, expo, n);
    for (std::size_t j = 0; j < n; ++j) out[j] *= values[j];
}

}  // namespace detail

// Index of the first event whose profile or signal code is out of range, or -1.
inline int64_t first_bad_event(const int64_t* users, const int64_t* signals, int64_t n, int64_t n_profiles,
                               int64_t n_signals) {
    for (int64_t i = 0; i < n; ++i) {
        if (static_cast<uint64_t>(users[i]) >= static_cast<uint64_t>(n_profiles) ||
            static_cast<uint64_t>(signals[i]) >= static_cast<uint64_t>(n_signals))
            return i;
    }
    return -1;
}

// Fold events into records (codes already validated). Large batches against a state bigger than
// the cache are radix-partitioned by profile block first, so each block's records stay in L2
// while its events are applied; otherwise events are applied directly.
inline void accumulate(Record* records, int64_t n_profiles, int64_t n_signals, const int64_t* users,
                       const int64_t* signals, const int64_t* ts_ms, const double* values, int64_t n,
                       int64_t landmark_ms, const double* lam, std::size_t block_bytes = 256 * 1024) {
    using namespace detail;
    if (n <= 0 || n_profiles <= 0 || n_signals <= 0) return;
    double expo[kChunk];
    double contrib[kChunk];
    const std::size_t record_row = static_cast<std::size_t>(n_signals) * sizeof(Record);
    int shift = 0;
    while ((std::size_t{2} << shift) * record_row <= block_bytes) ++shift;
    const int64_t n_blocks = ((n_profiles - 1) >> shift) + 1;
    const std::size_t state_bytes = static_cast<std::size_t>(n_profiles) * record_row;
    if (n_blocks <= 1 || state_bytes <= 4 * block_bytes || n < 4096) {
        for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
            const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(kChunk, n - i0));
            contributions(signals + i0, ts_ms + i0, values + i0, landmark_ms, lam, m, expo, contrib);
            for (std::size_t j = 0; j < m; ++j) {
                const int64_t i = i0 + static_cast<int64_t>(j);
                apply(records[users[i] * n_signals + signals[i]], contrib[j], values[i], ts_ms[i]);
            }
        }
        return;
    }
    // Bounded scratch: events are partitioned in slices of at most 4M (128 MB of Packed).
    const int64_t slice = std::min<int64_t>(n, int64_t{1} << 22);
    // Default-initialised (not zeroed): every slot is written before it is read.
    std::unique_ptr<Packed[]> packed(new Packed[static_cast<std::size_t>(slice)]);
    std::vector<int64_t> offset(static_cast<std::size_t>(n_blocks) + 1);
    std::vector<int64_t> cursor(static_cast<std::size_t>(n_blocks));
    const int64_t in_block_mask = (int64_t{1} << shift) - 1;
    for (int64_t s0 = 0; s0 < n; s0 += slice) {
        const int64_t m_slice = std::min(slice, n - s0);
        std::fill(offset.begin(), offset.end(), 0);
        for (int64_t i = s0; i < s0 + m_slice; ++i) ++offset[(users[i] >> shift) + 1];
        for (int64_t b = 0; b < n_blocks; ++b) offset[b + 1] += offset[b];
        std::copy(offset.begin(), offset.end() - 1, cursor.begin());
        for (int64_t i0 = s0; i0 < s0 + m_slice; i0 += kChunk) {
            const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(kChunk, s0 + m_slice - i0));
            contributions(signals + i0, ts_ms + i0, values + i0, landmark_ms, lam, m, expo, contrib);
            for (std::size_t j = 0; j < m; ++j) {
                const int64_t i = i0 + static_cast<int64_t>(j);
                const int64_t u = users[i];
                Packed& p = packed[static_cast<std::size_t>(cursor[u >> shift]++)];
                p.cell = (u & in_block_mask) * n_signals + signals[i];
                p.contribution = contrib[j];
                p.value = values[i];
                p.ts_ms = ts_ms[i];
            }
        }
        for (int64_t b = 0; b < n_blocks; ++b) {
            Record* base = records + (b << shift) * n_signals;
            for (int64_t e = offset[b]; e < offset[b + 1]; ++e) {
                const Packed& p = packed[static_cast<std::size_t>(e)];
                apply(base[p.cell], p.contribution, p.value, p.ts_ms);
            }
        }
    }
}

inline void rebase(Record* records, int64_t n_profiles, int64_t n_signals, const double* factors) {
    for (int64_t u = 0; u < n_profiles; ++u) {
        Record* row = records + u * n_signals;
        for (int64_t s = 0; s < n_signals; ++s) row[s].acc *= factors[s];
    }
}

inline void merge(Record* into, const Record* other, int64_t n_cells) {
    for (int64_t i = 0; i < n_cells; ++i) {
        Record& a = into[i];
        const Record& b = other[i];
        a.acc += b.acc;
        a.total += b.total;
        a.count += b.count;
        a.first_ms = b.first_ms < a.first_ms ? b.first_ms : a.first_ms;
        a.last_ms = b.last_ms > a.last_ms ? b.last_ms : a.last_ms;
    }
}

inline void decayed(const Record* records, int64_t n_profiles, int64_t n_signals, const double* factors,
                    double* out) {
    for (int64_t u = 0; u < n_profiles; ++u) {
        for (int64_t s = 0; s < n_signals; ++s) out[u * n_signals + s] = records[u * n_signals + s].acc * factors[s];
    }
}

inline void raw_scores(const Record* records, int64_t n_profiles, int64_t n_signals, const double* coefs,
                       double* out) {
    for (int64_t u = 0; u < n_profiles; ++u) {
        const Record* row = records + u * n_signals;
        double sum = 0.0;
        for (int64_t s = 0; s < n_signals; ++s) sum += coefs[s] * row[s].acc;
        out[u] = sum;
    }
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
