// Sparse (profile x dimension value) affinity kernels: C++ twins of
// affinity_sdk/kernels/_affinity_reference.py (the oracle; same names, same rounding order).
// Header-only and free of Python; csrc/bind_affinity.cpp binds them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace affinity {

// Stable LSD radix argsort of int64 keys (11-bit digits; digits shared by every key are skipped).
// Same order as a stable comparison sort, so duplicates are later added in input order.
inline void radix_argsort(const int64_t* keys, int64_t n, std::vector<int64_t>& order) {
    constexpr int64_t kLow32 = 0xFFFFFFFF;
    constexpr int kBits = 11;
    constexpr uint64_t kMask = (uint64_t{1} << kBits) - 1;
    order.resize(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), int64_t{0});
    if (n < 2) return;
    int64_t lo = keys[0], hi = keys[0];
    for (int64_t i = 1; i < n; ++i) {
        lo = std::min(lo, keys[i]);
        hi = std::max(hi, keys[i]);
    }
    std::vector<uint64_t> k(static_cast<size_t>(n)), k_tmp(static_cast<size_t>(n));
    uint64_t range = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
    // keys are profile << 32 | value: rank them as (profile - min) * (max value + 1) + value,
    // an order-preserving map onto far fewer bits, hence fewer passes
    int64_t v_max = 0, p_min = hi >> 32, p_max = lo >> 32;
    for (int64_t i = 0; i < n; ++i) {
        v_max = std::max(v_max, keys[i] & kLow32);
        p_min = std::min(p_min, keys[i] >> 32);
        p_max = std::max(p_max, keys[i] >> 32);
    }
    const uint64_t v_span = static_cast<uint64_t>(v_max) + 1;
    const uint64_t p_span = static_cast<uint64_t>(p_max - p_min) + 1;
    if (lo >= 0 && p_span <= (~uint64_t{0}) / v_span) {
        for (int64_t i = 0; i < n; ++i)
            k[i] = static_cast<uint64_t>((keys[i] >> 32) - p_min) * v_span +
                   static_cast<uint64_t>(keys[i] & kLow32);
        range = p_span * v_span - 1;
    } else {
        // offsets from the minimum, in unsigned arithmetic so any int64 range is exact
        for (int64_t i = 0; i < n; ++i) k[i] = static_cast<uint64_t>(keys[i]) - static_cast<uint64_t>(lo);
    }
    std::vector<int64_t> o_tmp(static_cast<size_t>(n));
    std::vector<int64_t> count(kMask + 2);
    for (int shift = 0; shift < 64 && (range >> shift) != 0; shift += kBits) {
        std::fill(count.begin(), count.end(), int64_t{0});
        for (int64_t i = 0; i < n; ++i) ++count[((k[i] >> shift) & kMask) + 1];
        if (*std::max_element(count.begin(), count.end()) == n) continue;
        for (uint64_t d = 0; d <= kMask; ++d) count[d + 1] += count[d];
        for (int64_t i = 0; i < n; ++i) {
            const int64_t pos = count[(k[i] >> shift) & kMask]++;
            k_tmp[pos] = k[i];
            o_tmp[pos] = order[i];
        }
        k.swap(k_tmp);
        order.swap(o_tmp);
    }
}

// Sort keys (stable) and add up contrib rows (n x h, row-major) of equal keys.
inline int64_t group_sum(const int64_t* keys, const double* contrib, int64_t n, int64_t h,
                         int64_t* out_keys, double* out_acc) {
    if (n == 0) return 0;
    std::vector<int64_t> order;
    radix_argsort(keys, n, order);
    int64_t m = -1;
    int64_t last = 0;
    for (int64_t j = 0; j < n; ++j) {
        const int64_t i = order[static_cast<size_t>(j)];
        const int64_t key = keys[i];
        if (m < 0 || key != last) {
            ++m;
            out_keys[m] = key;
            last = key;
            for (int64_t c = 0; c < h; ++c) out_acc[m * h + c] = 0.0;
        }
        for (int64_t c = 0; c < h; ++c) out_acc[m * h + c] += contrib[i * h + c];
    }
    return m + 1;
}

