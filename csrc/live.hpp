// One event at a time (affinity_sdk/ingest/pipeline.py's one-event path, Scorer.tier_of): the
// fold, the raw score and the event-id probe on scalars, reusing the batch kernels' own pieces so
// every number equals the batch path's bit for bit. Header-only and free of Python.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dedupe.hpp"
#include "kernels.hpp"

namespace affinity::live {

// Fold one event into its profile's row (sums `acc`, records `row`): the contribution
// v · exp(λ_s (t − L)) computed by the batch kernel's own routine (the same vectorised exp, std::exp
// out of its range), then the same cell update as accumulate's direct path.
inline void fold_one(double* acc, kernels::Record* row, int64_t signal, int64_t ts_ms, double value,
                     int64_t landmark_ms, const double* lam) {
    double expo = 0.0;
    double contrib = 0.0;
    kernels::detail::contributions(&signal, &ts_ms, &value, landmark_ms, lam, 1, &expo, &contrib);
    kernels::detail::apply(acc[signal], row[signal], contrib, value, ts_ms);
}

// One profile's raw score Σ_s c_s A_s from its row of sums, in raw_scores' order (so the same double).
inline double raw_of(const double* acc, int64_t n_signals, const double* coefs) {
    double sum = 0.0;
    for (int64_t s = 0; s < n_signals; ++s) sum += coefs[s] * acc[s];
    return sum;
}

// numpy's one-dimensional ufunc loop (PyUFuncGenericFunction), spelled without Python's headers.
using UnaryLoop = void (*)(char** args, const std::ptrdiff_t* dimensions, const std::ptrdiff_t* steps, void* data);

// The coefficients of raw_of at Δ = now − L >= 0 into `coefs`: w_s · exp(−λ_s Δ) with the arithmetic
// of Python's `weights * decay_factors(lam, Δ)`, which score() uses (one multiply, then numpy's own
// exp loop `exp_loop`, then one multiply; 1 at Δ = 0), so the same doubles. `x` and `factors` are
// scratch of n_signals doubles.
inline void coefs_at(const double* neg_lam, const double* weights, int64_t n_signals, int64_t delta_ms,
                     UnaryLoop exp_loop, void* loop_data, double* x, double* factors, double* coefs) {
    if (delta_ms == 0) {
        for (int64_t s = 0; s < n_signals; ++s) coefs[s] = weights[s];
        return;
    }
    const double delta = static_cast<double>(delta_ms);
    for (int64_t s = 0; s < n_signals; ++s) x[s] = neg_lam[s] * delta;
    char* args[2] = {reinterpret_cast<char*>(x), reinterpret_cast<char*>(factors)};
    const std::ptrdiff_t dims[1] = {static_cast<std::ptrdiff_t>(n_signals)};
    const std::ptrdiff_t steps[2] = {sizeof(double), sizeof(double)};
    exp_loop(args, dims, steps, loop_data);
    for (int64_t s = 0; s < n_signals; ++s) coefs[s] = weights[s] * factors[s];
}

// Probe one non-zero key: 1 if either generation holds it, 0 if it was inserted into `cur`, -1 if
// it is new and `cur` has no room left (nothing inserted: the caller rotates and probes again).
inline int probe_one(uint64_t* cur, const uint64_t* old, uint64_t size, uint64_t key, int64_t room,
                     unsigned shift) {
    bool dup = false;
    const auto next = dedupe::probe_insert(cur, old, size, &key, &dup, 1, 0, room, shift);
    if (next.first == 0) return -1;
    return dup ? 1 : 0;
}

}  // namespace affinity::live
