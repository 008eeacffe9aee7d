// The event-id window's probe (affinity_sdk/ingest/dedupe.py): look keys up in two
// open-addressing generations and insert the new ones into the current one. Header-only and free
// of Python; the twin of affinity_sdk/kernels/_dedupe_reference.py and _dedupe_numba.py.
#pragma once

#include <cstdint>
#include <utility>

namespace affinity::dedupe {

// Fibonacci hashing multiplier (2^64 / phi): spreads the FNV hash's bits over the table index.
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

// Keys ahead whose home slots are prefetched: a window of millions of ids lives in main memory,
// and each probe is otherwise two cache misses in a row (the old table, then the current one).
constexpr int64_t kProbeAhead = 16;

// Tables hold `size` slots (a power of two, 0 = empty, load at most 1/2), probed linearly from
// (key * kGolden) >> shift. dup[i] is set where keys[i] is in `old` or `cur` (an id inserted
// earlier in this call included); id 0 is never a duplicate and never stored. At most `room` new
// ids are inserted: the call stops *before* one more, so the caller can rotate generations and
// resume. Returns (index to resume at, number inserted).
inline std::pair<int64_t, int64_t> probe_insert(uint64_t* cur, const uint64_t* old, uint64_t size,
                                                const uint64_t* keys, bool* dup, int64_t n, int64_t start,
                                                int64_t room, unsigned shift) {
    const uint64_t mask = size - 1;
    int64_t inserted = 0;
    int64_t i = start;
    for (; i < n; ++i) {
#if defined(__GNUC__)
        if (i + kProbeAhead < n) {
            const uint64_t ahead = (keys[i + kProbeAhead] * kGolden) >> shift;
            __builtin_prefetch(old + ahead);
            __builtin_prefetch(cur + ahead);
        }
#endif
        const uint64_t key = keys[i];
        dup[i] = false;
        if (key == 0) continue;
        const uint64_t home = (key * kGolden) >> shift;
        uint64_t pos = home;
        bool found = false;
        for (uint64_t other = old[pos]; other != 0; other = old[pos]) {
            if (other == key) {
                found = true;
                break;
            }
            pos = (pos + 1) & mask;
        }
        if (!found) {
            pos = home;
            while (cur[pos] != 0 && cur[pos] != key) pos = (pos + 1) & mask;
            found = cur[pos] == key;
            if (!found) {
                if (inserted == room) break;
                cur[pos] = key;
                ++inserted;
            }
        }
        dup[i] = found;
    }
    return {i < n ? i : (start > n ? start : n), inserted};
}

}  // namespace affinity::dedupe
