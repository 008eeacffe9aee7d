// Scores, quantile cut-offs and tiers of affinity_sdk in plain C++17 (the numpy reference in
// affinity_sdk/kernels/_reference.py is the contract; tests/kernels/ check parity).
//
// Cut-offs are found by a histogram selection instead of a sort: every value gets a bin by a
// monotone map of its order-preserving 64-bit key (v <= w implies bin(v) <= bin(w)), one pass
// counts the bins, the prefix sums name the bin holding each cut-off's rank, a second pass copies
// out the few values in those bins, and an exact nth_element among them gives the cut-off. So the
// result is the reference's exact order statistic, ties and NaN (ranked largest) included. Where
// the values crowd into a few bins (scores of an active base bunch up near 100), score_tiers bins
// them over a window that a sample puts around the cut-offs, and a bin still holding too many
// values for the gather is first narrowed by a sub-histogram over its keys (refine).
//
// score_tiers does it in three streaming passes over the profiles: (1) 0-100 score + bin count,
// (2) candidate gather, (3) tiers; histograms (32 KiB for scores, 256 KiB for the range bins of
// quantile_cutoffs, 64 KiB per refine pass) and the candidates are all it allocates.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "kernels.hpp"

namespace affinity {
namespace kernels {
namespace tiers_detail {

using detail::bits_of;
using detail::double_of;

#if defined(__GNUC__)
#define AFFINITY_INLINE inline __attribute__((always_inline))
inline int lowest_bit(uint64_t w) { return __builtin_ctzll(w); }
#else
#define AFFINITY_INLINE inline
inline int lowest_bit(uint64_t w) {
    int i = 0;
    while (!(w & 1)) w >>= 1, ++i;
    return i;
}
#endif

constexpr std::size_t kBlock = 512;
constexpr int kMaxWanted = 8;  // key ranges gathered (or refined) per pass over the values

// Order-preserving signed key of a non-NaN double (-0.0 just below +0.0): negative doubles get
// their magnitude bits flipped. An involution, so it also maps a key back to its double.
inline int64_t order_key(double v) {
    const auto b = static_cast<int64_t>(bits_of(v));
    return b ^ ((b >> 63) & std::numeric_limits<int64_t>::max());
}

inline double key_value(int64_t key) {
    return double_of(static_cast<uint64_t>(key ^ ((key >> 63) & std::numeric_limits<int64_t>::max())));
}

// The values whose order key lies in [lo, hi], or with `nan` the NaN values (whose keys are not
// ordered: a NaN with the sign bit set has a small key); every bin is one such range. The bounds
// of a non-NaN range stay within [kKeyLo, kKeyHi] (-inf and +inf), outside of which all NaN keys
// lie, so a key test alone selects its values.
struct KeyRange {
    int64_t lo, hi;
    bool nan;
    bool operator==(const KeyRange& o) const { return lo == o.lo && hi == o.hi && nan == o.nan; }
};

constexpr int64_t kKeyHi = int64_t{0x7ff} << 52;
constexpr int64_t kKeyLo = ~kKeyHi;

// Monotone bin maps (v <= w implies bin(v) <= bin(w)) onto kBins bins: NaN alone in the last one
// (kBins - 1), the largest other values in kBins - 2. Written branch-free on integers so the
// compiler vectorises them.
//
// Scores lie in [0, 100] (+inf when 100 r overflows, or NaN): 128 bins per binade from 2^-57 to
// 2^7, zeros and anything below 2^-57 in bin 0, 128 and above in the top bin. 8192 bins keep the
// histogram (32 KiB) about L1-sized; a bin then holds ~1/128 of a binade, a few thousand of 1M
// spread-out scores. (Finer bins move the histogram to L2 and cost more in the count.)
struct ScoreBins {
    static constexpr uint32_t kBins = 8192;
    static constexpr int kShift = 52 - 7;
    static constexpr int64_t kBase = int64_t{1023 - 57} << 7;

    uint32_t operator()(double s) const {
        const double c = s > 0x1p-57 ? s : 0x1p-57;
        int64_t d = static_cast<int64_t>(bits_of(c) >> kShift) - kBase;
        d = d > kBins - 2 ? kBins - 2 : d;
        return s != s ? kBins - 1 : static_cast<uint32_t>(d);
    }

