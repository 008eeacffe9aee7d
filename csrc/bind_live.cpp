// pybind11 bindings of csrc/live.hpp and the one-event path's helpers (affinity_sdk/ingest/one_event.py,
// Scorer.tier_of): scalar arguments, no temporaries, the GIL kept (each call is well under a
// microsecond, less than releasing and taking it back would cost). The whole-call shortcuts of
// Scorer.ingest / tier_of / score_of are in csrc/bind_live_calls.cpp; what both use, in live_event.hpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "live.hpp"
#include "live_event.hpp"
#include "tiers.hpp"

namespace py = pybind11;
namespace ak = affinity::kernels;

namespace {

using namespace affinity::live_py;

// Row `code` of a (profiles, signals) STATE_DTYPE array, checked.
ak::Record* row_of(const py::array& records, int64_t code, bool writable) {
    // The state's arrays share STATE_DTYPE's descriptor object: compare fields only for another one.
    const bool same = records.dtype().ptr() == state_dtype().ptr() || records.dtype().equal(state_dtype());
    if (!same || records.ndim() != 2 || !(records.flags() & py::array::c_style))
        fail("Expected `records`: a C-contiguous (profiles, signals) array of STATE_DTYPE");
    if (writable && !records.writeable()) fail("Expected `records` to be writeable");
    if (code < 0 || code >= records.shape(0))
        fail("profile " + std::to_string(code) + " is outside the state's " + std::to_string(records.shape(0)) +
             " profiles");
    auto* base = static_cast<ak::Record*>(const_cast<void*>(records.data()));
    return base + code * records.shape(1);
}

// Row `code` of a (profiles, signals) C-contiguous float64 array of sums `acc`, checked.
double* acc_row_of(const py::array& acc, int64_t code, bool writable) {
    if (!acc.dtype().equal(py::dtype::of<double>()) || acc.ndim() != 2 || !(acc.flags() & py::array::c_style))
        fail("Expected `acc`: a C-contiguous (profiles, signals) float64 array");
    if (writable && !acc.writeable()) fail("Expected `acc` to be writeable");
    if (code < 0 || code >= acc.shape(0))
        fail("profile " + std::to_string(code) + " is outside the state's " + std::to_string(acc.shape(0)) +
             " profiles");
    return static_cast<double*>(const_cast<void*>(acc.data())) + code * acc.shape(1);
}

const double* doubles_of(const py::array& a, const char* name, py::ssize_t n) {
    if (!a.dtype().equal(py::dtype::of<double>()) || a.ndim() != 1 || a.shape(0) != n ||
        !(a.flags() & py::array::c_style))
        fail(std::string("Expected `") + name + "`: a contiguous float64 array of length " + std::to_string(n));
    return static_cast<const double*>(a.data());
}

void live_fold(const py::array& acc, const py::array& records, int64_t code, int64_t signal, int64_t ts_ms,
               double value, int64_t landmark_ms, const py::array& lam_per_ms) {
    ak::Record* row = row_of(records, code, true);
    double* sums = acc_row_of(acc, code, true);
    const py::ssize_t n_signals = records.shape(1);
    if (acc.shape(0) != records.shape(0) || acc.shape(1) != n_signals)
        fail("Expected `acc` of the records' shape");
    const double* lam = doubles_of(lam_per_ms, "lam_per_ms", n_signals);
    if (signal < 0 || signal >= n_signals)
        fail("signal " + std::to_string(signal) + " is outside the state's " + std::to_string(n_signals) +
             " signals");
    affinity::live::fold_one(sums, row, signal, ts_ms, value, landmark_ms, lam);
}

double live_raw(const py::array& acc, int64_t code, const py::array& coefs) {
    const double* row = acc_row_of(acc, code, false);
    const py::ssize_t n_signals = acc.shape(1);
    return affinity::live::raw_of(row, n_signals, doubles_of(coefs, "coefs", n_signals));
}

int live_probe(const py::array& cur, const py::array& old, uint64_t key, int64_t room, int64_t shift) {
    const auto u64 = py::dtype::of<uint64_t>();
    const py::ssize_t n = cur.shape(0);
    if (!cur.dtype().equal(u64) || !old.dtype().equal(u64) || cur.ndim() != 1 || old.ndim() != 1 ||
        old.shape(0) != n || !(cur.flags() & py::array::c_style) || !(old.flags() & py::array::c_style) ||
        !cur.writeable())
        fail("Expected `cur` and `old`: contiguous uint64 tables of one length (`cur` writeable)");
    const auto size = static_cast<uint64_t>(n);
    if (size == 0 || (size & (size - 1)) != 0) fail("Expected tables of a power-of-two length");
    if (shift < 0 || shift > 63 || (uint64_t{1} << (64 - shift)) > size) fail("Expected `shift` matching the table size");
    if (key == 0 || room < 0) fail("Expected a non-zero key and `room` >= 0");
    return affinity::live::probe_one(static_cast<uint64_t*>(const_cast<void*>(cur.data())),
                                      static_cast<const uint64_t*>(old.data()), size, key, room,
                                      static_cast<unsigned>(shift));
}

// The coefficient table of live_raw_at: [Δ of the coefficients (NaN: none yet), −λ (n), weights (n),
// scratch (2n), coefficients (n)], one float64 array the signals view keeps.
double* table_of(const py::array& table, py::ssize_t n_signals) {
    if (!table.dtype().equal(py::dtype::of<double>()) || table.ndim() != 1 || table.shape(0) != 1 + 5 * n_signals ||
        !(table.flags() & py::array::c_style) || !table.writeable())
        fail("Expected `table`: a writeable contiguous float64 array of length 1 + 5 * signals");
    return static_cast<double*>(const_cast<void*>(table.data()));
}

// Raw score of row `code` at delta_ms after the landmark (live_raw_at).
double raw_at(const py::array& acc, int64_t code, int64_t delta_ms, const py::array& table) {
    const double* row = acc_row_of(acc, code, false);
    const py::ssize_t n = acc.shape(1);
    double* t = table_of(table, n);
    if (delta_ms < 0) fail("Expected `delta_ms` >= 0 (a time at or after the landmark)");
    return raw_at_row(row, n, delta_ms, t, exp_loop_or_fail());
}

// tier_of's rule on one profile: raw score at delta_ms (as live_raw_at), then the batch kernels'
// tier code with hysteresis against tiers[code] (NO_TIER = -1 past its end or when it holds -1),
// the cut-offs `cuts` = [enter (2), first assignment (2), stay (2)] (ScalarCutoffs' fields).
int live_tier(const py::array& acc, int64_t code, int64_t delta_ms, const py::array& table,
              const py::array& tiers, const py::array& cuts) {
    if (!tiers.dtype().equal(py::dtype::of<int8_t>()) || tiers.ndim() != 1 || !(tiers.flags() & py::array::c_style))
        fail("Expected `tiers`: a contiguous int8 array");
    const double* c = doubles_of(cuts, "cuts", 6);
    const double raw = raw_at(acc, code, delta_ms, table);
    const auto previous =
        code < tiers.shape(0) ? static_cast<const int8_t*>(tiers.data())[code] : static_cast<int8_t>(-1);
    const double* up = previous < 0 ? c + 2 : c;
    return ak::tiers_detail::tier_code(raw, previous, up[0], up[1], c[4], c[5]);
}

void live_exp(const py::array& x, const py::array& out) {
    const py::ssize_t n = x.ndim() == 1 ? x.shape(0) : -1;
    const double* in = doubles_of(x, "x", n);
    double* o = const_cast<double*>(doubles_of(out, "out", n));
    if (!out.writeable()) fail("Expected `out` to be writeable");
    const ExpLoop& exp = exp_loop_or_fail();
    char* args[2] = {reinterpret_cast<char*>(const_cast<double*>(in)), reinterpret_cast<char*>(o)};
    const std::ptrdiff_t dims[1] = {static_cast<std::ptrdiff_t>(n)};
    const std::ptrdiff_t steps[2] = {sizeof(double), sizeof(double)};
    exp.loop(args, dims, steps, exp.data);
}

// The event reader's tables and limits (one_event._compiled), interned field names included.
void live_event_setup(const py::dict& shapes, const py::dict& channels, const py::object& product_type,
                      long plain_shape, long one_shape, int64_t min_ts, int64_t max_ts, double max_amount,
                      double max_revenue) {
    auto* r = new EventReader{shapes.inc_ref().ptr(),
                              channels.inc_ref().ptr(),
                              product_type.inc_ref().ptr(),
                              PyFloat_FromDouble(std::numeric_limits<double>::quiet_NaN()),
                              py::none().inc_ref().ptr(),
                              plain_shape,
                              one_shape,
                              min_ts,
                              max_ts,
                              max_amount,
                              max_revenue,
                              interned("user_id"),
                              interned("timestamp"),
                              interned("channel"),
                              interned("event_id"),
                              interned("product"),
                              interned("product_id"),
                              interned("category"),
                              interned("brand"),
                              interned("price"),
                              interned("discount"),
                              interned("quantity"),
                              interned("users"),
                              interned("products"),
                              interned("categories"),
                              interned("brands"),
                              interned("_codes")};
    event_reader = r;  // an earlier reader (a second setup) is kept alive: a call may still hold it
}

py::object live_event(py::handle event, py::handle interners) {
    Fields f;
    if (!read_event(event.ptr(), interners.ptr(), f)) return py::none();
    py::list products(0);
    py::list item_codes(0);
    if (f.product) {
        products.append(f.product);
        if (f.item_codes) item_codes.append(f.item_codes);
    }
    // The items' codes when every id is known (None: the caller interns them), the user's or None.
    const py::object items = item_codes.size() == products.size() ? py::object(py::make_tuple(-1, item_codes))
                                                                   : py::none();
    return py::make_tuple(py::reinterpret_borrow<py::object>(f.type_code), f.user, f.ts, f.channel, f.revenue,
                          f.discount, false, py::none(), -1, f.event_id, products, f.key,
                          f.user_code ? f.user_code : py::none(), items);
}

py::object live_report(const py::type& cls, const py::dict& fields, int64_t code) {
    return report_of(cls.ptr(), fields.ptr(), code);
}

uint64_t live_event_id(std::string_view event_id) { return affinity::ingest::fnv1a(event_id); }

}  // namespace

