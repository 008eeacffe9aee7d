// accumulate: fold a batch of events into the decay state (acc + records), the hot loop of ingestion.
// Every cell receives its events' additions in input order, so the result is bit-identical whatever
// path (direct or partitioned) a batch takes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "kernels.hpp"

namespace affinity {
namespace kernels {
namespace detail {

// One event routed to its profile block in 16 bytes: `key` packs t − L (high bits, signed), the
// profile within the block and the signal (low bits); `value` is the event's value.
struct Packed {
    int64_t key;
    double value;
};

constexpr std::size_t kChunk = 512;
// How far ahead the direct path prefetches the cell it will update.
constexpr std::size_t kAhead = 16;

// Scratch memory for the partition, asking Linux for transparent huge pages: page faults on a
// fresh buffer cost more than the partition itself with 4 KiB pages.
template <class T>
struct Scratch {
    T* data = nullptr;
    std::size_t size = 0;
    void* map = nullptr;
    std::size_t map_bytes = 0;
    explicit Scratch(std::size_t n) : size(n) {
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

// The partition's scratch, kept between calls: even with huge pages, the kernel zeroing a fresh
// buffer costs ~1 ns per event (~10 % of a large batch). One caller at a time uses it (the others
// allocate their own); it is kept for slices of at most kKeepEvents events (64 MiB, so an embedding
// process does not hold a big batch's scratch for good) until release_scratch().
constexpr std::size_t kKeepEvents = std::size_t{1} << 22;
struct ScratchCache {
    std::mutex lock;
    std::unique_ptr<Scratch<Packed>> buf;
};

inline ScratchCache& scratch_cache() {
    static ScratchCache cache;
    return cache;
}

// Keys and blocks of a group of events for the packing pass (see accumulate), vectorised: key[j]
// packs t − L (high bits), the profile within its block and the signal; block[j] is the profile's
// block. Returns bits whose top bit is set when some signal code is out of range or some t − L does
// not fit the key (profile codes were checked by the counting pass).
AFFINITY_WIDE_CLONES
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

// Exponents λ_s (t − L) of a chunk of packed events (+0.0 where t == L, so λ = inf stays exact) and
// their values, vectorised (the scalar loop took about as long as the exp). The select is a mask:
// GCC turns `dt == 0 ? 0.0 : x` into a branch and then keeps the loop scalar.
AFFINITY_WIDE_CLONES
inline void unpack_exponents(const Packed* __restrict ev, std::size_t n, int key_shift, uint64_t signal_mask,
                             const double* __restrict lam, double* __restrict expo, double* __restrict vals) {
    for (std::size_t j = 0; j < n; ++j) {
        const int64_t key = ev[j].key;
        const int64_t dt = key >> key_shift;
        const double x = lam[static_cast<uint64_t>(key) & signal_mask] * static_cast<double>(dt);
        expo[j] = double_of(bits_of(x) & (uint64_t{0} - static_cast<uint64_t>(dt != 0)));
        vals[j] = ev[j].value;
    }
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
// the vectorised exp and the scatter chunk by chunk (the scatter decodes cell and time from the
// chunk again, still in L1, rather than through more scratch arrays).
//
// The next block's `next_cells` cells (sums at `next_acc`, records at `next`) are prefetched
// meanwhile, so that they stream in while this block is applied in cache (without it the call is
// ~70 % slower): one stream of lines spread evenly over this block's events, at most one line per
// event (the rest after the last event), fewer prefetches in flight at a time leaving the L1 miss
// buffers to the scatter's own misses (a line of each array per event from the block's start made
// this loop 5-10 % slower). The records come first: they are 4/5 of the lines, and the pages of a
// fresh np.zeros `acc` are not mapped yet, so prefetching them does nothing until the scatter's
// first write faults them in. The cells of this block are not prefetched one by one: they are
// already in L2, and the extra loads cost more than the L1 misses they save.
inline void apply_block(double* acc, Record* base, const Packed* ev, int64_t m_events, int64_t n_signals,
                        int key_shift, int signal_bits, int64_t landmark_ms, const double* lam,
                        const double* next_acc, const Record* next, std::size_t next_cells) {
    const char* pf = reinterpret_cast<const char*>(next);
    const char* const pf_end = pf + next_cells * sizeof(Record);
    const char* pfa = reinterpret_cast<const char*>(next_acc);
    const char* const pfa_end = pfa + next_cells * sizeof(double);
    // A prefetch each time `due` (16-bit fixed point) passes 1: `rate` ~ lines / events, capped at 1.
    constexpr uint32_t kOne = uint32_t{1} << 16;
    const uint64_t lines = next_cells * (sizeof(Record) + sizeof(double)) / 64 + 2;
    const uint32_t rate = lines >= static_cast<uint64_t>(m_events)
                              ? kOne
                              : static_cast<uint32_t>((lines << 16) / static_cast<uint64_t>(m_events)) + 1;
    uint32_t due = 0;

    double expo[kChunk];
    double vals[kChunk];
    double contrib[kChunk];
    const uint64_t in_block_mask = (uint64_t{1} << (key_shift - signal_bits)) - 1;
    const uint64_t signal_mask = (uint64_t{1} << signal_bits) - 1;
    for (int64_t e0 = 0; e0 < m_events; e0 += kChunk) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(kChunk, m_events - e0));
        const Packed* p = ev + e0;
        unpack_exponents(p, m, key_shift, signal_mask, lam, expo, vals);
        if (exp_times(expo, vals, contrib, m)) {
            for (std::size_t j = 0; j < m; ++j) {
                const double x = expo[j];
                if (!(x >= kExpLo && x <= kExpHi)) contrib[j] = std::exp(x) * vals[j];
            }
        }
        for (std::size_t j = 0; j < m; ++j) {
            due += rate;
            if (due >= kOne) {
                due -= kOne;
                if (pf < pf_end) {
                    __builtin_prefetch(pf, 1);
                    pf += 64;
                } else if (pfa < pfa_end) {
                    __builtin_prefetch(pfa, 1);
                    pfa += 64;
                }
            }
            const uint64_t key = static_cast<uint64_t>(p[j].key);
            const int64_t c = static_cast<int64_t>((key >> signal_bits) & in_block_mask) * n_signals +
                              static_cast<int64_t>(key & signal_mask);
            const int64_t t = static_cast<int64_t>(static_cast<uint64_t>(landmark_ms) +
                                                   static_cast<uint64_t>(p[j].key >> key_shift));
            apply(acc[c], base[c], contrib[j], p[j].value, t);
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

// A batch with fewer events than 1 per kCellsPerEvent cells of the state is applied directly.
constexpr int64_t kCellsPerEvent = 8;

// Defaults: records per profile block (L2-sized) and events packed per slice (16 bytes of scratch each).
constexpr std::size_t kBlockBytes = std::size_t{512} << 10;
constexpr int64_t kMaxSlice = int64_t{1} << 24;

// Free the partition scratch that accumulate keeps between calls (it is allocated again on demand).
inline void release_scratch() {
    detail::ScratchCache& cache = detail::scratch_cache();
    std::lock_guard<std::mutex> held(cache.lock);
    cache.buf.reset();
}

// Fold events into records; returns -1, or the index of the first event whose profile or signal
// code is out of range, in which case nothing was written.
//
// Large batches (at least one event per kCellsPerEvent cells of the state) against a state bigger
// than the cache are radix-partitioned by profile block: one counting pass over the profiles, one
// pass packing each event into 16 bytes at its block's place (checking the codes on the way:
// nothing is written to the state before the whole batch is checked; the keys computed 512 events
// at a time in a vectorised loop, then stored straight to their blocks: the ~1000 blocks' current
// lines stay in L2, and staging them for streaming stores measured slower), then block by block
// the decay factors in vectorised passes (the packed events read in order: the hardware
// prefetcher keeps up) and the scatter, with the block's state prefetched during the previous
// block (blocks of a power of two of profiles, at most block_bytes = 512 KiB of records by
// default: 320 KiB at 8 signals). Otherwise (small state, few events for its size, or times too
// far from the landmark to pack) events are applied directly, prefetching a few ahead.
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
    // A sparse batch goes direct: the partition streams every block's state through the cache,
    // which costs more than a miss per event when most cells get no event (100k events into
    // 1M profiles x 8 signals: 3.5M events/s partitioned, 22M direct; even at 1 event per 8 cells).
    const bool sparse = n < n_profiles * n_signals / kCellsPerEvent;
    if (n_blocks <= 2 || state_bytes <= 4 * block_bytes || n < 65536 || key_shift > 24 || sparse) return direct();
    // Slices of at most max_slice events (16 bytes of scratch each), all the same size.
    const int64_t n_slices = (n + max_slice - 1) / max_slice;
    const int64_t slice = (n + n_slices - 1) / n_slices;
    if (n_slices > 1) {
        // Later slices are applied after the first one has been written: check them all first.
        const int64_t bad = first_bad_event(users, signals, n, n_profiles, n_signals);
        if (bad >= 0) return bad;
    }
    // The kept scratch if it is free (and big enough, or may grow), else one of our own.
    ScratchCache& cache = scratch_cache();
    std::unique_lock<std::mutex> held(cache.lock, std::try_to_lock);
    std::unique_ptr<Scratch<Packed>> own;
    Scratch<Packed>* packed;
    const std::size_t need = static_cast<std::size_t>(slice);
    if (held.owns_lock() && need <= kKeepEvents) {
        if (!cache.buf || cache.buf->size < need) {
            cache.buf.reset();
            cache.buf.reset(new Scratch<Packed>(need));
        }
        packed = cache.buf.get();
    } else {
        own.reset(new Scratch<Packed>(need));
        packed = own.get();
    }
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
        for (int64_t b = 0; b < n_blocks; ++b) offset[b + 1] += offset[b];
        std::copy(offset.get(), offset.get() + n_blocks, cursor.get());
        Packed* const dest = packed->data;
        // In groups: the keys first (vectorised), then each event stored at its block's cursor.
        uint64_t key[kChunk];
        uint64_t blk[kChunk];
        uint64_t bad_bits = 0;
        for (int64_t g = s0; g < s0 + m_slice; g += static_cast<int64_t>(kChunk)) {
            const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(kChunk, s0 + m_slice - g));
            bad_bits |= pack_keys(users + g, signals + g, ts_ms + g, m, landmark_ms, n_signals, shift, signal_bits, key,
                                  blk);
            const double* const v = values + g;
            for (std::size_t j = 0; j < m; ++j) {
                Packed& p = dest[cursor[blk[j]]++];
                p.key = static_cast<int64_t>(key[j]);
                p.value = v[j];
            }
        }
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

}  // namespace kernels
}  // namespace affinity