    KeyRange range(uint32_t d) const;  // the keys of bin d's values
};

// The smallest shift that brings a key span below `limit` (the bins or sub-bins it is cut into).
inline int shift_to_fit(uint64_t span, uint64_t limit) {
    int shift = 0;
    while ((span >> shift) >= limit) ++shift;
    return shift;
}

// Crowded scores: those of a real base bunch together (an active base's near 100, half of them
// within a point or two), and ScoreBins would put ~10 % of the profiles in the bin of each
// cut-off. Then the bins spread evenly over a window of keys [lo, hi] where a sample of the
// scores puts the cut-offs (score_plan), with everything below it in bin 0 and above it in
// kBins - 2. (A costlier count than ScoreBins', so only where those crowd.)
struct WindowBins {
    static constexpr uint32_t kBins = 8192;
    int64_t lo, hi;  // within [kKeyLo, kKeyHi]
    int shift;

    WindowBins(int64_t lo_key, int64_t hi_key)
        : lo(lo_key),
          hi(hi_key),
          shift(shift_to_fit(static_cast<uint64_t>(hi_key) - static_cast<uint64_t>(lo_key), kBins - 3)) {}

    KeyRange range(uint32_t d) const;  // the keys of bin d's values
};

// Any doubles: bins spread evenly over the keys' actual range [lo, lo + ((kBins - 2) << shift)).
struct RangeBins {
    static constexpr uint32_t kBins = uint32_t{1} << 16;
    int64_t lo;
    int shift;

    uint32_t operator()(double v) const {
        const uint64_t d = static_cast<uint64_t>(order_key(v)) - static_cast<uint64_t>(lo);
        return v != v ? kBins - 1 : static_cast<uint32_t>(d >> shift);
    }

    KeyRange range(uint32_t d) const;  // the keys of bin d's values
};

// The range of the non-NaN keys, and the smallest shift that fits it in kBins - 2 bins.
AFFINITY_CLONES
inline RangeBins range_bins(const double* values, int64_t n) {
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
    for (int64_t i = 0; i < n; ++i) {
        const double v = values[i];
        const int64_t key = order_key(v);
        lo = (v == v && key < lo) ? key : lo;
        hi = (v == v && key > hi) ? key : hi;
    }
    if (lo > hi) return RangeBins{0, 0};  // empty or all NaN
    return RangeBins{lo, shift_to_fit(static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo), RangeBins::kBins - 2)};
}

inline double score_of(double raw, double half_point) {
    // Selects are done on the bits: with plain `?:` GCC turns them into branches (the division
    // may trap, so it is not moved out of one) and does not vectorise the loop.
    const uint64_t neg = 0 - static_cast<uint64_t>(raw < 0.0);
    const double r = double_of(bits_of(raw) & ~neg);  // negative -> +0.0; -0.0 and NaN stay
    const double s = 100.0 * r / (r + half_point);
    const uint64_t inf = 0 - static_cast<uint64_t>(r == std::numeric_limits<double>::infinity());
    return double_of((bits_of(s) & ~inf) | (bits_of(100.0) & inf));
}

// bins[j] = bin(values[j]) for a block, then counted into hist.
template <class Bin>
AFFINITY_INLINE void count_block(const double* values, std::size_t m, Bin bin, uint32_t* bins, uint32_t* hist) {
    for (std::size_t j = 0; j < m; ++j) bins[j] = bin(values[j]);
    for (std::size_t j = 0; j < m; ++j) ++hist[bins[j]];
}

// Pass 1 of score_tiers: the scores, and their bins counted.
AFFINITY_CLONES
inline void scores_and_hist(const double* raw, int64_t n, double half_point, ScoreBins bin, double* out,
                            uint32_t* hist) {
    uint32_t bins[kBlock];
    for (int64_t i0 = 0; i0 < n; i0 += static_cast<int64_t>(kBlock)) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(kBlock), n - i0));
        const double* r = raw + i0;
        double* o = out + i0;
        for (std::size_t j = 0; j < m; ++j) o[j] = score_of(r[j], half_point);
        count_block(o, m, bin, bins, hist);
    }
}

// The same over WindowBins. The values outside the window
// (most of them) are tallied by vector sums and their increments go to kDummies spare bins
// hist[kBins + (j % kDummies)] in turn, so no bin takes most increments in a row (a chain of
// read-modify-writes through one address runs at the store-forwarding latency).
constexpr int kDummies = 8;

