// pybind11 bindings of csrc/kernels.hpp and csrc/accumulate.hpp: the "cpp" backend of affinity_sdk.kernels.
//
// Arrays are taken as they come (no forcecast, no copies): a wrong dtype, layout, shape or a
// read-only output raises ValueError instead of being converted behind the caller's back, and the
// GIL is released while a kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "accumulate.hpp"
#include "dedupe.hpp"
#include "kernels.hpp"
#include "tiers.hpp"

namespace py = pybind11;
namespace ak = affinity::kernels;

namespace {

[[noreturn]] void fail(const std::string& msg) { throw py::value_error(msg); }

template <class T>
T* data_of(const py::array& a, const char* name, bool writable, int ndim = 1) {
    if (!a.dtype().equal(py::dtype::of<T>()))
        fail(std::string("Expected `") + name + "` of dtype " + std::string(py::str(py::dtype::of<T>())) +
             ", got " + std::string(py::str(a.dtype())));
    if (a.ndim() != ndim)
        fail(std::string("Expected `") + name + "` with " + std::to_string(ndim) + " dimension(s), got " +
             std::to_string(a.ndim()));
    if (!(a.flags() & py::array::c_style)) fail(std::string("Expected `") + name + "` to be C-contiguous");
    if (writable && !a.writeable()) fail(std::string("Expected `") + name + "` to be writeable");
    return static_cast<T*>(const_cast<void*>(a.data()));
}

py::handle state_dtype() {
    // Leaked on purpose: a static py::object would be destroyed after the interpreter finalises.
    static PyObject* dt =
        py::object(py::module_::import("affinity_sdk.kernels._layout").attr("STATE_DTYPE")).release().ptr();
    return dt;
}

ak::Record* records_of(const py::array& a, const char* name, bool writable) {
    if (!a.dtype().equal(state_dtype())) fail(std::string("Expected `") + name + "` of dtype STATE_DTYPE");
    if (a.ndim() != 2) fail(std::string("Expected `") + name + "` of shape (profiles, signals)");
    if (!(a.flags() & py::array::c_style)) fail(std::string("Expected `") + name + "` to be C-contiguous");
    if (writable && !a.writeable()) fail(std::string("Expected `") + name + "` to be writeable");
    return static_cast<ak::Record*>(const_cast<void*>(a.data()));
}

// The sums `acc` of a state: C-contiguous float64 of shape (profiles, signals), or of `records`' shape.
double* acc_of(const py::array& a, const char* name, bool writable, const py::array* records = nullptr) {
    double* p = data_of<double>(a, name, writable, 2);
    if (records != nullptr && (a.shape(0) != records->shape(0) || a.shape(1) != records->shape(1)))
        fail(std::string("Expected `") + name + "` of the records' shape");
    return p;
}

void expect_len(const py::array& a, const char* name, py::ssize_t n) {
    if (a.shape(0) != n)
        fail(std::string("Expected `") + name + "` of length " + std::to_string(n) + ", got " +
             std::to_string(a.shape(0)));
}

void accumulate(const py::array& acc, const py::array& records, const py::array& users, const py::array& signals, const py::array& ts_ms,
                const py::array& values, int64_t landmark_ms, const py::array& lam_per_ms, int64_t max_slice,
                int64_t block_bytes) {
    ak::Record* rec = records_of(records, "records", true);
    double* a = acc_of(acc, "acc", true, &records);
    const int64_t n_profiles = records.shape(0), n_signals = records.shape(1);
    const auto* u = data_of<int64_t>(users, "users", false);
    const py::ssize_t n = users.shape(0);
    const auto* s = data_of<int64_t>(signals, "signals", false);
    const auto* t = data_of<int64_t>(ts_ms, "ts_ms", false);
    const auto* v = data_of<double>(values, "values", false);
    const auto* lam = data_of<double>(lam_per_ms, "lam_per_ms", false);
    expect_len(signals, "signals", n);
    expect_len(ts_ms, "ts_ms", n);
    expect_len(values, "values", n);
    expect_len(lam_per_ms, "lam_per_ms", n_signals);
    if (max_slice < 1) fail("max_slice must be >= 1, got " + std::to_string(max_slice));
    if (block_bytes < 1) fail("block_bytes must be >= 1, got " + std::to_string(block_bytes));
    int64_t bad;
    {
        py::gil_scoped_release release;
        bad = ak::accumulate(a, rec, n_profiles, n_signals, u, s, t, v, n, landmark_ms, lam, static_cast<std::size_t>(block_bytes),
                             max_slice);
    }
    if (bad >= 0)
        fail("event " + std::to_string(bad) + " has profile " + std::to_string(u[bad]) + " / signal " +
             std::to_string(s[bad]) + " outside the state's " + std::to_string(n_profiles) + " x " +
             std::to_string(n_signals) + " records");
}

void rebase(const py::array& acc, const py::array& factors) {
    double* a = acc_of(acc, "acc", true);
    const auto* f = data_of<double>(factors, "factors", false);
    expect_len(factors, "factors", acc.shape(1));
    py::gil_scoped_release release;
    ak::rebase(a, acc.shape(0), acc.shape(1), f);
}

void merge(const py::array& into_acc, const py::array& into, const py::array& other_acc, const py::array& other) {
    ak::Record* a = records_of(into, "into", true);
    const ak::Record* b = records_of(other, "other", false);
    if (into.shape(0) != other.shape(0) || into.shape(1) != other.shape(1))
        fail("Expected `into` and `other` of the same shape");
    double* aa = acc_of(into_acc, "into_acc", true, &into);
    const double* ba = acc_of(other_acc, "other_acc", false, &into);
    py::gil_scoped_release release;
    ak::merge(aa, a, ba, b, into.shape(0) * into.shape(1));
}

void decayed(const py::array& acc, const py::array& factors, const py::array& out) {
    const double* a = acc_of(acc, "acc", false);
    const auto* f = data_of<double>(factors, "factors", false);
    auto* o = data_of<double>(out, "out", true, 2);
    expect_len(factors, "factors", acc.shape(1));
    if (out.shape(0) != acc.shape(0) || out.shape(1) != acc.shape(1)) fail("Expected `out` of the state's shape");
    py::gil_scoped_release release;
    ak::decayed(a, acc.shape(0), acc.shape(1), f, o);
}

void raw_scores(const py::array& acc, const py::array& coefs, const py::array& out, int64_t threads) {
    const double* a = acc_of(acc, "acc", false);
    const auto* c = data_of<double>(coefs, "coefs", false);
    auto* o = data_of<double>(out, "out", true);
    expect_len(coefs, "coefs", acc.shape(1));
    expect_len(out, "out", acc.shape(0));
    if (threads < 1) fail("threads must be >= 1, got " + std::to_string(threads));
    py::gil_scoped_release release;
    ak::raw_scores_threaded(a, acc.shape(0), acc.shape(1), c, o, threads);
}

void scores_100(const py::array& raw, double half_point, const py::array& out) {
    const auto* r = data_of<double>(raw, "raw", false);
    auto* o = data_of<double>(out, "out", true);
    expect_len(out, "out", raw.shape(0));
    py::gil_scoped_release release;
    ak::scores_100(r, raw.shape(0), half_point, o);
}

py::array_t<double> quantile_cutoffs(const py::array& values, const py::array& fractions) {
    const auto* v = data_of<double>(values, "values", false);
    const auto* q = data_of<double>(fractions, "fractions", false);
    py::array_t<double> out(fractions.shape(0));
    double* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        ak::quantile_cutoffs(v, values.shape(0), q, fractions.shape(0), o);
    }
    return out;
}

