// Scores, quantile cut-offs and tiers of affinity_sdk in plain C++17 (the numpy reference in
// affinity_sdk/kernels/_reference.py is the contract; tests/test_kernels.py checks parity).
//
// Cut-offs are found by a histogram selection instead of a sort: every value gets a bin by a
// monotone map of its order-preserving 64-bit key (v <= w implies bin(v) <= bin(w)), one pass
// counts the bins, the prefix sums name the bin holding each cut-off's rank, a second pass copies
// out the few values in those bins, and an exact nth_element among them gives the cut-off. So the
// result is the reference's exact order statistic, ties and NaN (ranked largest) included.
//
// score_tiers does it in three streaming passes over the profiles: (1) 0-100 score + bin count,
// (2) candidate gather, (3) tiers; a histogram (32 KiB for scores, 256 KiB for the range bins of
// quantile_cutoffs) and the candidates are all it allocates.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>

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
constexpr int kMaxWanted = 8;  // bins gathered per pass over the values

// Order-preserving signed key of a non-NaN double (-0.0 just below +0.0): negative doubles get
// their magnitude bits flipped. An involution, so it also maps a key back to its double.
inline int64_t order_key(double v) {
    const auto b = static_cast<int64_t>(bits_of(v));
    return b ^ ((b >> 63) & std::numeric_limits<int64_t>::max());
}

inline double key_value(int64_t key) {
    return double_of(static_cast<uint64_t>(key ^ ((key >> 63) & std::numeric_limits<int64_t>::max())));
}

// Monotone bin maps (v <= w implies bin(v) <= bin(w)) onto kBins bins: NaN alone in the last one
// (kBins - 1), the largest other values in kBins - 2. Written branch-free on integers so the
// compiler vectorises them.
//
// Scores lie in [0, 100] (+inf when 100 r overflows, or NaN): 128 bins per binade from 2^-57 to
// 2^7, zeros and anything below 2^-57 in bin 0, 128 and above in the top bin. 8192 bins keep the
// histogram (32 KiB) about L1-sized; a bin then holds ~1/128 of a binade, a few thousand of 1M
// scores. (Finer bins move the histogram to L2 and cost more in the count than they save.)
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
};

// The range of the non-NaN keys, and the smallest shift that fits it in kTopBin bins.
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
    const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
    int shift = 0;
    while ((span >> shift) >= RangeBins::kBins - 2) ++shift;
    return RangeBins{lo, shift};
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
inline void scores_and_hist(const double* raw, int64_t n, double half_point, double* out, uint32_t* hist) {
    uint32_t bins[kBlock];
    for (int64_t i0 = 0; i0 < n; i0 += static_cast<int64_t>(kBlock)) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(kBlock), n - i0));
        const double* r = raw + i0;
        double* o = out + i0;
        for (std::size_t j = 0; j < m; ++j) o[j] = score_of(r[j], half_point);
        count_block(o, m, ScoreBins{}, bins, hist);
    }
}

AFFINITY_CLONES
inline void hist_of(const double* values, int64_t n, RangeBins bin, uint32_t* hist) {
    uint32_t bins[kBlock];
    for (int64_t i0 = 0; i0 < n; i0 += static_cast<int64_t>(kBlock)) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(kBlock), n - i0));
        count_block(values + i0, m, bin, bins, hist);
    }
}

// Copies the keys of the values whose bin is wanted[s] (s < n_wanted <= kMaxWanted, distinct) to
// out[cursor[s]++]. Per block the bins and a hit flag per value are computed vectorised, then the
// flags are scanned 8 at a time, so the scalar work is proportional to the (few) hits.
template <class Bin>
AFFINITY_INLINE void gather_impl(const double* values, int64_t n, Bin bin, const uint32_t* wanted, int n_wanted,
                                 int64_t* cursor, int64_t* out) {
    uint32_t bins[kBlock];
    uint8_t hit[kBlock];
    for (int64_t i0 = 0; i0 < n; i0 += static_cast<int64_t>(kBlock)) {
        const std::size_t m = static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(kBlock), n - i0));
        const double* v = values + i0;
        for (std::size_t j = 0; j < m; ++j) bins[j] = bin(v[j]);
        for (std::size_t j = 0; j < m; ++j) hit[j] = bins[j] == wanted[0];
        for (int s = 1; s < n_wanted; ++s) {
            const uint32_t w = wanted[s];
            for (std::size_t j = 0; j < m; ++j) hit[j] |= bins[j] == w;
        }
        for (std::size_t j0 = 0; j0 < m; j0 += 8) {
            uint64_t word = 0;
            std::memcpy(&word, hit + j0, std::min<std::size_t>(8, m - j0));
            while (word) {
                const std::size_t j = j0 + static_cast<std::size_t>(lowest_bit(word) >> 3);
                word &= word - 1;
                int s = 0;  // which wanted bin, without a data-dependent branch
                for (int t = 1; t < n_wanted; ++t) s += (bins[j] == wanted[t]) * t;
                out[cursor[s]++] = order_key(v[j]);
            }
        }
    }
}

AFFINITY_CLONES
inline void gather(const double* values, int64_t n, ScoreBins bin, const uint32_t* wanted, int n_wanted,
                   int64_t* cursor, int64_t* out) {
    gather_impl(values, n, bin, wanted, n_wanted, cursor, out);
}

