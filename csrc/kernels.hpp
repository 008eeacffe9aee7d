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
#include <new>
#include <limits>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
#if defined(__GNUC__) && defined(__x86_64__)
#define AFFINITY_CLONES __attribute__((noinline, target_clones("arch=x86-64-v3", "default")))
#else
#define AFFINITY_CLONES
#endif

// Contribution v · exp(x) of each event from its exponent x, vectorised; returns whether any x lies
// outside [kExpLo, kExpHi] (NaN included), whose lanes the caller redoes with std::exp.
AFFINITY_CLONES
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

// One event routed to its profile block in 16 bytes: `key` packs t − L (high bits, signed), the
// profile within the block and the signal (low bits); `value` is the event's value.
struct Packed {
    int64_t key;
    double value;
};

constexpr std::size_t kChunk = 512;
// Events the packing pass gathers per block before streaming them out (two 64-byte lines): one
// unpredictable branch per 8 events instead of per 4.
constexpr int64_t kStage = 8;
// How far ahead the scatter loops prefetch the cell they will update.
constexpr std::size_t kAhead = 16;
// How far ahead (in events) apply_block prefetches the packed events it reads.
constexpr std::size_t kStreamAhead = 64;

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

// Scratch memory for the partition, asking Linux for transparent huge pages: page faults on a
// fresh buffer cost more than the partition itself with 4 KiB pages.
template <class T>
struct Scratch {
    T* data = nullptr;
    void* map = nullptr;
    std::size_t map_bytes = 0;
    explicit Scratch(std::size_t n) {
        constexpr std::size_t kHuge = std::size_t{2} << 20;
        std::size_t bytes = n * sizeof(T);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (bytes >= kHuge) {
            // A fresh anonymous mapping, 2 MiB aligned and marked for huge pages before its first
            // touch: malloc'd memory may come back already mapped with 4 KiB pages.
            map_bytes = ((bytes + kHuge - 1) & ~(kHuge - 1)) + kHuge;
            map = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (map == MAP_FAILED) throw std::bad_alloc();
            const auto base = (reinterpret_cast<std::uintptr_t>(map) + kHuge - 1) & ~(kHuge - 1);
            madvise(reinterpret_cast<void*>(base), map_bytes - kHuge, MADV_HUGEPAGE);
            data = reinterpret_cast<T*>(base);
            return;
        }
#endif
        // 64-byte aligned: the partition streams whole cache lines into it.
        data = static_cast<T*>(std::aligned_alloc(64, bytes > 0 ? (bytes + 63) & ~std::size_t{63} : 64));
        if (!data) throw std::bad_alloc();
    }
    ~Scratch() {
        if (map != nullptr) {
#if defined(__linux__)
            munmap(map, map_bytes);
#endif
        } else {
            std::free(data);
        }
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
};

// Copy kStage packed events (two 64-byte lines, both 64-byte aligned) to memory with non-temporal
// stores: the partition's destination is written once and read back much later, so it should
// neither be read for ownership nor evict the write-combining buffers from the cache.
inline void stream_stage(Packed* dst, const Packed* src) {
#if defined(__SSE2__)
    const __m128i* s = reinterpret_cast<const __m128i*>(src);
    __m128i* d = reinterpret_cast<__m128i*>(dst);
    for (int64_t k = 0; k < kStage; ++k) _mm_stream_si128(d + k, _mm_load_si128(s + k));
#else
    std::memcpy(dst, src, kStage * sizeof(Packed));
#endif
}

// Keys and blocks of a group of events for the packing pass (see accumulate), vectorised: key[j]
// packs t − L (high bits), the profile within its block and the signal; block[j] is the profile's
// block. Returns bits whose top bit is set when some signal code is out of range or some t − L does
// not fit the key (profile codes were checked by the counting pass).
AFFINITY_CLONES
inline uint64_t pack_keys(const int64_t* __restrict users, const int64_t* __restrict signals,
                          const int64_t* __restrict ts_ms, std::size_t n, int64_t landmark_ms, int64_t n_signals,
                          int shift, int signal_bits, uint64_t* __restrict key, uint64_t* __restrict block) {
    const int key_shift = shift + signal_bits;
    const uint64_t in_block_mask = (uint64_t{1} << shift) - 1;
    const uint64_t dt_half = uint64_t{1} << (63 - key_shift);  // t − L must lie in [-dt_half, dt_half)
    const uint64_t ns = static_cast<uint64_t>(n_signals);
    uint64_t bad = 0;
    for (std::size_t j = 0; j < n; ++j) {
        const uint64_t u = static_cast<uint64_t>(users[j]);
        const uint64_t sig = static_cast<uint64_t>(signals[j]);
        const uint64_t dt = static_cast<uint64_t>(ts_ms[j]) - static_cast<uint64_t>(landmark_ms);
        // Top bit set unless 0 <= sig < n_signals (n_signals < 2^63) and dt + dt_half < 2^(64 - key_shift).
        bad |= sig | ~(sig - ns) | (uint64_t{0} - ((dt + dt_half) >> (64 - key_shift)));
        block[j] = u >> shift;
        key[j] = (dt << key_shift) | ((u & in_block_mask) << signal_bits) | sig;
    }
    return bad;
}

inline void stream_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

// Events applied in input order, each chunk's contributions first, the record a few events ahead
// prefetched (for states that fit in cache or batches too small to partition).
inline void accumulate_direct(double* acc, Record* records, int64_t n_signals, const int64_t* users, const int64_t* signals,
                              const int64_t* ts_ms, const double* values, int64_t n, int64_t landmark_ms,
                              const double* lam) {
    double expo[kChunk];
    double contrib[kChunk];
    for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(kChunk, n - i0));
        contributions(signals + i0, ts_ms + i0, values + i0, landmark_ms, lam, m, expo, contrib);
        const int64_t ahead_end = std::min<int64_t>(n, i0 + static_cast<int64_t>(m + kAhead));
        for (std::size_t j = 0; j < m; ++j) {
            const int64_t i = i0 + static_cast<int64_t>(j);
            const int64_t a = i + static_cast<int64_t>(kAhead);
            if (a < ahead_end) {
                const int64_t c = users[a] * n_signals + signals[a];
                __builtin_prefetch(acc + c, 1);
                __builtin_prefetch(records + c, 1);
            }
            const int64_t c = users[i] * n_signals + signals[i];
            apply(acc[c], records[c], contrib[j], values[i], ts_ms[i]);
        }
    }
}

