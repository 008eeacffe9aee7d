// The per-call entry points: Scorer.ingest of one common event, Scorer.tier_of / score_of
// (live_ingest, live_tier_of, live_score_of; affinity_sdk/score/live_calls.py passes their
// arguments), on the pieces of csrc/live_event.hpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>

#include "live.hpp"
#include "live_event.hpp"
#include "tiers.hpp"

namespace py = pybind11;
namespace ak = affinity::kernels;

namespace {

using namespace affinity::live_py;

// Raw METH_FASTCALL functions (pybind11's dispatcher would cost more than their work) that read
// the store's current objects by attribute on every call, so nothing they keep can go stale. Each
// answers "ask Python" (None from live_ingest, NotImplemented from the lookups) before it changes
// anything whenever the event or the state is not the common case; Python then takes the path it
// always took.

struct Calls {
    PyObject* labels;           // tier code -> label
    PyObject* report_cls;       // IngestReport
    PyObject* accepted[2];      // its fields of one folded event, unscored / scored
    PyObject* duplicate;        // its fields of one replayed event (user_codes: none)
    PyObject* one_event_vars;   // affinity_sdk.ingest.one_event's globals (ONE_EVENT_PATH)
    PyObject* signal_view;      // SignalView
    PyObject* decode;           // the JSON event decoder's bound decode
    PyObject* decode_error;     // msgspec.DecodeError
    double rebase_exponent;
};

const Calls* live_calls = nullptr;  // set by live_calls_setup; leaked on purpose, as event_reader

// The attribute names the calls read, interned once.
struct Names {
    PyObject *codes, *normalize, *first_ms, *reborn_ms, *entries, *latest_ms, *events_ingested, *live, *state,
        *landmark_ms, *n_profiles, *acc, *records, *lam_per_ms, *signal_of_type, *decays_revenue, *lam_max, *name,
        *signals, *one_event_path, *ndjson, *backend, *cpp, *cur, *old, *count, *shift, *generation_size, *rotations,
        *journal, *append_row, *append_kwnames;
};

const Names& names() {
    static const Names n{interned("_codes"), interned("normalize"), interned("first_ms"), interned("reborn_ms"),
                         interned("_entries"), interned("latest_ms"), interned("events_ingested"), interned("live"),
                         interned("state"), interned("landmark_ms"), interned("n_profiles"), interned("_acc"),
                         interned("_records"), interned("lam_per_ms"), interned("_signal_of_type"),
                         interned("_decays_revenue"), interned("_lam_max"), interned("name"), interned("signals"),
                         interned("ONE_EVENT_PATH"), interned("ndjson"), interned("backend"), interned("cpp"),
                         interned("_cur"), interned("_old"), interned("_count"), interned("_shift"),
                         interned("generation_size"), interned("rotations"), interned("journal"),
                         interned("append_row"), Py_BuildValue("(ss)", "rotations", "interners")};
    return n;
}

// A C-contiguous numpy array of one element type and rank, borrowed (data == nullptr: it is not).
struct Arr {
    char* data = nullptr;
    Py_ssize_t rows = 0, cols = 1;
    bool writeable = false;
};

enum : int { kBool = 0, kInt8 = 1, kInt64 = 7, kUInt64 = 8, kDouble = 12, kState = -1 };

Arr arr(const py::object& a, int type, int nd) {
    namespace pd = py::detail;
    Arr out;
    if (!a || !pd::npy_api::get().PyArray_Check_(a.ptr())) return out;
    const auto* p = pd::array_proxy(a.ptr());
    if (p->nd != nd || !(p->flags & pd::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) return out;
    if (type == kState) {
        if (p->descr != state_dtype().ptr() && !py::reinterpret_borrow<py::dtype>(p->descr).equal(state_dtype()))
            return out;
    } else {
        const auto* d = pd::array_descriptor_proxy(p->descr);
        const int t = d->type_num;
        const bool ok = type == kInt64    ? (t == 7 || t == 9) && d->byteorder != '>'  // long / long long
                        : type == kUInt64 ? (t == 8 || t == 10) && d->byteorder != '>'
                                          : t == type && (type != kDouble || d->byteorder != '>');
        if (!ok) return out;
    }
    out.data = p->data;
    out.rows = p->dimensions[0];
    out.cols = nd == 2 ? p->dimensions[1] : 1;
    out.writeable = (p->flags & pd::npy_api::NPY_ARRAY_WRITEABLE_) != 0;
    return out;
}

// The user's code as the users interner looks it up: 1 found (into `code`), 0 unknown, -1 ask Python
// (an id the interner would put in normal form first, or an interner of another shape).
int user_code(PyObject* users, PyObject* user_id, int64_t& code) {
    const Names& k = names();
    if (!PyUnicode_CheckExact(user_id)) return -1;
    const py::object codes = attr(users, k.codes);
    if (!codes || !PyDict_CheckExact(codes.ptr())) return -1;
    PyObject* found = PyDict_GetItemWithError(codes.ptr(), user_id);
    if (found == nullptr) {
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        if (PyUnicode_IS_ASCII(user_id)) return 0;  // normalize_id leaves ASCII ids as they are
        const py::object form = attr(users, k.normalize);
        return form && form.ptr() == Py_None ? 0 : -1;
    }
    return int_of(py::reinterpret_borrow<py::object>(found), code) && code >= 0 ? 1 : -1;
}

// A lookup's arguments, as Scorer.tier_of / score_of read them (attribute loads cost far less in
// bytecode than through the C API): user_id, users interner, flags.opted_out, flags.retired,
// store.latest_ms, signals._raw_at, signals._table, state._acc, state.landmark_ms, then the call's own.
constexpr Py_ssize_t kLookupArgs = 9;

// The raw score of visible profile `code` at the latest event time, as SignalView.raw_of's compiled
// call computes it, or why not: 1 done, 0 unknown or hidden user (None), -1 ask Python (no compiled
// coefficients, no landmark yet, or arguments of another shape).
int latest_raw(PyObject* const* a, int64_t& code, double& raw) {
    const int known = user_code(a[1], a[0], code);
    if (known <= 0) return known;
    const Arr out = arr(py::reinterpret_borrow<py::object>(a[2]), kBool, 1);  // rows: flags.n
    const Arr gone = arr(py::reinterpret_borrow<py::object>(a[3]), kBool, 1);
    if (out.data == nullptr || gone.data == nullptr || gone.rows != out.rows) return -1;
    if (code >= out.rows || out.data[code] || gone.data[code]) return 0;  // store.is_visible
    int64_t now_ms = 0, landmark = 0;
    if ((a[4] != Py_None && !int_of(py::reinterpret_borrow<py::object>(a[4]), now_ms)) || a[5] == Py_None ||
        !int_of(py::reinterpret_borrow<py::object>(a[8]), landmark) || now_ms < landmark)
        return -1;
    const Arr table = arr(py::reinterpret_borrow<py::object>(a[6]), kDouble, 1);
    const Arr acc = arr(py::reinterpret_borrow<py::object>(a[7]), kDouble, 2);
    if (acc.data == nullptr || table.data == nullptr || !table.writeable || code >= acc.rows ||
        table.rows != 1 + 5 * acc.cols)
        return -1;
    const ExpLoop& exp = numpy_exp();
    if (exp.loop == nullptr) return -1;
    const auto* row = reinterpret_cast<const double*>(acc.data) + code * acc.cols;
    raw = raw_at_row(row, acc.cols, now_ms - landmark, reinterpret_cast<double*>(table.data), exp);
    return 1;
}

// What a lookup answers: its value, None (unknown / hidden user) or NotImplemented (ask Python).
py::object ask_python() { return py::reinterpret_borrow<py::object>(Py_NotImplemented); }

// Scorer.tier_of(user_id) at the latest event time; after the lookup's arguments: the scorer's
// _scalar_cuts, _cutoffs and _tiers.
py::object tier_of(PyObject* const* a) {
    if (live_calls == nullptr) return ask_python();
    // the cut-offs tier_of keeps as floats, current (else Python computes them first)
    PyObject* kept = a[kLookupArgs];
    if (!PyTuple_CheckExact(kept) || PyTuple_GET_SIZE(kept) != 3 || PyTuple_GET_ITEM(kept, 1) == Py_None ||
        PyTuple_GET_ITEM(kept, 0) != a[kLookupArgs + 1])
        return ask_python();
    const Arr cuts = arr(py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(kept, 2)), kDouble, 1);
    const Arr tiers = arr(py::reinterpret_borrow<py::object>(a[kLookupArgs + 2]), kInt8, 1);
    if (cuts.data == nullptr || cuts.rows != 6 || tiers.data == nullptr) return ask_python();
    int64_t code = 0;
    double raw = 0.0;
    const int found = latest_raw(a, code, raw);
    if (found <= 0) return found == 0 ? py::none() : ask_python();
    const auto* c = reinterpret_cast<const double*>(cuts.data);
    const int8_t previous = code < tiers.rows ? reinterpret_cast<const int8_t*>(tiers.data)[code] : int8_t{-1};
    const double* up = previous < 0 ? c + 2 : c;
    const int tier = ak::tiers_detail::tier_code(raw, previous, up[0], up[1], c[4], c[5]);
    return py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(live_calls->labels, tier));
}