AFFINITY_CLONES
inline void scores_and_hist(const double* raw, int64_t n, double half_point, WindowBins bin, double* out,
                            uint32_t* hist) {
    constexpr uint32_t kBins = WindowBins::kBins;
    uint64_t at[kBlock];
    const int64_t lo = bin.lo, hi = bin.hi;
    const int sh = bin.shift;
    int64_t below = 0, above = 0, nans = 0;
    for (int64_t i0 = 0; i0 < n; i0 += static_cast<int64_t>(kBlock)) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(kBlock), n - i0));
        const double* r = raw + i0;
        double* o = out + i0;
        for (std::size_t j = 0; j < m; ++j) o[j] = score_of(r[j], half_point);
        for (std::size_t j = 0; j < m; ++j) {  // masks, not branches, so that it vectorises
            const double v = o[j];
            const int64_t k = order_key(v);
            const int64_t nan = v != v;
            const uint64_t in = 0 - static_cast<uint64_t>((k >= lo) & (k <= hi));
            const uint64_t d = 1 + ((static_cast<uint64_t>(k) - static_cast<uint64_t>(lo)) >> sh);
            at[j] = (d & in) | ((kBins + (j & (kDummies - 1))) & ~in);
            below += (nan ^ 1) & (k < lo);
            above += (nan ^ 1) & (k > hi);
            nans += nan;
        }
        for (std::size_t j = 0; j < m; ++j) ++hist[at[j]];
    }
    hist[0] += static_cast<uint32_t>(below);
    hist[kBins - 2] += static_cast<uint32_t>(above);
    hist[kBins - 1] += static_cast<uint32_t>(nans);
}

AFFINITY_CLONES
inline void hist_of(const double* values, int64_t n, RangeBins bin, uint32_t* hist) {
    uint32_t bins[kBlock];
    for (int64_t i0 = 0; i0 < n; i0 += static_cast<int64_t>(kBlock)) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(kBlock), n - i0));
        count_block(values + i0, m, bin, bins, hist);
    }
}

AFFINITY_INLINE bool in_range(double v, int64_t key, const KeyRange& r) {
    return r.nan ? v != v : (key >= r.lo) & (key <= r.hi);
}

inline KeyRange ScoreBins::range(uint32_t d) const {
    if (d == kBins - 1) return {0, 0, true};
    const int64_t lo = d == 0 ? kKeyLo : (int64_t{d} + kBase) << kShift;
    const int64_t hi = d == kBins - 2 ? kKeyHi : ((int64_t{d} + kBase + 1) << kShift) - 1;
    return {lo, hi, false};
}

inline KeyRange WindowBins::range(uint32_t d) const {
    if (d == kBins - 1) return {0, 0, true};
    if (d == 0) return {kKeyLo, lo - 1, false};  // empty when lo == kKeyLo (so is bin kBins - 2)
    if (d == kBins - 2) return {hi + 1, kKeyHi, false};
    const uint64_t first = static_cast<uint64_t>(lo) + (uint64_t{d - 1} << shift);
    const uint64_t last = first + ((uint64_t{1} << shift) - 1);
    return {static_cast<int64_t>(first), std::min(static_cast<int64_t>(last), hi), false};
}

inline KeyRange RangeBins::range(uint32_t d) const {
    if (d == kBins - 1) return {0, 0, true};
    const uint64_t first = static_cast<uint64_t>(lo) + (uint64_t{d} << shift);
    const uint64_t last = first + ((uint64_t{1} << shift) - 1);  // < kKeyHi + 2^shift: no wrap
    return {static_cast<int64_t>(first), std::min(static_cast<int64_t>(last), kKeyHi), false};
}

// A histogram pass that narrows ranges[r] (non-NaN, r < n_ranges <= kMaxWanted) down to 1/kSub:
// the values in it are counted into hist[kDummies + r kSub + ((key - lo) >> shifts[r])], and
// kmin[r] / kmax[r] take their smallest / largest key. The other values go to the kDummies
// dummy bins in turn: one bin taking most increments in a row would chain them through memory.
constexpr int kSub = 1024;