// Apply one block's packed events (the block's sums at `acc`, its records at `base`): exponents,
// the vectorised exp and the scatter chunk by chunk, prefetching the cell a few events ahead.
//
// The next block's `next_cells` cells (sums at `next_acc`, records at `next`) are prefetched
// meanwhile, a line of each per event, so that they stream in while this block is applied in cache.
inline void apply_block(double* acc, Record* base, const Packed* ev, int64_t m_events, int64_t n_signals,
                        int key_shift, int signal_bits, int64_t landmark_ms, const double* lam,
                        const double* next_acc, const Record* next, std::size_t next_cells) {
    const char* pf = reinterpret_cast<const char*>(next);
    const char* const pf_end = pf + next_cells * sizeof(Record);
    const char* pfa = reinterpret_cast<const char*>(next_acc);
    const char* const pfa_end = pfa + next_cells * sizeof(double);

    double expo[kChunk];
    double vals[kChunk];
    double contrib[kChunk];
    int64_t cell[kChunk + kAhead];
    int64_t ts[kChunk];
    const uint64_t in_block_mask = (uint64_t{1} << (key_shift - signal_bits)) - 1;
    const uint64_t signal_mask = (uint64_t{1} << signal_bits) - 1;
    auto decode = [&](std::size_t j, const Packed& p) {
        const uint64_t key = static_cast<uint64_t>(p.key);
        cell[j] = static_cast<int64_t>((key >> signal_bits) & in_block_mask) * n_signals +
                  static_cast<int64_t>(key & signal_mask);
    };
    for (int64_t e0 = 0; e0 < m_events; e0 += kChunk) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(kChunk, m_events - e0));
        const Packed* p = ev + e0;
        for (std::size_t j = 0; j < m; ++j) {
            // The packed events are read in one sequential sweep over all blocks: request them 1 KiB
            // ahead, beyond the chunk and the block (the hardware prefetcher alone falls behind here).
            if ((j & 3) == 0) __builtin_prefetch(p + j + kStreamAhead);
            const int64_t dt = p[j].key >> key_shift;
            const uint64_t sig = static_cast<uint64_t>(p[j].key) & signal_mask;
            expo[j] = dt == 0 ? 0.0 : lam[sig] * static_cast<double>(dt);
            vals[j] = p[j].value;
            ts[j] = static_cast<int64_t>(static_cast<uint64_t>(landmark_ms) + static_cast<uint64_t>(dt));
            decode(j, p[j]);
        }
        if (exp_times(expo, vals, contrib, m)) {
            for (std::size_t j = 0; j < m; ++j) {
                const double x = expo[j];
                if (!(x >= kExpLo && x <= kExpHi)) contrib[j] = std::exp(x) * vals[j];
            }
        }
        const std::size_t ahead = static_cast<std::size_t>(std::min<int64_t>(kAhead, m_events - e0 - m));
        for (std::size_t j = 0; j < ahead; ++j) decode(m + j, p[m + j]);
        const std::size_t reach = m + ahead;
        for (std::size_t j = 0; j < m; ++j) {
            if (j + kAhead < reach) {
                __builtin_prefetch(acc + cell[j + kAhead], 1);
                __builtin_prefetch(base + cell[j + kAhead], 1);
            }
            if (pf < pf_end) {
                __builtin_prefetch(pf, 1);
                pf += 64;
            }
            if (pfa < pfa_end) {
                __builtin_prefetch(pfa, 1);
                pfa += 64;
            }
            apply(acc[cell[j]], base[cell[j]], contrib[j], vals[j], ts[j]);
        }
    }
    for (; pf < pf_end; pf += 64) __builtin_prefetch(pf, 1);
    for (; pfa < pfa_end; pfa += 64) __builtin_prefetch(pfa, 1);
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