// Scorer.score_of(user_id) at the latest event time (TierPlan.score_one's arithmetic); after the
// lookup's arguments: the plan's half_point.
py::object score_of(PyObject* const* a) {
    PyObject* half = a[kLookupArgs];
    if (half != Py_None && !PyFloat_CheckExact(half)) return ask_python();
    int64_t code = 0;
    double raw = 0.0;
    const int found = latest_raw(a, code, raw);
    if (found <= 0) return found == 0 ? py::none() : ask_python();
    if (half == Py_None) return py::reinterpret_steal<py::object>(PyFloat_FromDouble(raw));
    const double positive = raw > 0.0 || raw != raw ? raw : 0.0;
    const double h = PyFloat_AS_DOUBLE(half);
    const double score =
        positive == std::numeric_limits<double>::infinity() ? 100.0 : 100.0 * positive / (positive + h);
    return py::reinterpret_steal<py::object>(PyFloat_FromDouble(score));
}

// The one event on a single NDJSON line (one_event._decode_line), or empty (not one decodable line).
py::object decode_line(PyObject* data) {
    const char* s = PyBytes_AS_STRING(data);
    Py_ssize_t b = 0, e = PyBytes_GET_SIZE(data);
    auto space = [](char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r'); };  // bytes.strip()'s set
    while (b < e && space(s[b])) ++b;
    while (e > b && space(s[e - 1])) --e;
    if (b == e || std::memchr(s + b, '\n', e - b) != nullptr || std::memchr(s + b, '\r', e - b) != nullptr)
        return py::object();
    py::object line = b == 0 && e == PyBytes_GET_SIZE(data)
                          ? py::reinterpret_borrow<py::object>(data)
                          : py::reinterpret_steal<py::object>(PyBytes_FromStringAndSize(s + b, e - b));
    if (!line) throw py::error_already_set();
    PyObject* event = PyObject_CallOneArg(live_calls->decode, line.ptr());
    if (event == nullptr) {
        if (!PyErr_ExceptionMatches(live_calls->decode_error) && !PyErr_ExceptionMatches(PyExc_ValueError))
            throw py::error_already_set();
        PyErr_Clear();
        return py::object();
    }
    return py::reinterpret_steal<py::object>(event);
}

// The event-id window's tables and counters, checked as live_probe checks them.
struct Window {
    uint64_t* cur = nullptr;
    const uint64_t* old = nullptr;
    uint64_t size = 0;
    int64_t count = 0, room = 0;
    unsigned shift = 0;
};

bool window_of(PyObject* dedupe, Window& w) {
    const Names& k = names();
    const py::object backend = attr(dedupe, k.backend);
    if (!backend || !PyUnicode_CheckExact(backend.ptr()) || PyUnicode_Compare(backend.ptr(), k.cpp) != 0) {
        PyErr_Clear();
        return false;  // another backend's probe: Python's seen_one
    }
    const Arr cur = arr(attr(dedupe, k.cur), kUInt64, 1);  // None until the first id: Python allocates
    const Arr old = arr(attr(dedupe, k.old), kUInt64, 1);
    int64_t generation = 0, shift = 0;
    if (cur.data == nullptr || old.data == nullptr || !cur.writeable || cur.rows != old.rows ||
        !int_of(attr(dedupe, k.count), w.count) || !int_of(attr(dedupe, k.generation_size), generation) ||
        !int_of(attr(dedupe, k.shift), shift))
        return false;
    w.size = static_cast<uint64_t>(cur.rows);
    w.room = generation - w.count;
    if (w.size == 0 || (w.size & (w.size - 1)) != 0 || shift < 1 || shift > 63 ||
        (uint64_t{1} << (64 - shift)) > w.size || w.room < 0)
        return false;
    w.cur = reinterpret_cast<uint64_t*>(cur.data);
    w.old = reinterpret_cast<const uint64_t*>(old.data);
    w.shift = static_cast<unsigned>(shift);
    return true;
}

// journal.append_row(row, item_rows, rotations=..., interners=...) of a taken event with an id, the
// row and item rows ingest_one passes (a plain or one-product event: no coupon, campaign, consent).
void journal_row(PyObject* journal, const Fields& f, PyObject* rotations, PyObject* interners) {
    const Names& k = names();
    const py::object key = py::reinterpret_steal<py::object>(PyLong_FromUnsignedLongLong(f.key));
    if (!key) throw py::error_already_set();
    const py::tuple row = py::make_tuple(f.user_code, py::reinterpret_borrow<py::object>(f.type_code), f.ts,
                                         f.channel, f.revenue, f.discount, false, -1, key, -1);
    py::list items(0);
    if (f.product) {
        const py::tuple codes = py::reinterpret_borrow<py::tuple>(f.item_codes);
        items.append(py::make_tuple(codes[0], codes[1], codes[2], f.price, f.discount, f.quantity));
    }
    PyObject* args[5] = {journal, row.ptr(), items.ptr(), rotations, interners};
    PyObject* done =
        PyObject_VectorcallMethod(k.append_row, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, k.append_kwnames);
    if (done == nullptr) throw py::error_already_set();
    Py_DECREF(done);
}

// One view's part of the fold: where its row and cell are, and the value it adds.
struct ViewFold {
    double* acc = nullptr;
    ak::Record* records = nullptr;
    const double* lam = nullptr;
    int64_t signal = -1, landmark = 0;
    double value = 0.0;
    bool is_signals = false;
};

constexpr int kMaxViews = 16;

// live_ingest's arguments: the store, the data and its format, then what Scorer.ingest reads off the
// store for it (attribute loads cost far less in bytecode than through the C API).
enum IngestArg : int { kStore, kData, kFormat, kInterners, kFlags, kSuppression, kViews, kDedupe, kLatest, kLimit,
                       kIngested, kIngestArgs };

// Scorer.ingest of one event that needs nothing but a fold (and the event-id window's probe): a
// plain or one-product event of a known user and known item ids, inside max_future of the newest
// event, not suppressed, into a store of scored-signals views whose landmarks stay. The report, or
// None with nothing changed.
py::object ingest(PyObject* const* a) {
    PyObject* const store = a[kStore];
    PyObject* const data = a[kData];
    PyObject* const format = a[kFormat];
    const Names& k = names();
    const Calls* c = live_calls;
    if (c == nullptr) return py::none();
    PyObject* on = PyDict_GetItemWithError(c->one_event_vars, k.one_event_path);
    if (on != Py_True) {
        PyErr_Clear();
        return py::none();
    }
    py::object event = py::reinterpret_borrow<py::object>(data);
    if (PyBytes_CheckExact(data)) {
        if (format != k.ndjson && !(PyUnicode_CheckExact(format) && PyUnicode_Compare(format, k.ndjson) == 0)) {
            PyErr_Clear();
            return py::none();
        }
        event = decode_line(data);
        if (!event) return py::none();
    }
    const py::object interners = py::reinterpret_borrow<py::object>(a[kInterners]);
    Fields f;
    if (!read_event(event.ptr(), interners.ptr(), f)) return py::none();
    int64_t code = 0;
    if (!f.user_code || !int_of(f.user_code, code) || code < 0 || (f.product && !f.item_codes)) return py::none();
    // the future-time screen: only an event inside max_future of the newest one (else Python reads the clock)
    const py::object limit = py::reinterpret_borrow<py::object>(a[kLimit]);
    const py::object latest = py::reinterpret_borrow<py::object>(a[kLatest]);
    int64_t newest = 0, ahead = 0, bound = 0;
    const bool has_latest = latest.ptr() != Py_None;
    if (has_latest && !int_of(latest, newest)) return py::none();
    if (limit.ptr() != Py_None &&
        (!int_of(limit, ahead) || __builtin_add_overflow(newest, ahead, &bound) || f.ts_ms > bound))
        return py::none();
    PyObject* const flags = a[kFlags];
    const Arr first = arr(attr(flags, k.first_ms), kInt64, 1);  // rows: flags.n
    if (first.data == nullptr || !first.writeable || code >= first.rows) return py::none();
    // forget suppression: an event at or before the forget of a reborn profile is Python's to drop
    const py::object entries = attr(a[kSuppression], k.entries);
    if (!entries || !PyDict_CheckExact(entries.ptr())) return py::none();
    if (PyDict_GET_SIZE(entries.ptr()) > 0) {
        const Arr reborn = arr(attr(flags, k.reborn_ms), kInt64, 1);
        if (reborn.data == nullptr || code >= reborn.rows ||
            f.ts_ms <= reinterpret_cast<const int64_t*>(reborn.data)[code])
            return py::none();
    }
    // every view's cell, checked before anything changes
    const py::object views = py::reinterpret_borrow<py::object>(a[kViews]);
    if (!PyDict_CheckExact(views.ptr()) || PyDict_GET_SIZE(views.ptr()) > kMaxViews) return py::none();
    ViewFold folds[kMaxViews];
    int n_views = 0;
    Py_ssize_t pos = 0;
    PyObject *key = nullptr, *view = nullptr;
    while (PyDict_Next(views.ptr(), &pos, &key, &view)) {
        if (Py_TYPE(view) != reinterpret_cast<PyTypeObject*>(c->signal_view)) return py::none();
        ViewFold& v = folds[n_views++];
        const py::object name = attr(view, k.name);
        if (!name || !PyUnicode_CheckExact(name.ptr())) return py::none();
        v.is_signals = name.ptr() == k.signals || PyUnicode_Compare(name.ptr(), k.signals) == 0;
        const Arr of_type = arr(attr(view, k.signal_of_type), kInt64, 1);
        if (of_type.data == nullptr || f.type < 0 || f.type >= of_type.rows) return py::none();
        v.signal = reinterpret_cast<const int64_t*>(of_type.data)[f.type];
        if (v.signal < 0) continue;
        const py::object live = attr(view, k.live);
        const py::object state = attr(view, k.state);
        int64_t n_profiles = 0;
        if (!live || live.ptr() == Py_None || !state || !int_of(attr(state.ptr(), k.landmark_ms), v.landmark) ||
            !int_of(attr(state.ptr(), k.n_profiles), n_profiles) || code >= n_profiles)
            return py::none();
        // SignalView.fold_one's landmark rule: an event that would move the landmark is Python's
        const py::object lam_max = attr(view, k.lam_max);
        if (!lam_max || !PyFloat_CheckExact(lam_max.ptr())) return py::none();
        if (f.ts_ms > v.landmark &&
            PyFloat_AS_DOUBLE(lam_max.ptr()) * static_cast<double>(f.ts_ms - v.landmark) > c->rebase_exponent)
            return py::none();
        const Arr acc = arr(attr(state.ptr(), k.acc), kDouble, 2);
        const Arr records = arr(attr(state.ptr(), k.records), kState, 2);
        const Arr lam = arr(attr(state.ptr(), k.lam_per_ms), kDouble, 1);
        const Arr decays = arr(attr(view, k.decays_revenue), kBool, 1);
        if (acc.data == nullptr || records.data == nullptr || lam.data == nullptr || decays.data == nullptr ||
            !acc.writeable || !records.writeable || acc.cols != records.cols || lam.rows != acc.cols ||
            decays.rows != acc.cols || v.signal >= acc.cols || code >= acc.rows || code >= records.rows)
            return py::none();
        v.acc = reinterpret_cast<double*>(acc.data) + code * acc.cols;
        v.records = reinterpret_cast<ak::Record*>(records.data) + code * records.cols;
        v.lam = reinterpret_cast<const double*>(lam.data);
        const double revenue = f.revenue_value;
        v.value = decays.data[v.signal] ? (revenue != revenue ? 0.0 : revenue) : 1.0;  // a missing amount adds 0
    }
    int64_t ingested = 0;
    if (!int_of(py::reinterpret_borrow<py::object>(a[kIngested]), ingested)) return py::none();
    // the event-id window (EventIdWindow.seen_one's compiled probe) and the journal it keeps
    const py::object dedupe = py::reinterpret_borrow<py::object>(a[kDedupe]);
    const bool probe = f.key != 0 && dedupe.ptr() != Py_None;
    Window w;
    py::object journal, rotations;
    if (probe) {
        journal = attr(store, k.journal);
        rotations = attr(dedupe.ptr(), k.rotations);
        if (!journal || !rotations || !window_of(dedupe.ptr(), w)) return py::none();
        const int found = affinity::live::probe_one(w.cur, w.old, w.size, f.key, w.room, w.shift);
        if (found < 0) return py::none();  // the generation is full: Python rotates it
        if (found == 1) return report_of(c->report_cls, c->duplicate, 0, false);
        const py::object held = py::reinterpret_steal<py::object>(PyLong_FromLongLong(w.count + 1));
        if (!held || PyObject_SetAttr(dedupe.ptr(), k.count, held.ptr()) != 0) throw py::error_already_set();
    }
    // From here on the event is taken: touch, fold, journal, newest time, count, report.
    auto* first_ms = reinterpret_cast<int64_t*>(first.data);
    if (f.ts_ms < first_ms[code]) first_ms[code] = f.ts_ms;
    bool scored = false;
    for (int i = 0; i < n_views; ++i) {
        const ViewFold& v = folds[i];
        if (v.signal >= 0) affinity::live::fold_one(v.acc, v.records, v.signal, f.ts_ms, v.value, v.landmark, v.lam);
        if (v.is_signals) scored = v.signal >= 0;
    }
    if (probe && journal.ptr() != Py_None) journal_row(journal.ptr(), f, rotations.ptr(), interners.ptr());
    if ((!has_latest || f.ts_ms > newest) && PyObject_SetAttr(store, k.latest_ms, f.ts.ptr()) != 0)
        throw py::error_already_set();
    const py::object next = py::reinterpret_steal<py::object>(PyLong_FromLongLong(ingested + 1));
    if (!next || PyObject_SetAttr(store, k.events_ingested, next.ptr()) != 0) throw py::error_already_set();
    return report_of(c->report_cls, c->accepted[scored ? 1 : 0], code);
}

// METH_FASTCALL wrappers: C++ exceptions become Python ones.
template <typename Body>
PyObject* guarded(Body body) {
    try {
        return body().release().ptr();
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

bool arity(Py_ssize_t nargs, Py_ssize_t want, const char* call) {
    if (nargs == want) return true;
    PyErr_Format(PyExc_TypeError, "%s takes %zd arguments (%zd given)", call, want, nargs);
    return false;
}

PyObject* py_live_ingest(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!arity(nargs, kIngestArgs, "live_ingest")) return nullptr;
    return guarded([&] { return ingest(args); });
}

PyObject* py_live_tier_of(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!arity(nargs, kLookupArgs + 3, "live_tier_of")) return nullptr;
    return guarded([&] { return tier_of(args); });
}

PyObject* py_live_score_of(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (!arity(nargs, kLookupArgs + 1, "live_score_of")) return nullptr;
    return guarded([&] { return score_of(args); });
}

PyMethodDef hot_calls[] = {
    {"live_ingest", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&py_live_ingest)), METH_FASTCALL,
     "live_ingest(store, data, format, interners, flags, suppression, views, dedupe, latest_ms, max_future_ms, "
     "events_ingested): Scorer.ingest of one common event (a Struct or one NDJSON line) in one call, its "
     "IngestReport; None (nothing changed) when Python's path must take it."},
    {"live_tier_of", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&py_live_tier_of)), METH_FASTCALL,
     "live_tier_of(user_id, users, opted_out, retired, latest_ms, raw_at, table, acc, landmark_ms, scalar_cuts, "
     "cutoffs, tiers): Scorer.tier_of(user_id) at the latest event time; NotImplemented: ask Python."},
    {"live_score_of", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&py_live_score_of)), METH_FASTCALL,
     "live_score_of(user_id, users, opted_out, retired, latest_ms, raw_at, table, acc, landmark_ms, half_point): "
     "Scorer.score_of(user_id) at the latest event time; NotImplemented: ask Python."},
    {nullptr, nullptr, 0, nullptr}};

