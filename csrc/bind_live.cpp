// pybind11 bindings of csrc/live.hpp: scalar arguments, no temporaries, the GIL kept (each call
// is well under a microsecond, less than releasing and taking it back would cost).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <string_view>

#include "ingest.hpp"
#include "live.hpp"

namespace py = pybind11;
namespace ak = affinity::kernels;

namespace {

[[noreturn]] void fail(const std::string& msg) { throw py::value_error(msg); }

py::handle state_dtype() {
    // Leaked on purpose: a static py::object would be destroyed after the interpreter finalises.
    static PyObject* dt =
        py::object(py::module_::import("affinity_sdk.kernels._layout").attr("STATE_DTYPE")).release().ptr();
    return dt;
}

// Row `code` of a (profiles, signals) STATE_DTYPE array, checked.
ak::Record* row_of(const py::array& records, int64_t code, bool writable) {
    if (!records.dtype().equal(state_dtype()) || records.ndim() != 2 || !(records.flags() & py::array::c_style))
        fail("Expected `records`: a C-contiguous (profiles, signals) array of STATE_DTYPE");
    if (writable && !records.writeable()) fail("Expected `records` to be writeable");
    if (code < 0 || code >= records.shape(0))
        fail("profile " + std::to_string(code) + " is outside the state's " + std::to_string(records.shape(0)) +
             " profiles");
    auto* base = static_cast<ak::Record*>(const_cast<void*>(records.data()));
    return base + code * records.shape(1);
}

const double* doubles_of(const py::array& a, const char* name, py::ssize_t n) {
    if (!a.dtype().equal(py::dtype::of<double>()) || a.ndim() != 1 || a.shape(0) != n ||
        !(a.flags() & py::array::c_style))
        fail(std::string("Expected `") + name + "`: a contiguous float64 array of length " + std::to_string(n));
    return static_cast<const double*>(a.data());
}

void live_fold(const py::array& records, int64_t code, int64_t signal, int64_t ts_ms, double value,
               int64_t landmark_ms, const py::array& lam_per_ms) {
    ak::Record* row = row_of(records, code, true);
    const py::ssize_t n_signals = records.shape(1);
    const double* lam = doubles_of(lam_per_ms, "lam_per_ms", n_signals);
    if (signal < 0 || signal >= n_signals)
        fail("signal " + std::to_string(signal) + " is outside the state's " + std::to_string(n_signals) +
             " signals");
    affinity::live::fold_one(row, signal, ts_ms, value, landmark_ms, lam);
}

double live_raw(const py::array& records, int64_t code, const py::array& coefs) {
    const ak::Record* row = row_of(records, code, false);
    const py::ssize_t n_signals = records.shape(1);
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

uint64_t live_event_id(std::string_view event_id) { return affinity::ingest::fnv1a(event_id); }

}  // namespace

void register_live(py::module_& m) {
    m.def("live_fold", &live_fold, py::arg("records"), py::arg("code"), py::arg("signal"), py::arg("ts_ms"),
          py::arg("value"), py::arg("landmark_ms"), py::arg("lam_per_ms"),
          "Fold one event into row `code` of the records in place (the batch fold's numbers).");
    m.def("live_raw", &live_raw, py::arg("records"), py::arg("code"), py::arg("coefs"),
          "Raw score of row `code`: sum of coefs * acc, in raw_scores' order.");
    m.def("live_probe", &live_probe, py::arg("cur"), py::arg("old"), py::arg("key"), py::arg("room"),
          py::arg("shift"), "Event-id window probe of one key: 1 replay, 0 inserted, -1 generation full.");
    m.def("live_event_id", &live_event_id, py::arg("event_id"),
          "64-bit FNV-1a of an event id's UTF-8 bytes (0 maps to 1): affinity_sdk's event_id_hash.");
}
