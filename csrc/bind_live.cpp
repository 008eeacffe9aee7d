// pybind11 bindings of csrc/live.hpp and the one-event path's helpers (affinity_sdk/ingest/one_event.py,
// Scorer.tier_of): scalar arguments, no temporaries, the GIL kept (each call is well under a
// microsecond, less than releasing and taking it back would cost).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "ingest.hpp"
#include "live.hpp"
#include "tiers.hpp"

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

// numpy.exp's float64 loop, found once in the ufunc object: the legacy loop table holds the loop
// numpy dispatched for this CPU (AVX512F, AVX2 or scalar), so calling it gives np.exp's doubles.
// The ufunc struct's leading fields are numpy's stable ABI (numpy/ufuncobject.h), mirrored here so
// the build needs no numpy headers; anything unexpected leaves the loop unset.
struct UFuncHead {
    PyObject_HEAD
    int nin, nout, nargs;
    int identity;
    void** functions;
    void* const* data;
    int ntypes;
    int reserved1;
    const char* name;
    const char* types;
};

constexpr char kNpyDouble = 12;  // NPY_DOUBLE

struct ExpLoop {
    affinity::live::UnaryLoop loop = nullptr;
    void* data = nullptr;
};

const ExpLoop& numpy_exp() {
    static const ExpLoop found = [] {
        ExpLoop out;
        const py::object exp = py::module_::import("numpy").attr("exp");
        if (std::string(Py_TYPE(exp.ptr())->tp_name) != "numpy.ufunc") return out;
        const auto* u = reinterpret_cast<const UFuncHead*>(exp.ptr());
        if (u->nin != 1 || u->nout != 1 || u->nargs != 2 || u->name == nullptr || std::string(u->name) != "exp")
            return out;
        for (int i = 0; i < u->ntypes; ++i) {
            if (u->types[2 * i] == kNpyDouble && u->types[2 * i + 1] == kNpyDouble && u->functions[i] != nullptr) {
                out.loop = reinterpret_cast<affinity::live::UnaryLoop>(u->functions[i]);
                out.data = u->data[i];
                break;
            }
        }
        return out;  // the ufunc object lives as long as numpy: its table too
    }();
    return found;
}