AFFINITY_CLONES
inline void refine_counts(const double* values, int64_t n, const KeyRange* ranges, const int* shifts,
                          int n_ranges, uint64_t* hist, int64_t* kmin, int64_t* kmax) {
    int64_t keys[kBlock];
    uint64_t at[kBlock];
    for (int64_t i0 = 0; i0 < n; i0 += static_cast<int64_t>(kBlock)) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(kBlock), n - i0));
        const double* v = values + i0;
        for (std::size_t j = 0; j < m; ++j) {
            keys[j] = order_key(v[j]);
            at[j] = j & (kDummies - 1);
        }
        for (int r = 0; r < n_ranges; ++r) {
            const int64_t lo = ranges[r].lo, hi = ranges[r].hi;
            const int sh = shifts[r];
            const uint64_t base = static_cast<uint64_t>(kDummies + r * kSub);
            int64_t mn = kmin[r], mx = kmax[r];
            for (std::size_t j = 0; j < m; ++j) {  // masks, not branches, so that it vectorises
                const int64_t k = keys[j];
                const uint64_t in = 0 - static_cast<uint64_t>((k >= lo) & (k <= hi));
                const uint64_t sub = base + ((static_cast<uint64_t>(k) - static_cast<uint64_t>(lo)) >> sh);
                at[j] = (at[j] & ~in) | (sub & in);
                const auto kin = static_cast<int64_t>(in);
                mn = std::min(mn, (k & kin) | (std::numeric_limits<int64_t>::max() & ~kin));
                mx = std::max(mx, (k & kin) | (std::numeric_limits<int64_t>::min() & ~kin));
            }
            kmin[r] = mn;
            kmax[r] = mx;
        }
        for (std::size_t j = 0; j < m; ++j) ++hist[at[j]];
    }
}

// Tier code with hysteresis, as integer logic on the comparisons so the loop vectorises:
// tier >= t when v > 0 and v >= (previous >= t ? down_t : up_t); the highest such t wins.
inline int8_t tier_code(double v, int8_t p, double up1, double up2, double down1, double down2) {
    const int pos = v > 0.0;
    const int stay1 = p >= 1, stay2 = p >= 2;
    const int c1 = pos & ((stay1 & (v >= down1)) | ((stay1 ^ 1) & (v >= up1)));
    const int c2 = pos & ((stay2 & (v >= down2)) | ((stay2 ^ 1) & (v >= up2)));
    return static_cast<int8_t>(2 * c2 + (c1 & (c2 ^ 1)));
}

// hit[j] |= all ones where values[j] lies in r: a comparison of doubles (no keys to compute), the
// same as of keys unless a bound splits -0.0 (key -1) from +0.0 (key 0).
AFFINITY_INLINE void mark(const double* v, std::size_t m, const KeyRange& r, uint64_t* hit) {
    if (r.nan) {
        for (std::size_t j = 0; j < m; ++j) hit[j] |= 0 - static_cast<uint64_t>(v[j] != v[j]);
    } else if (r.lo != 0 && r.hi != -1) {
        const double lo = key_value(r.lo), hi = key_value(r.hi);
        for (std::size_t j = 0; j < m; ++j) hit[j] |= 0 - static_cast<uint64_t>((v[j] >= lo) & (v[j] <= hi));
    } else {
        for (std::size_t j = 0; j < m; ++j) {
            const int64_t k = order_key(v[j]);
            hit[j] |= 0 - static_cast<uint64_t>((k >= r.lo) & (k <= r.hi));
        }
    }
}

// Copies the keys of the values in ranges[s] (s < n_ranges <= kMaxWanted, pairwise disjoint) to
// keys_out[cursor[s]++]. Per block the hits are marked vectorised, then their byte flags scanned 8
// at a time, so the scalar work is proportional to the (few) hits.
AFFINITY_CLONES
inline void gather(const double* values, int64_t n, const KeyRange* ranges, int n_ranges, int64_t* cursor,
                   int64_t* keys_out) {
    uint64_t hit[kBlock];
    for (int64_t i0 = 0; i0 < n; i0 += static_cast<int64_t>(kBlock)) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(kBlock), n - i0));
        const double* v = values + i0;
        std::fill(hit, hit + m, uint64_t{0});
        for (int s = 0; s < n_ranges; ++s) mark(v, m, ranges[s], hit);
        uint8_t flag[kBlock];
        for (std::size_t j = 0; j < m; ++j) flag[j] = static_cast<uint8_t>(hit[j] & 1);
        for (std::size_t j0 = 0; j0 < m; j0 += 8) {
            uint64_t word = 0;
            std::memcpy(&word, flag + j0, std::min<std::size_t>(8, m - j0));
            while (word) {
                const std::size_t j = j0 + static_cast<std::size_t>(lowest_bit(word) >> 3);
                word &= word - 1;
                const int64_t key = order_key(v[j]);
                int s = 0;  // which range, without a data-dependent branch
                for (int t = 1; t < n_ranges; ++t) s += in_range(v[j], key, ranges[t]) * t;
                keys_out[cursor[s]++] = key;
            }
        }
    }
}