// Union of two sorted unique runs; rows of shared keys are added (a + b).
inline int64_t merge_runs(const int64_t* a_keys, const double* a_acc, int64_t na, const int64_t* b_keys,
                          const double* b_acc, int64_t nb, int64_t h, int64_t* out_keys, double* out_acc) {
    int64_t i = 0, j = 0, m = 0;
    while (i < na || j < nb) {
        if (j >= nb || (i < na && a_keys[i] < b_keys[j])) {
            out_keys[m] = a_keys[i];
            for (int64_t c = 0; c < h; ++c) out_acc[m * h + c] = a_acc[i * h + c];
            ++i;
        } else if (i >= na || b_keys[j] < a_keys[i]) {
            out_keys[m] = b_keys[j];
            for (int64_t c = 0; c < h; ++c) out_acc[m * h + c] = b_acc[j * h + c];
            ++j;
        } else {
            out_keys[m] = a_keys[i];
            for (int64_t c = 0; c < h; ++c) out_acc[m * h + c] = a_acc[i * h + c] + b_acc[j * h + c];
            ++i;
            ++j;
        }
        ++m;
    }
    return m;
}

// Decayed engagement d, population value totals and the shrunk lift per stored entry.
inline void lift_scores(const int64_t* indptr, int64_t n_rows, const int64_t* cols, const double* acc,
                        int64_t n, int64_t h, const double* factors, double kappa, double* value_totals,
                        int64_t n_values, double* out_decayed, double* out_lift) {
    for (int64_t v = 0; v < n_values; ++v) value_totals[v] = 0.0;
    for (int64_t j = 0; j < n; ++j) {
        double d = 0.0;
        for (int64_t c = 0; c < h; ++c) d += acc[j * h + c] * factors[c];
        out_decayed[j] = d;
        value_totals[cols[j]] += d;
    }
    double grand = 0.0;
    for (int64_t v = 0; v < n_values; ++v) grand += value_totals[v];
    for (int64_t row = 0; row < n_rows; ++row) {
        double total = 0.0;
        for (int64_t j = indptr[row]; j < indptr[row + 1]; ++j) total += out_decayed[j];
        for (int64_t j = indptr[row]; j < indptr[row + 1]; ++j) {
            const double share = grand > 0.0 ? value_totals[cols[j]] / grand : 0.0;
            const double expected = total * share + kappa;
            out_lift[j] = expected > 0.0 ? (out_decayed[j] + kappa) / expected : 1.0;
        }
    }
}

// Per CSR row, the k largest values (descending, ties keep the earlier entry, NaN last).
inline void topk_segments(const int64_t* indptr, int64_t n_rows, const int64_t* cols, const double* vals,
                          int64_t k, int64_t* out_index, double* out_value) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double ninf = -std::numeric_limits<double>::infinity();
    for (int64_t row = 0; row < n_rows; ++row) {
        int64_t* idx = out_index + row * k;
        double* val = out_value + row * k;
        for (int64_t t = 0; t < k; ++t) {
            idx[t] = -1;
            val[t] = nan;
        }
        int64_t filled = 0;
        for (int64_t j = indptr[row]; j < indptr[row + 1]; ++j) {
            const double v = vals[j];
            const double key = std::isnan(v) ? ninf : v;
            int64_t pos = filled;
            while (pos > 0) {
                const double prev = val[pos - 1];
                const double prev_key = std::isnan(prev) ? ninf : prev;
                if (key > prev_key) --pos; else break;
            }
            if (pos >= k) continue;
            const int64_t last = filled < k ? filled : k - 1;
            for (int64_t t = last; t > pos; --t) {
                idx[t] = idx[t - 1];
                val[t] = val[t - 1];
            }
            idx[pos] = cols[j];
            val[pos] = v;
            if (filled < k) ++filled;
        }
    }
}

// Stable counting sort of entry positions by column (out_ptr has n_values + 1 slots).
inline void transpose_index(const int64_t* cols, int64_t n, int64_t n_values, int64_t* out_ptr,
                            int64_t* out_order) {
    std::fill(out_ptr, out_ptr + n_values + 1, int64_t{0});
    for (int64_t j = 0; j < n; ++j) ++out_ptr[cols[j] + 1];
    for (int64_t v = 0; v < n_values; ++v) out_ptr[v + 1] += out_ptr[v];
    std::vector<int64_t> cursor(out_ptr, out_ptr + n_values);
    for (int64_t j = 0; j < n; ++j) out_order[cursor[static_cast<size_t>(cols[j])]++] = j;
}

// Add each CSR row's dot product with dense and its squared norm into the outputs.
inline void csr_dot(const int64_t* indptr, int64_t n_rows, const int64_t* cols, const double* vals,
                    const double* dense, double* out_dot, double* out_sqnorm) {
    for (int64_t row = 0; row < n_rows; ++row) {
        double dot = 0.0, sq = 0.0;
        for (int64_t j = indptr[row]; j < indptr[row + 1]; ++j) {
            dot += vals[j] * dense[cols[j]];
            sq += vals[j] * vals[j];
        }
        out_dot[row] += dot;
        out_sqnorm[row] += sq;
    }
}

}  // namespace affinity