void live_calls_setup(const py::tuple& labels, const py::type& report_cls, const py::dict& unscored,
                      const py::dict& scored, const py::dict& duplicate, const py::dict& one_event_vars,
                      const py::type& signal_view, const py::object& decode, const py::type& decode_error,
                      double rebase_exponent) {
    if (labels.size() != 3) fail("Expected three tier labels");
    live_calls = new Calls{labels.inc_ref().ptr(),
                           report_cls.inc_ref().ptr(),
                           {unscored.inc_ref().ptr(), scored.inc_ref().ptr()},
                           duplicate.inc_ref().ptr(),
                           one_event_vars.inc_ref().ptr(),
                           signal_view.inc_ref().ptr(),
                           decode.inc_ref().ptr(),
                           decode_error.inc_ref().ptr(),
                           rebase_exponent};
    names();
}

}  // namespace

void register_live_calls(py::module_& m) {
    m.def("live_calls_setup", &live_calls_setup, py::arg("labels"), py::arg("report_cls"), py::arg("unscored"),
          py::arg("scored"), py::arg("duplicate"), py::arg("one_event_vars"), py::arg("signal_view"), py::arg("decode"),
          py::arg("decode_error"), py::arg("rebase_exponent"),
          "Give live_ingest / live_tier_of / live_score_of their tables (once).");
    for (PyMethodDef* def = hot_calls; def->ml_name != nullptr; ++def) {
        PyObject* f = PyCFunction_NewEx(def, nullptr, m.attr("__name__").ptr());
        if (f == nullptr) throw py::error_already_set();
        m.add_object(def->ml_name, py::reinterpret_steal<py::object>(f));
    }
}