// Fewest profiles per thread worth starting one for in score_tiers' passes.
constexpr int64_t kTierProfilesPerThread = int64_t{1} << 17;

// gather on up to `threads` threads: the first range of values gathers straight into keys_out,
// each other one into a buffer laid out like keys_out (the same start per range), appended after
// it. The keys of a range come out in another order than gather's; their order statistics do not.
inline void gather_threaded(const double* values, int64_t n, const KeyRange* ranges, int n_ranges,
                            int64_t* cursor, int64_t* keys_out, int64_t total, int64_t threads) {
    const int64_t most = range_count(n, threads, kTierProfilesPerThread);
    if (most <= 1) return gather(values, n, ranges, n_ranges, cursor, keys_out);
    // Allocated here, not on the threads: a bad_alloc there would end the process.
    const std::size_t slots = static_cast<std::size_t>(most);
    std::vector<std::unique_ptr<int64_t[]>> buffers(slots);
    for (std::size_t k = 1; k < slots; ++k)
        buffers[k].reset(new int64_t[static_cast<std::size_t>(std::max<int64_t>(total, 1))]);
    const std::vector<int64_t> start(cursor, cursor + n_ranges);  // before range 0 moves `cursor`
    std::vector<std::vector<int64_t>> ends(slots, start);
    const int64_t parts =
        parallel_ranges(n, threads, kTierProfilesPerThread, 8, [&](int64_t lo, int64_t hi, int64_t k) {
            if (k == 0) return gather(values + lo, hi - lo, ranges, n_ranges, cursor, keys_out);
            const auto at = static_cast<std::size_t>(k);
            gather(values + lo, hi - lo, ranges, n_ranges, ends[at].data(), buffers[at].get());
        });
    for (int64_t k = 1; k < parts; ++k) {
        const auto at = static_cast<std::size_t>(k);
        for (int r = 0; r < n_ranges; ++r) {
            const auto ri = static_cast<std::size_t>(r);
            const int64_t m = ends[at][ri] - start[ri];
            std::copy(buffers[at].get() + start[ri], buffers[at].get() + ends[at][ri], keys_out + cursor[r]);
            cursor[r] += m;
        }
    }
}

// One cut-off being narrowed down: the range of keys it lies in, how many values are in that
// range, and its ascending rank among them.
struct Pending {
    KeyRange range;
    int64_t count;
    int64_t rank;
};

// A range holding more values than this is first narrowed by refine_counts (one more streaming
// pass, ~1 ns a value) instead of gathering all of them (~15 ns a hit, then nth_element).
inline int64_t refine_above(int64_t n) { return std::max<int64_t>(4096, n >> 6); }

// The distinct ranges of the open cut-offs that pass `want`, up to kMaxWanted; returns how many.
template <class Want>
int distinct_ranges(const Pending* cut, const bool* open, std::size_t nf, Want want, KeyRange* out) {
    int k = 0;
    for (std::size_t j = 0; j < nf && k < kMaxWanted; ++j) {
        if (open[j] && want(cut[j]) && std::find(out, out + k, cut[j].range) == out + k) out[k++] = cut[j].range;
    }
    return k;
}

inline int slot_of(const KeyRange* ranges, int k, const KeyRange& r) {
    return static_cast<int>(std::find(ranges, ranges + k, r) - ranges);
}