void check_tier_args(const py::array& values, const py::array& cut_up, const py::array& cut_down,
                     const py::array& previous, const py::array& out) {
    expect_len(cut_up, "cut_up", 2);
    expect_len(cut_down, "cut_down", 2);
    expect_len(previous, "previous", values.shape(0));
    expect_len(out, "out", values.shape(0));
}

void assign_tiers(const py::array& values, const py::array& cut_up, const py::array& cut_down,
                  const py::array& previous, const py::array& out) {
    const auto* v = data_of<double>(values, "values", false);
    const auto* up = data_of<double>(cut_up, "cut_up", false);
    const auto* down = data_of<double>(cut_down, "cut_down", false);
    const auto* p = data_of<int8_t>(previous, "previous", false);
    auto* o = data_of<int8_t>(out, "out", true);
    check_tier_args(values, cut_up, cut_down, previous, out);
    py::gil_scoped_release release;
    ak::assign_tiers(v, values.shape(0), up, down, p, o);
}

// `previous` None: no tiers before (nothing to read).
void score_tiers(const py::array& raw, double half_point, const py::array& fractions, const py::array& margins,
                 const py::object& previous, const py::array& out_score, const py::array& out_tier,
                 const py::array& out_cut, int64_t threads) {
    if (threads < 1) fail("threads must be >= 1, got " + std::to_string(threads));
    const auto* r = data_of<double>(raw, "raw", false);
    const auto* q = data_of<double>(fractions, "fractions", false);
    const auto* m = data_of<double>(margins, "margins", false);
    const int8_t* p = nullptr;
    auto* os = data_of<double>(out_score, "out_score", true);
    auto* ot = data_of<int8_t>(out_tier, "out_tier", true);
    auto* oc = data_of<double>(out_cut, "out_cut", true);
    const py::ssize_t n = raw.shape(0);
    expect_len(fractions, "fractions", 2);
    expect_len(margins, "margins", 2);
    expect_len(out_cut, "out_cut", 2);
    py::array prev;  // keeps a converted `previous` alive through the call
    if (!previous.is_none()) {
        prev = previous.cast<py::array>();
        p = data_of<int8_t>(prev, "previous", false);
        expect_len(prev, "previous", n);
    }
    expect_len(out_score, "out_score", n);
    expect_len(out_tier, "out_tier", n);
    py::gil_scoped_release release;
    ak::score_tiers(r, n, half_point, q, m, p, os, ot, oc, threads);
}