// Defaults: records per profile block (L2-sized) and events packed per slice (16 bytes of scratch each).
constexpr std::size_t kBlockBytes = std::size_t{512} << 10;
constexpr int64_t kMaxSlice = int64_t{1} << 24;

// Fold events into records; returns -1, or the index of the first event whose profile or signal
// code is out of range, in which case nothing was written.
//
// Large batches against a state bigger than the cache are radix-partitioned by profile block: one
// counting pass over the profiles, one pass packing each event into 16 bytes at its block's place
// (checking the codes on the way: nothing is written to the state before the whole batch is
// checked; the keys computed 512 events at a time in a vectorised loop, then each block's events
// gathered 8 at a time in a staging buffer and streamed out in whole cache lines), then block by
// block the decay factors in a vectorised pass (the packed events prefetched 1 KiB ahead) and the
// scatter, with the block's records prefetched during the previous block (blocks of a power of two
// of profiles, at most block_bytes = 512 KiB of records by default: 320 KiB at 8 signals).
// Otherwise (small state or batch, or times too far from the landmark to pack) events are applied
// directly, prefetching a few ahead.
inline int64_t accumulate(double* acc, Record* records, int64_t n_profiles, int64_t n_signals, const int64_t* users,
                          const int64_t* signals, const int64_t* ts_ms, const double* values, int64_t n,
                          int64_t landmark_ms, const double* lam, std::size_t block_bytes = kBlockBytes,
                          int64_t max_slice = kMaxSlice) {
    using namespace detail;
    if (n <= 0) return -1;
    if (n_profiles <= 0 || n_signals <= 0) return 0;
    auto direct = [&]() -> int64_t {
        const int64_t bad = first_bad_event(users, signals, n, n_profiles, n_signals);
        if (bad < 0) accumulate_direct(acc, records, n_signals, users, signals, ts_ms, values, n, landmark_ms, lam);
        return bad;
    };
    const std::size_t record_row = static_cast<std::size_t>(n_signals) * (sizeof(Record) + sizeof(double));
    int shift = 0;  // profiles per block: 2^shift
    while (shift < 40 && (std::size_t{2} << shift) * record_row <= block_bytes) ++shift;
    int signal_bits = 0;
    while ((int64_t{1} << signal_bits) < n_signals) ++signal_bits;
    const int key_shift = shift + signal_bits;
    const int64_t n_blocks = ((n_profiles - 1) >> shift) + 1;
    const std::size_t state_bytes = static_cast<std::size_t>(n_profiles) * record_row;
    if (n_blocks <= 2 || state_bytes <= 4 * block_bytes || n < 65536 || key_shift > 24) return direct();
    // Slices of at most max_slice events (16 bytes of scratch each), all the same size.
    const int64_t n_slices = (n + max_slice - 1) / max_slice;
    const int64_t slice = (n + n_slices - 1) / n_slices;
    if (n_slices > 1) {
        // Later slices are applied after the first one has been written: check them all first.
        const int64_t bad = first_bad_event(users, signals, n, n_profiles, n_signals);
        if (bad >= 0) return bad;
    }
    // Each block's events start on a 128-byte boundary (kStage = 8 events), so the packing pass can
    // gather them 8 at a time in a per-block staging buffer (in L2) and stream two whole lines out.
    Scratch<Packed> packed(static_cast<std::size_t>(slice) + kStage * static_cast<std::size_t>(n_blocks));
    Scratch<Packed> stage(kStage * static_cast<std::size_t>(n_blocks));
    std::unique_ptr<int64_t[]> offset(new int64_t[static_cast<std::size_t>(n_blocks) + 1]);
    std::unique_ptr<int64_t[]> cursor(new int64_t[static_cast<std::size_t>(n_blocks)]);
    for (int64_t s0 = 0; s0 < n; s0 += slice) {
        const int64_t m_slice = std::min(slice, n - s0);
        std::fill(offset.get(), offset.get() + n_blocks + 1, 0);
        uint64_t bad_code = 0;
        {
            int64_t* count = offset.get() + 1;
            int64_t i = s0;
            const int64_t end = s0 + m_slice;
            for (; i + 4 <= end; i += 4) {
                const uint64_t u0 = static_cast<uint64_t>(users[i]), u1 = static_cast<uint64_t>(users[i + 1]);
                const uint64_t u2 = static_cast<uint64_t>(users[i + 2]), u3 = static_cast<uint64_t>(users[i + 3]);
                const uint64_t np = static_cast<uint64_t>(n_profiles);
                const bool b0 = u0 >= np, b1 = u1 >= np, b2 = u2 >= np, b3 = u3 >= np;
                bad_code |= b0 | b1 | b2 | b3;
                ++count[b0 ? 0 : u0 >> shift];
                ++count[b1 ? 0 : u1 >> shift];
                ++count[b2 ? 0 : u2 >> shift];
                ++count[b3 ? 0 : u3 >> shift];
            }
            for (; i < end; ++i) {
                const uint64_t u = static_cast<uint64_t>(users[i]);
                const bool bad = u >= static_cast<uint64_t>(n_profiles);
                bad_code |= bad;
                ++count[bad ? 0 : u >> shift];
            }
        }
        if (bad_code) return first_bad_event(users, signals, n, n_profiles, n_signals);
        // Block starts rounded up to a multiple of kStage events.
        for (int64_t b = 0; b < n_blocks; ++b)
            offset[b + 1] = offset[b] + ((offset[b + 1] + kStage - 1) & ~(kStage - 1));
        std::copy(offset.get(), offset.get() + n_blocks, cursor.get());
        Packed* const dest = packed.data;
        Packed* const stages = stage.data;
        // In groups: the keys first (vectorised), then each event through its block's staging buffer.
        uint64_t key[kChunk];
        uint64_t blk[kChunk];
        uint64_t bad_bits = 0;
        for (int64_t g = s0; g < s0 + m_slice; g += static_cast<int64_t>(kChunk)) {
            const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(kChunk, s0 + m_slice - g));
            bad_bits |= pack_keys(users + g, signals + g, ts_ms + g, m, landmark_ms, n_signals, shift, signal_bits, key,
                                  blk);
            const double* const v = values + g;
            for (std::size_t j = 0; j < m; ++j) {
                const uint64_t b = blk[j];
                const int64_t pos = cursor[b]++;
                Packed* const buf = stages + kStage * b;
                Packed& p = buf[pos & (kStage - 1)];
                p.key = static_cast<int64_t>(key[j]);
                p.value = v[j];
                if ((pos & (kStage - 1)) == kStage - 1) stream_stage(dest + (pos - (kStage - 1)), buf);
            }
        }
        for (int64_t b = 0; b < n_blocks; ++b) {
            const int64_t k = cursor[b] & (kStage - 1);
            if (k)
                std::memcpy(dest + (cursor[b] - k), stages + kStage * b, static_cast<std::size_t>(k) * sizeof(Packed));
        }
        stream_fence();
        if (bad_bits >> 63) {  // a signal code out of range, or a time too far from the landmark to pack
            const int64_t bad = first_bad_event(users, signals, n, n_profiles, n_signals);
            if (bad >= 0) return bad;
            if (s0 == 0) return direct();
            accumulate_direct(acc, records, n_signals, users + s0, signals + s0, ts_ms + s0, values + s0, n - s0,
                              landmark_ms, lam);
            return -1;
        }
        const int64_t block_cells = (int64_t{1} << shift) * n_signals;
        for (int64_t b = 0; b < n_blocks; ++b) {
            const int64_t next_cells =
                b + 1 < n_blocks ? std::min(block_cells, n_profiles * n_signals - (b + 1) * block_cells) : 0;
            apply_block(acc + b * block_cells, records + b * block_cells, dest + offset[b], cursor[b] - offset[b],
                        n_signals, key_shift, signal_bits, landmark_ms, lam, acc + (b + 1) * block_cells,
                        records + (b + 1) * block_cells, static_cast<std::size_t>(next_cells));
        }
    }
    return -1;
}

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