// Narrows the large ranges of the open cut-offs by passes of refine_counts, each cutting them to
// the sub-range holding the cut-off's rank (and to the keys actually seen); a cut-off whose range
// shrinks to one key is that key.
inline void refine(const double* values, int64_t n, Pending* cut, bool* open, std::size_t nf, double* out) {
    const int64_t limit = refine_above(n);
    for (std::size_t j = 0; j < nf; ++j) {
        if (open[j] && !cut[j].range.nan && cut[j].range.lo == cut[j].range.hi) {
            out[j] = key_value(cut[j].range.lo);
            open[j] = false;
        }
    }
    for (;;) {
        KeyRange ranges[kMaxWanted];
        const int k = distinct_ranges(cut, open, nf, [&](const Pending& p) {
            return !p.range.nan && p.count > limit && p.range.lo < p.range.hi;
        }, ranges);
        if (k == 0) return;
        int shifts[kMaxWanted];
        int64_t kmin[kMaxWanted], kmax[kMaxWanted];
        for (int r = 0; r < k; ++r) {
            shifts[r] = shift_to_fit(static_cast<uint64_t>(ranges[r].hi) - static_cast<uint64_t>(ranges[r].lo), kSub);
            kmin[r] = std::numeric_limits<int64_t>::max();
            kmax[r] = std::numeric_limits<int64_t>::min();
        }
        std::unique_ptr<uint64_t[]> hist(new uint64_t[kDummies + static_cast<std::size_t>(k) * kSub]());
        refine_counts(values, n, ranges, shifts, k, hist.get(), kmin, kmax);
        for (std::size_t j = 0; j < nf; ++j) {
            const int r = open[j] ? slot_of(ranges, k, cut[j].range) : k;
            if (r == k) continue;
            const uint64_t* sub = hist.get() + kDummies + static_cast<std::size_t>(r) * kSub;
            const int sh = shifts[r];
            int64_t rank = cut[j].rank;
            std::size_t b = 0;
            while (rank >= static_cast<int64_t>(sub[b])) rank -= static_cast<int64_t>(sub[b++]);
            // Sub-range b, as offsets from old.lo (unsigned: the span may exceed INT64_MAX).
            const KeyRange old = cut[j].range;
            const uint64_t span = static_cast<uint64_t>(old.hi) - static_cast<uint64_t>(old.lo);
            const uint64_t first = static_cast<uint64_t>(b) << sh;
            const uint64_t last = std::min(first + ((uint64_t{1} << sh) - 1), span);
            const int64_t lo = std::max(static_cast<int64_t>(static_cast<uint64_t>(old.lo) + first), kmin[r]);
            const int64_t hi = std::min(static_cast<int64_t>(static_cast<uint64_t>(old.lo) + last), kmax[r]);
            cut[j] = Pending{KeyRange{lo, hi, false}, static_cast<int64_t>(sub[b]), rank};
            if (lo == hi) {
                out[j] = key_value(lo);
                open[j] = false;
            }
        }
    }
}

// The cut-off for each fraction (exact order statistic) given the histogram of `values`' bins:
// the bin holding each cut-off's rank, narrowed by `refine` where it holds many values, then one
// pass copies out the values of up to kMaxWanted such ranges and nth_element finds each cut-off
// among them.
template <class Bin, class Count>
void cutoffs_from_hist(const double* values, int64_t n, Bin bin, const Count* hist, const double* fractions,
                       int64_t n_fractions, double* out, int64_t threads = 1) {
    const std::size_t nf = static_cast<std::size_t>(std::max<int64_t>(n_fractions, 0));
    std::unique_ptr<Pending[]> cut(new Pending[nf + 1]);
    std::unique_ptr<bool[]> open(new bool[nf + 1]);
    for (std::size_t j = 0; j < nf; ++j) {
        const double q = fractions[j];
        open[j] = false;  // done: the answer is in out[j]
        out[j] = std::numeric_limits<double>::infinity();
        if (n == 0 || !(q < 1.0)) continue;
        int64_t k = static_cast<int64_t>(std::ceil(static_cast<double>(n) * (1.0 - q) - 1e-9));
        k = std::min(std::max<int64_t>(k, 1), n);
        int64_t rank = n - k;  // ascending rank of the k-th largest
        int64_t d;
        if (rank < n / 2) {  // walk from the nearer end of the histogram
            d = 0;
            while (rank >= static_cast<int64_t>(hist[d])) rank -= static_cast<int64_t>(hist[d++]);
        } else {
            int64_t above = n - 1 - rank;
            d = Bin::kBins - 1;
            while (above >= static_cast<int64_t>(hist[d])) above -= static_cast<int64_t>(hist[d--]);
            rank = static_cast<int64_t>(hist[d]) - 1 - above;
        }
        cut[j] = Pending{bin.range(static_cast<uint32_t>(d)), static_cast<int64_t>(hist[d]), rank};
        open[j] = true;
    }
    refine(values, n, cut.get(), open.get(), nf, out);
    for (;;) {
        KeyRange ranges[kMaxWanted];
        const int k = distinct_ranges(cut.get(), open.get(), nf, [](const Pending&) { return true; }, ranges);
        if (k == 0) return;
        int64_t start[kMaxWanted + 1] = {0};
        for (std::size_t j = 0; j < nf; ++j) {
            const int r = open[j] ? slot_of(ranges, k, cut[j].range) : k;
            if (r < k) start[r + 1] = cut[j].count;
        }
        for (int r = 0; r < k; ++r) start[r + 1] += start[r];
        const int64_t total = start[k];
        std::unique_ptr<int64_t[]> keys(new int64_t[static_cast<std::size_t>(total)]);
        int64_t cursor[kMaxWanted];
        std::copy(start, start + k, cursor);
        gather_threaded(values, n, ranges, k, cursor, keys.get(), total, threads);
        for (std::size_t j = 0; j < nf; ++j) {
            const int r = open[j] ? slot_of(ranges, k, cut[j].range) : k;
            if (r == k) continue;
            int64_t* first = keys.get() + start[r];
            std::nth_element(first, first + cut[j].rank, keys.get() + start[r + 1]);
            out[j] = key_value(first[cut[j].rank]);
            open[j] = false;
        }
    }
}