AFFINITY_CLONES
inline void gather(const double* values, int64_t n, RangeBins bin, const uint32_t* wanted, int n_wanted,
                   int64_t* cursor, int64_t* out) {
    gather_impl(values, n, bin, wanted, n_wanted, cursor, out);
}

// The cut-off for each fraction (exact order statistic) given the histogram of `values`' bins:
// the bin holding each cut-off's rank, then one pass copies out the values of up to kMaxWanted
// such bins and nth_element finds each cut-off among them.
template <class Bin, class Count>
void cutoffs_from_hist(const double* values, int64_t n, Bin bin, const Count* hist, const double* fractions,
                       int64_t n_fractions, double* out) {
    const std::size_t nf = static_cast<std::size_t>(std::max<int64_t>(n_fractions, 0));
    std::unique_ptr<int64_t[]> want_bin(new int64_t[nf + 1]);
    std::unique_ptr<int64_t[]> want_rank(new int64_t[nf + 1]);
    for (std::size_t j = 0; j < nf; ++j) {
        const double q = fractions[j];
        want_bin[j] = -1;  // done: the answer is in out[j]
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
        want_bin[j] = d;
        want_rank[j] = rank;
    }
    for (;;) {
        uint32_t wanted[kMaxWanted];
        int64_t start[kMaxWanted + 1];
        int n_wanted = 0;
        int64_t total = 0;
        for (std::size_t j = 0; j < nf && n_wanted < kMaxWanted; ++j) {
            const int64_t d = want_bin[j];
            if (d < 0 || std::find(wanted, wanted + n_wanted, static_cast<uint32_t>(d)) != wanted + n_wanted)
                continue;
            wanted[n_wanted] = static_cast<uint32_t>(d);
            start[n_wanted++] = total;
            total += static_cast<int64_t>(hist[d]);
        }
        if (n_wanted == 0) return;
        start[n_wanted] = total;
        std::unique_ptr<int64_t[]> keys(new int64_t[static_cast<std::size_t>(total)]);
        int64_t cursor[kMaxWanted];
        std::copy(start, start + n_wanted, cursor);
        gather(values, n, bin, wanted, n_wanted, cursor, keys.get());
        for (std::size_t j = 0; j < nf; ++j) {
            const int64_t d = want_bin[j];
            const auto at = std::find(wanted, wanted + n_wanted, static_cast<uint32_t>(d));
            if (d < 0 || at == wanted + n_wanted) continue;
            const std::ptrdiff_t s = at - wanted;
            int64_t* first = keys.get() + start[s];
            std::nth_element(first, first + want_rank[j], keys.get() + start[s + 1]);
            out[j] = key_value(first[want_rank[j]]);
            want_bin[j] = -1;
        }
    }
}

// Counts bins into a 32-bit histogram, or for more than 2^31 values chunk-wise into a 64-bit one,
// then finds the cut-offs. `count(i0, m, hist32)` adds values [i0, i0 + m) to hist32.
template <class Bin, class CountChunk>
void cutoffs(const double* values, int64_t n, Bin bin, CountChunk count, const double* fractions,
             int64_t n_fractions, double* out) {
    constexpr int64_t kChunk = int64_t{1} << 31;
    constexpr uint32_t kBins = Bin::kBins;
    std::unique_ptr<uint32_t[]> hist(new uint32_t[kBins]());
    if (n <= kChunk) {
        count(0, n, hist.get());
        cutoffs_from_hist(values, n, bin, hist.get(), fractions, n_fractions, out);
        return;
    }
    std::unique_ptr<uint64_t[]> wide(new uint64_t[kBins]());
    for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
        std::fill(hist.get(), hist.get() + kBins, 0u);
        count(i0, std::min(kChunk, n - i0), hist.get());
        for (uint32_t d = 0; d < kBins; ++d) wide[d] += hist[d];
    }
    cutoffs_from_hist(values, n, bin, wide.get(), fractions, n_fractions, out);
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
// leaving Low needs a value > 0.
AFFINITY_CLONES
inline void assign_tiers(const double* values, int64_t n, const double* cut_up, const double* cut_down,
                         const int8_t* previous, int8_t* out) {
    const double up1 = cut_up[0], up2 = cut_up[1], down1 = cut_down[0], down2 = cut_down[1];
    for (int64_t i = 0; i < n; ++i) out[i] = tiers_detail::tier_code(values[i], previous[i], up1, up2, down1, down2);
}

// Raw scores -> 0-100 scores -> quantile cut-offs on the scores -> tiers, in three passes.
inline void score_tiers(const double* raw, int64_t n, double half_point, const double* fractions,
                        const double* margins, const int8_t* previous, double* out_score, int8_t* out_tier,
                        double* out_cut) {
    using namespace tiers_detail;
    auto count = [&](int64_t i0, int64_t m, uint32_t* hist) {
        scores_and_hist(raw + i0, m, half_point, out_score + i0, hist);
    };
    cutoffs(out_score, n, ScoreBins{}, count, fractions, 2, out_cut);
    const double down[2] = {out_cut[0] - margins[0], out_cut[1] - margins[1]};
    assign_tiers(out_score, n, out_cut, down, previous, out_tier);
}

}  // namespace kernels
}  // namespace affinity