const ExpLoop& exp_loop_or_fail() {
    const ExpLoop& exp = numpy_exp();
    if (exp.loop == nullptr) fail("numpy.exp's float64 loop was not found");
    return exp;
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
    double* coefs = t + 1 + 4 * n;
    const auto delta = static_cast<double>(delta_ms);
    if (!(t[0] == delta)) {
        const ExpLoop& exp = exp_loop_or_fail();
        affinity::live::coefs_at(t + 1, t + 1 + n, n, delta_ms, exp.loop, exp.data, t + 1 + 2 * n, t + 1 + 3 * n,
                                 coefs);
        t[0] = delta;
    }
    return affinity::live::raw_of(row, n, coefs);
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

// --- one event's fields, read from its Struct (affinity_sdk/ingest/one_event.py's _event) ---------
// Only the common case: a plain or one-product event whose every field has its usual type and
// passes the screen. Anything else answers None and the Python reader decides (it rejects what
// the screen would reject), so this is a shortcut that never changes an answer.

struct EventReader {
    PyObject* shapes;    // dict: event class -> (type code, shape, default channel code) or None
    PyObject* channels;  // dict: channel name -> code
    PyObject* product_type;
    PyObject* nan;
    PyObject* no_campaign;
    long plain_shape, one_shape;
    int64_t min_ts, max_ts;
    double max_amount, max_revenue;
    PyObject *user_id, *timestamp, *channel, *event_id, *product, *product_id, *category, *brand, *price,
        *discount, *quantity, *users, *products, *categories, *brands, *codes;
};

EventReader* event_reader = nullptr;  // set by live_event_setup; leaked on purpose (lives with the module)

PyObject* interned(const char* name) { return PyUnicode_InternFromString(name); }

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

// getattr, or an empty object (and no error set) when it fails.
py::object attr(PyObject* o, PyObject* name) {
    PyObject* v = PyObject_GetAttr(o, name);
    if (v == nullptr) PyErr_Clear();
    return py::reinterpret_steal<py::object>(v);
}

bool is_str(const py::object& v) { return v && PyUnicode_CheckExact(v.ptr()); }

bool nonempty_str(const py::object& v) { return v && PyUnicode_CheckExact(v.ptr()) && PyUnicode_GET_LENGTH(v.ptr()) > 0; }

// An exact int in [lo, hi] into `out`.
bool int_in(const py::object& v, int64_t lo, int64_t hi, int64_t& out) {
    if (!v || !PyLong_CheckExact(v.ptr())) return false;
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    if (overflow != 0 || (x == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return false;
    }
    out = x;
    return x >= lo && x <= hi;
}

// An exact float in [0, hi] (NaN is not) into `out`.
bool float_in(const py::object& v, double hi, double& out) {
    if (!v || !PyFloat_CheckExact(v.ptr())) return false;
    out = PyFloat_AS_DOUBLE(v.ptr());
    return out >= 0.0 && out <= hi;
}

// The code `name` has in interners.<table> (an Interner's name -> code dict, as spelled), or an
// empty object when it has none yet (the Python lookup normalises and interns).
py::object code_in(PyObject* interners, PyObject* table, PyObject* name, const EventReader* r) {
    const py::object interner = attr(interners, table);
    const py::object codes = interner ? attr(interner.ptr(), r->codes) : py::object();
    if (!codes || !PyDict_CheckExact(codes.ptr())) return py::object();
    PyObject* code = PyDict_GetItemWithError(codes.ptr(), name);
    if (code == nullptr) PyErr_Clear();
    return py::reinterpret_borrow<py::object>(code);
}

py::object live_event(py::handle event, py::handle interners) {
    const EventReader* r = event_reader;
    if (r == nullptr) return py::none();
    PyObject* const e = event.ptr();
    PyObject* found = PyDict_GetItemWithError(r->shapes, reinterpret_cast<PyObject*>(Py_TYPE(e)));  // borrowed
    if (found == nullptr || !PyTuple_CheckExact(found) || PyTuple_GET_SIZE(found) != 3) {
        PyErr_Clear();
        return py::none();
    }
    const long shape = PyLong_AsLong(PyTuple_GET_ITEM(found, 1));
    if (shape != r->plain_shape && shape != r->one_shape) {
        PyErr_Clear();
        return py::none();
    }
    const py::object user = attr(e, r->user_id);
    const py::object ts = attr(e, r->timestamp);
    int64_t ts_ms = 0;
    if (!nonempty_str(user) || !int_in(ts, r->min_ts, r->max_ts, ts_ms)) return py::none();
    py::object channel = py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(found, 2));
    const py::object named = attr(e, r->channel);
    if (!named) return py::none();
    if (named.ptr() != Py_None) {
        if (!PyUnicode_CheckExact(named.ptr())) return py::none();
        if (PyUnicode_GET_LENGTH(named.ptr()) > 0) {
            PyObject* code = PyDict_GetItemWithError(r->channels, named.ptr());
            if (code == nullptr) {
                PyErr_Clear();
                return py::none();
            }
            channel = py::reinterpret_borrow<py::object>(code);
        }
    }
    const py::object event_id = attr(e, r->event_id);
    uint64_t key = 0;
    if (!event_id) return py::none();
    if (event_id.ptr() != Py_None) {
        if (!PyUnicode_CheckExact(event_id.ptr())) return py::none();
        Py_ssize_t size = 0;
        const char* utf8 = PyUnicode_AsUTF8AndSize(event_id.ptr(), &size);
        if (utf8 == nullptr) {  // lone surrogates: the Python reader says what is wrong
            PyErr_Clear();
            return py::none();
        }
        key = affinity::ingest::fnv1a(std::string_view(utf8, static_cast<size_t>(size)));
    }
    py::object revenue = py::reinterpret_borrow<py::object>(r->nan);
    py::object discount = revenue;
    py::list products(0);
    py::list item_codes(0);
    if (shape == r->one_shape) {
        const py::object product = attr(e, r->product);
        if (!product || Py_TYPE(product.ptr()) != reinterpret_cast<PyTypeObject*>(r->product_type)) return py::none();
        const py::object price = attr(product.ptr(), r->price);
        const py::object quantity = attr(product.ptr(), r->quantity);
        const py::object off = attr(product.ptr(), r->discount);
        double p = 0.0;
        int64_t q = 0;
        if (!float_in(price, r->max_amount, p) || !int_in(quantity, 1, INT32_MAX, q) || !off) return py::none();
        const py::object ids[3] = {attr(product.ptr(), r->product_id), attr(product.ptr(), r->category),
                                   attr(product.ptr(), r->brand)};
        for (const py::object& id : ids)
            if (!is_str(id)) return py::none();
        if (off.ptr() != Py_None) {
            double d = 0.0;
            if (!float_in(off, r->max_amount, d)) return py::none();
            discount = off;
        }
        const double rev = p * static_cast<double>(q);  // Python's float * int
        if (!(rev >= 0.0 && rev <= r->max_revenue)) return py::none();
        revenue = py::reinterpret_steal<py::object>(PyFloat_FromDouble(rev));
        products.append(product);
        const py::object codes[3] = {code_in(interners.ptr(), r->products, ids[0].ptr(), r),
                                     code_in(interners.ptr(), r->categories, ids[1].ptr(), r),
                                     code_in(interners.ptr(), r->brands, ids[2].ptr(), r)};
        if (codes[0] && codes[1] && codes[2]) item_codes.append(py::make_tuple(codes[0], codes[1], codes[2]));
    }
    // The items' codes when every id is known (None: the caller interns them), the user's or None.
    const py::object items = item_codes.size() == products.size() ? py::object(py::make_tuple(-1, item_codes))
                                                                   : py::none();
    const py::object user_code = code_in(interners.ptr(), r->users, user.ptr(), r);
    return py::make_tuple(py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(found, 0)), user, ts, channel,
                          revenue, discount, false, py::none(), -1, event_id, products, key,
                          user_code ? user_code : py::none(), items);
}