// Counts bins into a 32-bit histogram, or for more than 2^31 values chunk-wise into a 64-bit one,
// then finds the cut-offs. `count(i0, m, hist32)` adds values [i0, i0 + m) to hist32.
template <class Bin, class CountChunk>
void cutoffs(const double* values, int64_t n, Bin bin, CountChunk count, const double* fractions,
             int64_t n_fractions, double* out, int64_t threads = 1) {
    constexpr int64_t kChunk = int64_t{1} << 31;
    constexpr uint32_t kBins = Bin::kBins;
    std::unique_ptr<uint32_t[]> hist(new uint32_t[kBins + kDummies]());  // + spares
    if (n <= kChunk) {
        count(0, n, hist.get());
        cutoffs_from_hist(values, n, bin, hist.get(), fractions, n_fractions, out, threads);
        return;
    }
    std::unique_ptr<uint64_t[]> wide(new uint64_t[kBins]());
    for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
        std::fill(hist.get(), hist.get() + kBins + kDummies, 0u);
        count(i0, std::min(kChunk, n - i0), hist.get());
        for (uint32_t d = 0; d < kBins; ++d) wide[d] += hist[d];
    }
    cutoffs_from_hist(values, n, bin, wide.get(), fractions, n_fractions, out, threads);
}

// How score_tiers bins the scores, from a strided sample of kSample of them: ScoreBins when no
// cut-off's bin there holds over 1/64 of the sample, else WindowBins over the sample's keys from
// kWindowMargin of the ranks below the lowest cut-off's rank to as much above the highest one's
// (4.5 standard errors of a sample quantile). A bad guess costs time (refine), never exactness.
constexpr int64_t kSample = 2048;
constexpr double kWindowMargin = 0.05;

struct ScorePlan {
    bool fixed;  // ScoreBins
    WindowBins window;
};

inline ScorePlan score_plan(const double* raw, int64_t n, double half_point, const double* fractions,
                            int64_t n_fractions) {
    constexpr int64_t kNaN = std::numeric_limits<int64_t>::max();  // a NaN's sample key: ranks last
    const int64_t m = std::min(n, kSample);
    int64_t keys[kSample];
    uint32_t bins[kSample];  // ScoreBins'
    const double stride = static_cast<double>(n) / static_cast<double>(std::max<int64_t>(m, 1));
    for (int64_t j = 0; j < m; ++j) {
        const int64_t i = std::min(static_cast<int64_t>(static_cast<double>(j) * stride), n - 1);
        const double s = score_of(raw[i], half_point);
        keys[j] = s != s ? kNaN : order_key(s);
        bins[j] = ScoreBins{}(s);
    }
    auto at = [&](double p) {  // where the sample's rank-p key goes
        const double x = std::min(std::max(p, 0.0), 1.0) * static_cast<double>(m - 1);
        return keys + static_cast<int64_t>(x);
    };
    double p_lo = 2.0, p_hi = -1.0;  // the cut-offs' ascending ranks, as fractions of n
    bool fixed = true;
    for (int64_t j = 0; j < n_fractions; ++j) {
        const double q = fractions[j];
        if (n == 0 || !(q < 1.0)) continue;
        int64_t k = static_cast<int64_t>(std::ceil(static_cast<double>(n) * (1.0 - q) - 1e-9));
        k = std::min(std::max<int64_t>(k, 1), n);
        const double p = static_cast<double>(n - k) / static_cast<double>(n);
        p_lo = std::min(p_lo, p);
        p_hi = std::max(p_hi, p);
        int64_t* cut = at(p);
        std::nth_element(keys, cut, keys + m);
        const uint32_t d = *cut == kNaN ? ScoreBins::kBins - 1 : ScoreBins{}(key_value(*cut));
        fixed = fixed && std::count(bins, bins + m, d) * 64 <= m;
    }
    if (p_hi < 0.0 || fixed) return {true, WindowBins(kKeyLo, kKeyHi)};
    int64_t* lo = at(p_lo - kWindowMargin);
    int64_t* hi = at(p_hi + kWindowMargin);
    std::nth_element(keys, lo, keys + m);
    const int64_t lo_key = std::min(*lo, kKeyHi);  // (the next call reorders *lo)
    std::nth_element(lo, hi, keys + m);
    return {false, WindowBins(lo_key, std::min(*hi, kKeyHi))};
}

}  // namespace tiers_detail