void check_topk_out(const py::array& out_index, const py::array& out_value, py::ssize_t rows, int64_t k) {
    if (out_index.shape(0) != rows || out_index.shape(1) != k || out_value.shape(0) != rows ||
        out_value.shape(1) != k)
        fail("Expected `out_index` and `out_value` of shape (rows, k)");
}

void topk_rows(const py::array& matrix, int64_t k, const py::array& out_index, const py::array& out_value) {
    const auto* mat = data_of<double>(matrix, "matrix", false, 2);
    auto* oi = data_of<int64_t>(out_index, "out_index", true, 2);
    auto* ov = data_of<double>(out_value, "out_value", true, 2);
    if (k < 0) fail("Expected k >= 0");
    const py::ssize_t rows = matrix.shape(0), cols = matrix.shape(1);
    check_topk_out(out_index, out_value, rows, k);
    py::gil_scoped_release release;
    std::vector<int64_t> start(static_cast<std::size_t>(rows) + 1);
    for (py::ssize_t r = 0; r <= rows; ++r) start[static_cast<std::size_t>(r)] = r * cols;
    ak::topk_sparse(start.data(), nullptr, mat, rows, k, oi, ov);
}

void topk_csr(const py::array& indptr, const py::array& indices, const py::array& data, int64_t k,
              const py::array& out_index, const py::array& out_value) {
    const auto* ip = data_of<int64_t>(indptr, "indptr", false);
    const auto* ix = data_of<int64_t>(indices, "indices", false);
    const auto* d = data_of<double>(data, "data", false);
    auto* oi = data_of<int64_t>(out_index, "out_index", true, 2);
    auto* ov = data_of<double>(out_value, "out_value", true, 2);
    if (k < 0) fail("Expected k >= 0");
    if (indptr.shape(0) < 1) fail("Expected `indptr` of length rows + 1");
    const py::ssize_t rows = indptr.shape(0) - 1;
    expect_len(data, "data", indices.shape(0));
    check_topk_out(out_index, out_value, rows, k);
    if (ip[0] != 0 || ip[rows] != indices.shape(0)) fail("Expected `indptr` from 0 to len(indices)");
    for (py::ssize_t r = 0; r < rows; ++r)
        if (ip[r + 1] < ip[r]) fail("Expected `indptr` to be non-decreasing");
    py::gil_scoped_release release;
    ak::topk_sparse(ip, ix, d, rows, k, oi, ov);
}