// A new instance of `cls` (a plain Python class) whose __dict__ is a copy of `fields` with a new
// empty list under "rejected" and array([code]) (int64) under "user_codes": the one-event path's
// IngestReport, built without the frozen dataclass's __init__ (a field set at a time through
// object.__setattr__, most of what the path cost).
py::object live_report(const py::type& cls, const py::dict& fields, int64_t code) {
    static PyObject* const rejected = PyUnicode_InternFromString("rejected");
    static PyObject* const user_codes = PyUnicode_InternFromString("user_codes");
    py::object values = py::reinterpret_steal<py::object>(PyDict_Copy(fields.ptr()));
    if (!values) throw py::error_already_set();
    py::array_t<int64_t> codes(1);
    *codes.mutable_data() = code;
    const py::list none_rejected(0);
    if (PyDict_SetItem(values.ptr(), rejected, none_rejected.ptr()) != 0 ||
        PyDict_SetItem(values.ptr(), user_codes, codes.ptr()) != 0)
        throw py::error_already_set();
    const py::tuple no_args(0);
    auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
    py::object report = py::reinterpret_steal<py::object>(PyBaseObject_Type.tp_new(type, no_args.ptr(), nullptr));
    if (!report || PyObject_GenericSetDict(report.ptr(), values.ptr(), nullptr) != 0) throw py::error_already_set();
    return report;
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