// 0-100 score 100 r / (r + h): negative raw counts as 0, +inf maps to 100, NaN stays NaN.
AFFINITY_CLONES
inline void scores_100(const double* raw, int64_t n, double half_point, double* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = tiers_detail::score_of(raw[i], half_point);
}

inline void quantile_cutoffs(const double* values, int64_t n, const double* fractions, int64_t n_fractions,
                             double* out) {
    using namespace tiers_detail;
    const RangeBins bin = range_bins(values, n);
    auto count = [&](int64_t i0, int64_t m, uint32_t* hist) { hist_of(values + i0, m, bin, hist); };
    cutoffs(values, n, bin, count, fractions, n_fractions, out);
}

// Tier codes 0 / 1 / 2 with hysteresis: enter tier t with cut_up[t-1], stay with cut_down[t-1];
// leaving Low needs a value > 0. `previous` null: no tier before (all enter).
AFFINITY_CLONES
inline void assign_tiers(const double* values, int64_t n, const double* cut_up, const double* cut_down,
                         const int8_t* previous, int8_t* out) {
    const double up1 = cut_up[0], up2 = cut_up[1], down1 = cut_down[0], down2 = cut_down[1];
    if (previous == nullptr) {
        for (int64_t i = 0; i < n; ++i) out[i] = tiers_detail::tier_code(values[i], -1, up1, up2, up1, up2);
        return;
    }
    for (int64_t i = 0; i < n; ++i) out[i] = tiers_detail::tier_code(values[i], previous[i], up1, up2, down1, down2);
}

// Raw scores -> 0-100 scores -> quantile cut-offs on the scores -> tiers, in three streaming
// passes (one more per cut-off bin too large to gather). `previous` null: no tier before. The
// three passes run on up to `threads` threads (each counting its profiles into a histogram of
// its own, summed after; see gather_threaded); the result is the same for any count.
inline void score_tiers(const double* raw, int64_t n, double half_point, const double* fractions,
                        const double* margins, const int8_t* previous, double* out_score, int8_t* out_tier,
                        double* out_cut, int64_t threads = 1) {
    using namespace tiers_detail;
    const ScorePlan plan = score_plan(raw, n, half_point, fractions, 2);
    auto select = [&](auto bin) {
        constexpr std::size_t kCounts = decltype(bin)::kBins + kDummies;
        auto count = [&](int64_t i0, int64_t m, uint32_t* hist) {
            // Range 0 counts into `hist` itself; the others' histograms are allocated here, not on
            // the threads (a bad_alloc there would end the process).
            const auto most = static_cast<std::size_t>(range_count(m, threads, kTierProfilesPerThread));
            std::vector<std::unique_ptr<uint32_t[]>> local(most);
            for (std::size_t k = 1; k < most; ++k) local[k].reset(new uint32_t[kCounts]());
            const int64_t ranges = parallel_ranges(
                m, threads, kTierProfilesPerThread, 8, [&](int64_t lo, int64_t hi, int64_t k) {
                    uint32_t* h = k == 0 ? hist : local[static_cast<std::size_t>(k)].get();
                    scores_and_hist(raw + i0 + lo, hi - lo, half_point, bin, out_score + i0 + lo, h);
                });
            for (int64_t k = 1; k < ranges; ++k)
                for (std::size_t d = 0; d < kCounts; ++d) hist[d] += local[static_cast<std::size_t>(k)][d];
        };
        cutoffs(out_score, n, bin, count, fractions, 2, out_cut, threads);
    };
    if (plan.fixed) {
        select(ScoreBins{});
    } else {
        select(plan.window);
    }
    const double down[2] = {out_cut[0] - margins[0], out_cut[1] - margins[1]};
    parallel_ranges(n, threads, kTierProfilesPerThread, 64, [&](int64_t lo, int64_t hi, int64_t) {
        assign_tiers(out_score + lo, hi - lo, out_cut, down, previous ? previous + lo : nullptr, out_tier + lo);
    });
}

}  // namespace kernels
}  // namespace affinity