// Fewest cells per thread worth starting one for (a thread start costs ~20-50 us).
constexpr int64_t kCellsPerThread = int64_t{1} << 18;

// raw_scores on up to `threads` threads over contiguous ranges of profiles (ranges a multiple of 8
// profiles, so no two threads write one line of `out`). Every profile's sum is the same loop in the
// same order, so the result is bit-identical for any thread count.
inline void raw_scores_threaded(const double* acc, int64_t n_profiles, int64_t n_signals, const double* coefs,
                                double* out, int64_t threads) {
    const int64_t cells = n_profiles * n_signals;
    const int64_t t = std::max<int64_t>(1, std::min<int64_t>(threads, cells / kCellsPerThread));
    if (t <= 1) return raw_scores(acc, n_profiles, n_signals, coefs, out);
    const int64_t per = ((n_profiles + t - 1) / t + 7) & ~int64_t{7};
    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(t - 1));
    for (int64_t k = 1; k < t; ++k) {
        const int64_t lo = std::min(n_profiles, k * per), hi = std::min(n_profiles, lo + per);
        if (lo >= hi) break;
        try {
            pool.emplace_back(raw_scores, acc + lo * n_signals, hi - lo, n_signals, coefs, out + lo);
        } catch (const std::system_error&) {  // no thread to be had: this range on the caller
            raw_scores(acc + lo * n_signals, hi - lo, n_signals, coefs, out + lo);
        }
    }
    raw_scores(acc, std::min(n_profiles, per), n_signals, coefs, out);
    for (auto& th : pool) th.join();
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