py::tuple probe_insert(const py::array& cur, const py::array& old, const py::array& keys, const py::array& dup,
                       int64_t start, int64_t room, int64_t shift) {
    auto* c = data_of<uint64_t>(cur, "cur", true);
    const auto* o = data_of<uint64_t>(old, "old", false);
    const auto* k = data_of<uint64_t>(keys, "keys", false);
    auto* d = data_of<bool>(dup, "dup", true);
    const auto size = static_cast<uint64_t>(cur.shape(0));
    if (size == 0 || (size & (size - 1)) != 0) fail("Expected `cur` of a power-of-two length");
    expect_len(old, "old", cur.shape(0));
    expect_len(dup, "dup", keys.shape(0));
    if (shift < 0 || shift > 63 || (uint64_t{1} << (64 - shift)) > size) fail("Expected `shift` matching the table size");
    if (start < 0 || room < 0) fail("Expected `start` and `room` >= 0");
    std::pair<int64_t, int64_t> out;
    {
        py::gil_scoped_release release;
        out = affinity::dedupe::probe_insert(c, o, size, k, d, keys.shape(0), start, room,
                                             static_cast<unsigned>(shift));
    }
    return py::make_tuple(out.first, out.second);
}

// The scored events of a batch, in input order (SignalView.fold's selection): the rows whose event
// type has a signal (signal_of_type[type] >= 0), with their user, signal, time and value (the
// revenue, NaN read as 0, where the signal decays revenue; else 1). One pass over the columns
// instead of numpy's mask, compress and where passes, and the same arrays.
py::tuple scored_events(const py::array& event_type, const py::array& user, const py::array& ts_ms,
                        const py::array& revenue, const py::array& signal_of_type, const py::array& decays_revenue) {
    const auto* type = data_of<uint8_t>(event_type, "event_type", false);
    const auto* u = data_of<int64_t>(user, "user", false);
    const auto* t = data_of<int64_t>(ts_ms, "ts_ms", false);
    const auto* r = data_of<double>(revenue, "revenue", false);
    const auto* table = data_of<int64_t>(signal_of_type, "signal_of_type", false);
    const auto* decays = data_of<bool>(decays_revenue, "decays_revenue", false);
    const py::ssize_t n = event_type.shape(0);
    expect_len(user, "user", n);
    expect_len(ts_ms, "ts_ms", n);
    expect_len(revenue, "revenue", n);
    const py::ssize_t n_types = signal_of_type.shape(0), n_signals = decays_revenue.shape(0);
    for (py::ssize_t k = 0; k < n_types; ++k)
        if (table[k] >= n_signals) fail("Expected `signal_of_type` below len(decays_revenue)");
    py::ssize_t kept = 0;
    for (py::ssize_t i = 0; i < n; ++i) {
        if (type[i] >= n_types) fail("Expected `event_type` codes below len(signal_of_type)");
        kept += table[type[i]] >= 0;
    }
    py::array_t<int64_t> users(kept), signals(kept), times(kept);
    py::array_t<double> values(kept);
    int64_t* ou = users.mutable_data();
    int64_t* os = signals.mutable_data();
    int64_t* ot = times.mutable_data();
    double* ov = values.mutable_data();
    {
        py::gil_scoped_release release;
        py::ssize_t j = 0;
        for (py::ssize_t i = 0; i < n; ++i) {
            const int64_t s = table[type[i]];
            if (s < 0) continue;
            ou[j] = u[i];
            os[j] = s;
            ot[j] = t[i];
            ov[j] = decays[s] ? (std::isnan(r[i]) ? 0.0 : r[i]) : 1.0;
            ++j;
        }
    }
    return py::make_tuple(users, signals, times, values);
}

}  // namespace

