// The one-event path's shared pieces (csrc/bind_live.cpp's bindings and csrc/bind_live_calls.cpp's
// whole-call entry points): attribute reads that skip getattr's generic walk, the event reader of
// a Struct, numpy.exp's float64 loop and the raw score kept per delta, the IngestReport builder.
// Functions are `inline` in a named namespace so both translation units share one copy of each
// static (the reader's tables, the exp loop, the STATE_DTYPE handle).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <structmember.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "ingest.hpp"
#include "live.hpp"

namespace py = pybind11;

namespace affinity::live_py {

[[noreturn]] inline void fail(const std::string& msg) { throw py::value_error(msg); }

inline py::handle state_dtype() {
    // Leaked on purpose: a static py::object would be destroyed after the interpreter finalises.
    static PyObject* dt =
        py::object(py::module_::import("affinity_sdk.kernels._layout").attr("STATE_DTYPE")).release().ptr();
    return dt;
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

inline constexpr char kNpyDouble = 12;  // NPY_DOUBLE

struct ExpLoop {
    affinity::live::UnaryLoop loop = nullptr;
    void* data = nullptr;
};

inline const ExpLoop& numpy_exp() {
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

inline const ExpLoop& exp_loop_or_fail() {
    const ExpLoop& exp = numpy_exp();
    if (exp.loop == nullptr) fail("numpy.exp's float64 loop was not found");
    return exp;
}

// Raw score of one row of n sums at delta_ms >= 0 after the landmark, the coefficients kept in
// table `t` (table_of's layout) for the last delta.
inline double raw_at_row(const double* row, int64_t n, int64_t delta_ms, double* t, const ExpLoop& exp) {
    double* coefs = t + 1 + 4 * n;
    const auto delta = static_cast<double>(delta_ms);
    if (!(t[0] == delta)) {
        affinity::live::coefs_at(t + 1, t + 1 + n, n, delta_ms, exp.loop, exp.data, t + 1 + 2 * n, t + 1 + 3 * n,
                                 coefs);
        t[0] = delta;
    }
    return affinity::live::raw_of(row, n, coefs);
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

inline EventReader* event_reader = nullptr;  // set by live_event_setup; leaked on purpose (lives with the module)

inline PyObject* interned(const char* name) { return PyUnicode_InternFromString(name); }

// getattr, or an empty object (and no error set) when it fails. A __slots__ member (msgspec Struct
// fields, the interners' tables) is read straight from the member descriptor the type's attribute
// cache finds, as PyObject_GenericGetAttr would read it, without its generic walk.
inline py::object attr(PyObject* o, PyObject* name) {
    PyTypeObject* type = Py_TYPE(o);
    // (a type whose instances have no __dict__: else its own lookup would come first, twice)
    if (type->tp_getattro == PyObject_GenericGetAttr && type->tp_dictoffset == 0 &&
        (type->tp_flags & Py_TPFLAGS_MANAGED_DICT) == 0) {
        PyObject* found = _PyType_Lookup(type, name);  // borrowed
        if (found != nullptr && Py_TYPE(found) == &PyMemberDescr_Type) {
            const PyMemberDef* m = reinterpret_cast<PyMemberDescrObject*>(found)->d_member;
            if (m->type == T_OBJECT_EX && (m->flags & READ_RESTRICTED) == 0) {
                PyObject* v = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(o) + m->offset);
                if (v != nullptr) return py::reinterpret_borrow<py::object>(v);
            }
        }
    }
    PyObject* v = PyObject_GetAttr(o, name);
    if (v == nullptr) PyErr_Clear();
    return py::reinterpret_steal<py::object>(v);
}

inline bool is_str(const py::object& v) { return v && PyUnicode_CheckExact(v.ptr()); }

inline bool nonempty_str(const py::object& v) {
    return v && PyUnicode_CheckExact(v.ptr()) && PyUnicode_GET_LENGTH(v.ptr()) > 0;
}

// An exact int in [lo, hi] into `out`.
inline bool int_in(const py::object& v, int64_t lo, int64_t hi, int64_t& out) {
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

// An exact int (not bool) into `out`.
inline bool int_of(const py::object& v, int64_t& out) {
    return int_in(v, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), out);
}

// An exact float in [0, hi] (NaN is not) into `out`.
inline bool float_in(const py::object& v, double hi, double& out) {
    if (!v || !PyFloat_CheckExact(v.ptr())) return false;
    out = PyFloat_AS_DOUBLE(v.ptr());
    return out >= 0.0 && out <= hi;
}

// The code `name` has in interners.<table> (an Interner's name -> code dict, as spelled), or an
// empty object when it has none yet (the Python lookup normalises and interns).
inline py::object code_in(PyObject* interners, PyObject* table, PyObject* name, const EventReader* r) {
    const py::object interner = attr(interners, table);
    const py::object codes = interner ? attr(interner.ptr(), r->codes) : py::object();
    if (!codes || !PyDict_CheckExact(codes.ptr())) return py::object();
    PyObject* code = PyDict_GetItemWithError(codes.ptr(), name);
    if (code == nullptr) PyErr_Clear();
    return py::reinterpret_borrow<py::object>(code);
}

// One event's fields as live_event reads them: C++ values and the objects its tuple returns.
struct Fields {
    PyObject* type_code = nullptr;  // borrowed from the shapes table
    int64_t type = 0;
    py::object user, ts, channel, revenue, discount, event_id, product, price, quantity;
    int64_t ts_ms = 0;
    double revenue_value = 0.0;
    uint64_t key = 0;
    py::object user_code;    // empty: the users interner does not hold the id as spelled
    py::object item_codes;   // (product, category, brand) codes; empty if none or one unknown
};

// Read a plain or one-product Struct into `f`; false (no error set) for any other event.
inline bool read_event(PyObject* e, PyObject* interners, Fields& f) {
    const EventReader* r = event_reader;
    if (r == nullptr) return false;
    PyObject* found = PyDict_GetItemWithError(r->shapes, reinterpret_cast<PyObject*>(Py_TYPE(e)));  // borrowed
    if (found == nullptr || !PyTuple_CheckExact(found) || PyTuple_GET_SIZE(found) != 3) {
        PyErr_Clear();
        return false;
    }
    const long shape = PyLong_AsLong(PyTuple_GET_ITEM(found, 1));
    if (shape != r->plain_shape && shape != r->one_shape) {
        PyErr_Clear();
        return false;
    }
    f.type_code = PyTuple_GET_ITEM(found, 0);
    f.type = PyLong_AsLong(f.type_code);
    f.user = attr(e, r->user_id);
    f.ts = attr(e, r->timestamp);
    if (!nonempty_str(f.user) || !int_in(f.ts, r->min_ts, r->max_ts, f.ts_ms)) return false;
    f.channel = py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(found, 2));
    const py::object named = attr(e, r->channel);
    if (!named) return false;
    if (named.ptr() != Py_None) {
        if (!PyUnicode_CheckExact(named.ptr())) return false;
        if (PyUnicode_GET_LENGTH(named.ptr()) > 0) {
            PyObject* code = PyDict_GetItemWithError(r->channels, named.ptr());
            if (code == nullptr) {
                PyErr_Clear();
                return false;
            }
            f.channel = py::reinterpret_borrow<py::object>(code);
        }
    }
    f.event_id = attr(e, r->event_id);
    if (!f.event_id) return false;
    if (f.event_id.ptr() != Py_None) {
        if (!PyUnicode_CheckExact(f.event_id.ptr())) return false;
        Py_ssize_t size = 0;
        const char* utf8 = PyUnicode_AsUTF8AndSize(f.event_id.ptr(), &size);
        if (utf8 == nullptr) {  // lone surrogates: the Python reader says what is wrong
            PyErr_Clear();
            return false;
        }
        f.key = affinity::ingest::fnv1a(std::string_view(utf8, static_cast<size_t>(size)));
    }
    f.revenue = py::reinterpret_borrow<py::object>(r->nan);
    f.revenue_value = std::numeric_limits<double>::quiet_NaN();
    f.discount = f.revenue;
    if (shape == r->one_shape) {
        f.product = attr(e, r->product);
        if (!f.product || Py_TYPE(f.product.ptr()) != reinterpret_cast<PyTypeObject*>(r->product_type)) return false;
        PyObject* const p = f.product.ptr();
        f.price = attr(p, r->price);
        f.quantity = attr(p, r->quantity);
        const py::object off = attr(p, r->discount);
        double unit = 0.0;
        int64_t q = 0;
        if (!float_in(f.price, r->max_amount, unit) || !int_in(f.quantity, 1, INT32_MAX, q) || !off) return false;
        const py::object ids[3] = {attr(p, r->product_id), attr(p, r->category), attr(p, r->brand)};
        for (const py::object& id : ids)
            if (!is_str(id)) return false;
        if (off.ptr() != Py_None) {
            double d = 0.0;
            if (!float_in(off, r->max_amount, d)) return false;
            f.discount = off;
        }
        f.revenue_value = unit * static_cast<double>(q);  // Python's float * int
        if (!(f.revenue_value >= 0.0 && f.revenue_value <= r->max_revenue)) return false;
        f.revenue = py::reinterpret_steal<py::object>(PyFloat_FromDouble(f.revenue_value));
        const py::object codes[3] = {code_in(interners, r->products, ids[0].ptr(), r),
                                     code_in(interners, r->categories, ids[1].ptr(), r),
                                     code_in(interners, r->brands, ids[2].ptr(), r)};
        if (codes[0] && codes[1] && codes[2]) f.item_codes = py::make_tuple(codes[0], codes[1], codes[2]);
    }
    f.user_code = code_in(interners, r->users, f.user.ptr(), r);
    return true;
}

// A new instance of `cls` (a plain Python class) whose __dict__ is a copy of `fields` with a new
// empty list under "rejected" and array([code]) (int64) under "user_codes": the one-event path's
// IngestReport, built without the frozen dataclass's __init__ (a field set at a time through
// object.__setattr__, most of what the path cost).
inline py::object report_of(PyObject* cls, PyObject* fields, int64_t code, bool has_code = true) {
    static PyObject* const rejected = PyUnicode_InternFromString("rejected");
    static PyObject* const user_codes = PyUnicode_InternFromString("user_codes");
    py::object values = py::reinterpret_steal<py::object>(PyDict_Copy(fields));
    if (!values) throw py::error_already_set();
    py::array_t<int64_t> codes(has_code ? 1 : 0);
    if (has_code) *codes.mutable_data() = code;
    const py::list none_rejected(0);
    if (PyDict_SetItem(values.ptr(), rejected, none_rejected.ptr()) != 0 ||
        PyDict_SetItem(values.ptr(), user_codes, codes.ptr()) != 0)
        throw py::error_already_set();
    const py::tuple no_args(0);
    auto* type = reinterpret_cast<PyTypeObject*>(cls);
    py::object report = py::reinterpret_steal<py::object>(PyBaseObject_Type.tp_new(type, no_args.ptr(), nullptr));
    if (!report || PyObject_GenericSetDict(report.ptr(), values.ptr(), nullptr) != 0) throw py::error_already_set();
    return report;
}

}  // namespace affinity::live_py