void register_live(py::module_& m) {
    m.def("live_fold", &live_fold, py::arg("acc"), py::arg("records"), py::arg("code"), py::arg("signal"), py::arg("ts_ms"),
          py::arg("value"), py::arg("landmark_ms"), py::arg("lam_per_ms"),
          "Fold one event into row `code` of the state (acc, records) in place (the batch fold's numbers).");
    m.def("live_raw", &live_raw, py::arg("acc"), py::arg("code"), py::arg("coefs"),
          "Raw score of row `code`: sum of coefs * acc, in raw_scores' order.");
    m.def("live_probe", &live_probe, py::arg("cur"), py::arg("old"), py::arg("key"), py::arg("room"),
          py::arg("shift"), "Event-id window probe of one key: 1 replay, 0 inserted, -1 generation full.");
    m.def("live_event_id", &live_event_id, py::arg("event_id"),
          "64-bit FNV-1a of an event id's UTF-8 bytes (0 maps to 1): affinity_sdk's event_id_hash.");
    m.def("live_raw_at", &raw_at, py::arg("acc"), py::arg("code"), py::arg("delta_ms"), py::arg("table"),
          "Raw score of row `code` at delta_ms after the landmark, the coefficients kept in `table` per delta.");
    m.def("live_tier", &live_tier, py::arg("acc"), py::arg("code"), py::arg("delta_ms"), py::arg("table"),
          py::arg("tiers"), py::arg("cuts"),
          "Tier code of row `code` at delta_ms: live_raw_at's raw score, the batch rule with hysteresis "
          "against tiers[code], cuts = [enter (2), first (2), stay (2)].");
    m.def("live_exp", &live_exp, py::arg("x"), py::arg("out"),
          "numpy.exp's float64 loop called directly on contiguous arrays (to check it matches np.exp).");
    m.def("live_event_setup", &live_event_setup, py::arg("shapes"), py::arg("channels"), py::arg("product_type"),
          py::arg("plain_shape"), py::arg("one_shape"), py::arg("min_ts"), py::arg("max_ts"), py::arg("max_amount"),
          py::arg("max_revenue"), "Give live_event the one-event reader's tables and limits (once).");
    m.def("live_report", &live_report, py::arg("cls"), py::arg("fields"), py::arg("code"),
          "A new `cls` whose __dict__ is `fields` with rejected=[] and user_codes=array([code]).");
    m.def("live_event", &live_event, py::arg("event"), py::arg("interners"),
          "The one-event reader's fields, event-id hash, user code and item codes (each None if not interned "
          "as spelled) of a plain or one-product Struct, or None: ask Python.");
}