void register_kernels(py::module_& m) {
    m.def("probe_insert", &probe_insert, py::arg("cur"), py::arg("old"), py::arg("keys"), py::arg("dup"),
          py::arg("start"), py::arg("room"), py::arg("shift"),
          "The event-id window's probe: mark replays in `dup`, insert new ids into `cur`.");
    m.def("scored_events", &scored_events, py::arg("event_type"), py::arg("user"), py::arg("ts_ms"),
          py::arg("revenue"), py::arg("signal_of_type"), py::arg("decays_revenue"),
          "The rows of scored event types as (users, signals, ts_ms, values) arrays, in order.");
    m.def("accumulate", &accumulate, py::arg("acc"), py::arg("records"), py::arg("users"), py::arg("signals"),
          py::arg("ts_ms"), py::arg("values"), py::arg("landmark_ms"), py::arg("lam_per_ms"),
          py::arg("max_slice") = ak::kMaxSlice, py::arg("block_bytes") = static_cast<int64_t>(ak::kBlockBytes),
          "Fold events into the (profiles, signals) state (acc, records) in place; a partitioned batch is "
          "packed max_slice events at a time (16 bytes of scratch each; smaller only to test the slicing) "
          "and applied by blocks of profiles whose state takes at most block_bytes (to tune and test).");
    m.def("release_accumulate_scratch", &ak::release_scratch,
          "Free the partition scratch that accumulate keeps between calls (kept for batches of up to 4M events: "
          "64 MiB; reallocated on demand).");
    m.def("rebase", &rebase, py::arg("acc"), py::arg("factors"), "Multiply each signal's acc by its factor.");
    m.def("merge", &merge, py::arg("into_acc"), py::arg("into"), py::arg("other_acc"), py::arg("other"),
          "Add the state (other_acc, other) into (into_acc, into).");
    m.def("decayed", &decayed, py::arg("acc"), py::arg("factors"), py::arg("out"),
          "Decayed value per (profile, signal).");
    m.def("raw_scores", &raw_scores, py::arg("acc"), py::arg("coefs"), py::arg("out"), py::arg("threads") = 1,
          "Composite raw score per profile, on up to `threads` threads (bit-identical for any count).");
    m.def("scores_100", &scores_100, py::arg("raw"), py::arg("half_point"), py::arg("out"),
          "0-100 score 100 r / (r + half_point).");
    m.def("quantile_cutoffs", &quantile_cutoffs, py::arg("values"), py::arg("fractions"),
          "Cut-off values for the top 1 - q of `values` (radix selection, O(n)).");
    m.def("assign_tiers", &assign_tiers, py::arg("values"), py::arg("cut_up"), py::arg("cut_down"),
          py::arg("previous"), py::arg("out"), "Tier codes with hysteresis.");
    m.def("score_tiers", &score_tiers, py::arg("raw"), py::arg("half_point"), py::arg("fractions"),
          py::arg("margins"), py::arg("previous").none(true), py::arg("out_score"), py::arg("out_tier"),
          py::arg("out_cut"), py::arg("threads") = 1,
          "Fused raw -> 0-100 score -> quantile cut-offs -> tiers (`previous` may be None), on up to "
          "`threads` threads (the same result for any count).");
    m.def("topk_rows", &topk_rows, py::arg("matrix"), py::arg("k"), py::arg("out_index"), py::arg("out_value"),
          "Per-row k largest entries of a dense matrix.");
    m.def("topk_csr", &topk_csr, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("k"),
          py::arg("out_index"), py::arg("out_value"), "Per-row k largest stored entries of a CSR matrix.");
}
