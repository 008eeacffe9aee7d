// Python binding of the NDJSON reader (csrc/ingest.hpp): bytes in, numpy columns and local string
// tables out. Columns are handed over without copies; the GIL is released while parsing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "ingest.hpp"
#include "ingest_parallel.hpp"

namespace py = pybind11;
using affinity::ingest::Columns;
using affinity::ingest::LocalInterner;

namespace {

template <class T, class A>
py::array_t<T> to_numpy(std::vector<T, A>&& v) {
    auto* owned = new std::vector<T, A>(std::move(v));
    py::capsule owner(owned, [](void* q) { delete static_cast<std::vector<T, A>*>(q); });
    return py::array_t<T>(static_cast<py::ssize_t>(owned->size()), owned->data(), owner);
}

// Buffers of the reader's output columns, handed back when Python frees the numpy array that held
// one: a streaming reader's next chunk refills memory already touched, where fresh allocations
// would pay a page fault per 4 KB (the kernel's zeroing) every chunk. Shared by the reader and the
// capsules of its arrays, so a capsule outliving the reader frees its buffer into a live pool.
class ColumnPool {
public:
    // A spare buffer for `col` (empty, capacity 0: its last buffer was handed out), the largest kept.
    template <class T, class A>
    void refill(std::vector<T, A>& col) {
        if (col.capacity() != 0) return;
        std::lock_guard<std::mutex> lock(mutex_);
        auto& spare = stack<T, A>();
        if (spare.empty()) return;
        auto best = std::max_element(spare.begin(), spare.end(),
                                     [](const auto& a, const auto& b) { return a.capacity() < b.capacity(); });
        col.swap(*best);
        spare.erase(best);
    }

    // Keep `col`'s buffer for a later chunk; beyond kKeep spares of a type it is freed.
    template <class T, class A>
    void give(std::vector<T, A>&& col) {
        col.clear();
        std::lock_guard<std::mutex> lock(mutex_);
        auto& spare = stack<T, A>();
        if (spare.size() >= kKeep) return;
        try {
            spare.push_back(std::move(col));
        } catch (const std::bad_alloc&) {  // called from a capsule's destructor: the buffer is just freed
        }
    }

private:
    // Enough for the columns of about three chunks (one being read, one being folded, one spare)
    // of the type with the most columns (int64: line, begin, end, user, ts_ms, item_slot).
    static constexpr size_t kKeep = 18;
    std::mutex mutex_;
    std::tuple<std::vector<affinity::ingest::Column<int64_t>>, std::vector<affinity::ingest::Column<int32_t>>,
               std::vector<affinity::ingest::Column<uint64_t>>, std::vector<affinity::ingest::Column<double>>,
               std::vector<affinity::ingest::Column<uint8_t>>, std::vector<affinity::ingest::Column<int8_t>>>
        stacks_;

    template <class T, class A>
    std::vector<std::vector<T, A>>& stack() {
        return std::get<std::vector<std::vector<T, A>>>(stacks_);
    }
};

// `v` as a numpy array whose buffer goes back to `pool` when the array is freed.
template <class T, class A>
py::array_t<T> to_numpy_pooled(std::vector<T, A>&& v, const std::shared_ptr<ColumnPool>& pool) {
    struct Owned {
        std::vector<T, A> v;
        std::shared_ptr<ColumnPool> pool;
    };
    auto* owned = new Owned{std::move(v), pool};
    py::capsule owner(owned, [](void* q) {
        auto* o = static_cast<Owned*>(q);
        o->pool->give(std::move(o->v));
        delete o;
    });
    return py::array_t<T>(static_cast<py::ssize_t>(owned->v.size()), owned->v.data(), owner);
}

// The names of `in` from code `from` on (the ones the caller has not seen yet), with where each
// was first seen.
py::tuple names_of(LocalInterner& in, size_t from = 0) {
    py::list names(in.names.size() - from);
    for (size_t i = from; i < in.names.size(); ++i) {
        const auto& s = in.names[i];
        PyObject* str = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
        if (!str) throw py::error_already_set();
        PyList_SET_ITEM(names.ptr(), static_cast<Py_ssize_t>(i - from), str);
    }
    std::vector<int64_t> first(in.first.begin() + static_cast<std::ptrdiff_t>(from), in.first.end());
    return py::make_tuple(std::move(names), to_numpy(std::move(first)));
}

// The row columns of `cols` (moved out, leaving them empty; their buffers go back to `pool`, when
// given, once Python frees them) and the names new since `seen` (updated), as the dict
// `read_ndjson` returns.
py::dict export_columns(Columns& cols, size_t* seen, const std::shared_ptr<ColumnPool>& pool = nullptr) {
    py::dict out;
    LocalInterner* interners[] = {&cols.users, &cols.products, &cols.categories, &cols.brands, &cols.campaigns};
    const char* keys[] = {"users", "products", "categories", "brands", "campaigns"};
    for (int k = 0; k < 5; ++k) {
        out[keys[k]] = names_of(*interners[k], seen[k]);
        seen[k] = interners[k]->names.size();
    }
    auto put = [&](const char* key, auto& col) {
        out[key] = pool ? to_numpy_pooled(std::move(col), pool) : to_numpy(std::move(col));
    };
    put("line", cols.line);
    put("begin", cols.begin);
    put("end", cols.end);
    put("status", cols.status);
    put("user", cols.user);
    put("event_type", cols.event_type);
    put("ts_ms", cols.ts_ms);
    put("channel", cols.channel);
    put("revenue", cols.revenue);
    put("discount", cols.discount);
    put("has_coupon", cols.has_coupon);
    put("campaign", cols.campaign);
    put("event_id", cols.event_id);
    put("consent", cols.consent);
    put("item_slot", cols.item_slot);
    put("item_product", cols.item_product);
    put("item_category", cols.item_category);
    put("item_brand", cols.item_brand);
    put("item_price", cols.item_price);
    put("item_discount", cols.item_discount);
    put("item_quantity", cols.item_quantity);
    return out;
}

const char* ndjson_bytes(const py::buffer& data, py::buffer_info& info) {
    info = data.request();
    if (info.ndim != 1 || info.itemsize != 1) throw py::value_error("read_ndjson expects a 1-d bytes-like object");
    return static_cast<const char*>(info.ptr);
}

// Below this many bytes a part is not worth a thread of its own.
constexpr size_t kMinPartBytes = size_t{1} << 20;

int checked_threads(int threads) {
    if (threads < 1) throw py::value_error("threads must be >= 1 (got " + std::to_string(threads) + ")");
    return threads;
}

// The reader on `threads` threads (one: the plain reader); the same result either way.
int64_t read_into(const char* bytes, size_t size, Columns& cols, int threads, size_t min_part,
                  affinity::ingest::PartColumns& scratch) {
    if (threads == 1) return affinity::ingest::read_ndjson(bytes, size, cols);
    return affinity::ingest::read_ndjson_parallel(bytes, size, cols, threads, min_part, scratch);
}

py::dict read_ndjson(const py::buffer& data, int threads, size_t min_part_bytes) {
    py::buffer_info info;
    const char* bytes = ndjson_bytes(data, info);
    checked_threads(threads);
    auto cols = std::make_unique<Columns>();
    affinity::ingest::PartColumns scratch;
    int64_t n_lines;
    {
        py::gil_scoped_release release;
        n_lines = read_into(bytes, static_cast<size_t>(info.size), *cols, threads, min_part_bytes, scratch);
    }
    size_t seen[5] = {};
    py::dict out = export_columns(*cols, seen);  // names are views into `data`, still alive here
    out["n_lines"] = n_lines;
    return out;
}

// The NDJSON reader fed chunk after chunk (each ending at a line end): string codes and first-seen
// order continue across chunks, and each chunk's result lists only the names new in it, so a
// file streams through in fixed-size pieces and every distinct id is decoded to str once.
class NdjsonReader {
public:
    explicit NdjsonReader(int threads = 1, size_t min_part_bytes = kMinPartBytes, bool item_names = true)
        : threads_(checked_threads(threads)), min_part_(min_part_bytes) {
        cols_.item_names = item_names;
    }

    int threads() const { return threads_; }

    py::dict read(const py::buffer& data) {
        py::buffer_info info;
        const char* bytes = ndjson_bytes(data, info);
        std::unique_lock<std::mutex> lock(mutex_, std::defer_lock);
        int64_t n_lines;
        {
            py::gil_scoped_release release;
            lock.lock();  // taken without the GIL: a second caller waits here, not holding it
            cols_.clear_rows();
            cols_.each_slot_column([this](auto& v) { pool_->refill(v); });
            cols_.each_item_column([this](auto& v) { pool_->refill(v); });
            n_lines = read_into(bytes, static_cast<size_t>(info.size), cols_, threads_, min_part_, scratch_);
        }
        py::dict out = export_columns(cols_, seen_, pool_);
        out["n_lines"] = n_lines;
        return out;
    }

private:
    Columns cols_{true};
    std::shared_ptr<ColumnPool> pool_ = std::make_shared<ColumnPool>();
    int threads_;
    size_t min_part_;
    affinity::ingest::PartColumns scratch_;
    size_t seen_[5] = {};
    std::mutex mutex_;
};

// FNV-1a of each string of an Arrow large_string array (offsets + data); 0 where `valid` is 0.
py::array_t<uint64_t> fnv1a_strings(py::array_t<int64_t, py::array::c_style> offsets,
                                    py::array_t<uint8_t, py::array::c_style> data,
                                    py::array_t<uint8_t, py::array::c_style> valid) {
    const py::ssize_t n = offsets.shape(0) - 1;
    if (n < 0 || valid.shape(0) != n) throw py::value_error("fnv1a_strings: offsets must have len(valid) + 1 entries");
    py::array_t<uint64_t> out(n);
    const int64_t* off = offsets.data();
    const char* bytes = reinterpret_cast<const char*>(data.data());
    const uint8_t* ok = valid.data();
    uint64_t* h = out.mutable_data();
    const int64_t size = data.shape(0);
    for (py::ssize_t i = 0; i < n; ++i)
        if (off[i] < 0 || off[i] > off[i + 1] || off[i + 1] > size) throw py::value_error("fnv1a_strings: bad offsets");
    {
        py::gil_scoped_release release;
        for (py::ssize_t i = 0; i < n; ++i)
            h[i] = ok[i] ? affinity::ingest::fnv1a(std::string_view(bytes + off[i], static_cast<size_t>(off[i + 1] - off[i])))
                         : 0;
    }
    return out;
}

// Arrow validity bitmap (a buffer or None) as a byte pointer; checks it covers `bits` bits.
const uint8_t* bitmap_of(const py::object& validity, int64_t bits, py::buffer_info& keep) {
    if (validity.is_none()) return nullptr;
    keep = py::reinterpret_borrow<py::buffer>(validity).request();
    if (keep.itemsize != 1 || keep.size * 8 < bits) throw py::value_error("validity bitmap too short");
    return static_cast<const uint8_t*>(keep.ptr);
}

py::list decode_names(const std::vector<std::string_view>& names, std::vector<int64_t>& chars) {
    py::list out(names.size());
    chars.resize(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
        const auto& s = names[i];
        PyObject* str = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
        if (!str) throw py::error_already_set();
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), str);
        chars[i] = affinity::ingest::utf8_chars(s);
    }
    return out;
}

template <class I>
int64_t dict_codes_as(const py::array& indices, const uint8_t* bitmap, int64_t bit_offset, int64_t dict_size,
                      int32_t* local, std::vector<int64_t>& order, std::vector<int64_t>& first) {
    auto idx = py::array_t<I, py::array::c_style>::ensure(indices);
    if (!idx) throw py::value_error("arrow_dict_codes: indices must be a 1-d integer array");
    const I* p = idx.data();
    const int64_t n = idx.shape(0);
    py::gil_scoped_release release;
    return affinity::ingest::dict_first_seen(p, n, bitmap, bit_offset, dict_size, local, order, first);
}

// Dictionary indices -> (local codes int32 with -1 for null, dictionary index per local code,
// first row per local code), local codes numbered in order of first appearance.
py::tuple arrow_dict_codes(const py::array& indices, const py::object& validity, int64_t bit_offset,
                           int64_t dict_size) {
    if (indices.ndim() != 1) throw py::value_error("arrow_dict_codes: indices must be 1-d");
    const int64_t n = indices.shape(0);
    py::buffer_info keep;
    const uint8_t* bitmap = bitmap_of(validity, bit_offset + n, keep);
    py::array_t<int32_t> local(n);
    std::vector<int64_t> order, first;
    int32_t* out = local.mutable_data();
    int64_t bad = -1;
    const char kind = indices.dtype().kind();
    const auto size = indices.itemsize();
    if (kind == 'i' && size == 4) bad = dict_codes_as<int32_t>(indices, bitmap, bit_offset, dict_size, out, order, first);
    else if (kind == 'i' && size == 8) bad = dict_codes_as<int64_t>(indices, bitmap, bit_offset, dict_size, out, order, first);
    else if (kind == 'i' && size == 2) bad = dict_codes_as<int16_t>(indices, bitmap, bit_offset, dict_size, out, order, first);
    else if (kind == 'i' && size == 1) bad = dict_codes_as<int8_t>(indices, bitmap, bit_offset, dict_size, out, order, first);
    else if (kind == 'u' && size == 4) bad = dict_codes_as<uint32_t>(indices, bitmap, bit_offset, dict_size, out, order, first);
    else if (kind == 'u' && size == 2) bad = dict_codes_as<uint16_t>(indices, bitmap, bit_offset, dict_size, out, order, first);
    else if (kind == 'u' && size == 1) bad = dict_codes_as<uint8_t>(indices, bitmap, bit_offset, dict_size, out, order, first);
    else throw py::value_error("arrow_dict_codes: unsupported index type");
    if (bad >= 0) throw py::value_error("arrow_dict_codes: dictionary index out of range at row " + std::to_string(bad));
    return py::make_tuple(local, to_numpy(std::move(order)), to_numpy(std::move(first)));
}

template <class O>
py::tuple string_codes_as(const py::array& offsets, const py::buffer& data, const py::object& validity,
                          int64_t bit_offset) {
    auto off = py::array_t<O, py::array::c_style>::ensure(offsets);
    if (!off || off.ndim() != 1 || off.shape(0) < 1) throw py::value_error("arrow_string_codes: bad offsets");
    const int64_t n = off.shape(0) - 1;
    py::buffer_info bytes = data.request();
    py::buffer_info keep;
    const uint8_t* bitmap = bitmap_of(validity, bit_offset + n, keep);
    const O* o = off.data();
    const int64_t size = bytes.size * bytes.itemsize;
    for (int64_t i = 0; i < n; ++i)
        if (o[i] < 0 || o[i] > o[i + 1] || static_cast<int64_t>(o[i + 1]) > size)
            throw py::value_error("arrow_string_codes: bad offsets");
    py::array_t<int32_t> local(n);
    affinity::ingest::LocalInterner names;
    {
        int32_t* out = local.mutable_data();
        const char* chars = static_cast<const char*>(bytes.ptr);
        py::gil_scoped_release release;
        affinity::ingest::strings_first_seen(o, n, chars, bitmap, bit_offset, out, names);
    }
    std::vector<int64_t> nchars;
    py::list values = decode_names(names.names, nchars);
    return py::make_tuple(local, values, to_numpy(std::move(names.first)), to_numpy(std::move(nchars)));
}

// Arrow string / large_string (offsets, data, validity) -> (local codes int32 with -1 for null,
// distinct values as str in first-seen order, first row of each, length of each in code points).
py::tuple arrow_string_codes(const py::array& offsets, const py::buffer& data, const py::object& validity,
                             int64_t bit_offset) {
    if (offsets.dtype().kind() == 'i' && offsets.itemsize() == 4)
        return string_codes_as<int32_t>(offsets, data, validity, bit_offset);
    return string_codes_as<int64_t>(offsets, data, validity, bit_offset);
}

// Values `take` of an Arrow string / large_string array (no nulls) as str, with their lengths in
// code points.
py::tuple arrow_take_strings(const py::array& offsets, const py::buffer& data,
                             py::array_t<int64_t, py::array::c_style> take) {
    const bool narrow = offsets.dtype().kind() == 'i' && offsets.itemsize() == 4;
    py::array off = narrow ? py::array(py::array_t<int32_t, py::array::c_style>::ensure(offsets))
                           : py::array(py::array_t<int64_t, py::array::c_style>::ensure(offsets));
    if (!off || off.ndim() != 1 || off.shape(0) < 1) throw py::value_error("arrow_take_strings: bad offsets");
    const int64_t n = off.shape(0) - 1;
    py::buffer_info bytes = data.request();
    const int64_t size = bytes.size * bytes.itemsize;
    const char* chars = static_cast<const char*>(bytes.ptr);
    std::vector<std::string_view> views;
    views.reserve(static_cast<size_t>(take.shape(0)));
    for (py::ssize_t k = 0; k < take.shape(0); ++k) {
        const int64_t i = take.data()[k];
        if (i < 0 || i >= n) throw py::value_error("arrow_take_strings: index out of range");
        int64_t b, e;
        if (narrow) {
            b = static_cast<const int32_t*>(off.data())[i];
            e = static_cast<const int32_t*>(off.data())[i + 1];
        } else {
            b = static_cast<const int64_t*>(off.data())[i];
            e = static_cast<const int64_t*>(off.data())[i + 1];
        }
        if (b < 0 || b > e || e > size) throw py::value_error("arrow_take_strings: bad offsets");
        views.emplace_back(chars + b, static_cast<size_t>(e - b));
    }
    std::vector<int64_t> nchars;
    py::list values = decode_names(views, nchars);
    return py::make_tuple(values, to_numpy(std::move(nchars)));
}

// List offsets (n + 1, non-decreasing) -> the row of each list element, counted from offsets[0].
template <class O>
py::array_t<int64_t> rows_as(const py::array& offsets) {
    auto off = py::array_t<O, py::array::c_style>::ensure(offsets);
    if (!off || off.ndim() != 1 || off.shape(0) < 1) throw py::value_error("rows_from_offsets: bad offsets");
    const O* o = off.data();
    const int64_t n = off.shape(0) - 1;
    for (int64_t i = 0; i < n; ++i)
        if (o[i] > o[i + 1]) throw py::value_error("rows_from_offsets: offsets must not decrease");
    py::array_t<int64_t> rows(static_cast<py::ssize_t>(o[n] - o[0]));
    int64_t* r = rows.mutable_data();
    {
        py::gil_scoped_release release;
        const int64_t base = static_cast<int64_t>(o[0]);
        for (int64_t i = 0; i < n; ++i)
            std::fill(r + (static_cast<int64_t>(o[i]) - base), r + (static_cast<int64_t>(o[i + 1]) - base), i);
    }
    return rows;
}

py::array_t<int64_t> rows_from_offsets(const py::array& offsets) {
    if (offsets.dtype().kind() == 'i' && offsets.itemsize() == 4) return rows_as<int32_t>(offsets);
    return rows_as<int64_t>(offsets);
}

// Arrow float64 values + validity bitmap -> a float64 array with NaN where null.
py::array_t<double> arrow_float64(py::array_t<double, py::array::c_style> values, const py::object& validity,
                                  int64_t bit_offset) {
    const int64_t n = values.shape(0);
    py::buffer_info keep;
    const uint8_t* bitmap = bitmap_of(validity, bit_offset + n, keep);
    py::array_t<double> out(n);
    const double* v = values.data();
    double* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        if (!bitmap) {
            std::copy(v, v + n, o);
        } else {
            const double nan = std::numeric_limits<double>::quiet_NaN();
            for (int64_t i = 0; i < n; ++i) o[i] = affinity::ingest::arrow_valid(bitmap, bit_offset + i) ? v[i] : nan;
        }
    }
    return out;
}

}  // namespace

void register_ingest(py::module_& m) {
    m.def("read_ndjson", &read_ndjson, py::arg("data"), py::arg("threads") = 1,
          py::arg("min_part_bytes") = kMinPartBytes,
          "Parse NDJSON bytes into event columns (one slot per non-blank line) plus local string "
          "tables (and n_lines, blank ones included); slots with status 1 were not understood "
          "and must be decoded by msgspec. With threads > 1 the input is cut at line ends into "
          "parts of at least min_part_bytes, read at once; the result is the same.");
    py::class_<NdjsonReader>(m, "NdjsonReader",
                             "read_ndjson for a stream of chunks (each ending at a line end): codes and "
                             "first-seen order continue across chunks; each result lists only new names. "
                             "item_names=False: item rows keep prices, discounts and quantities, their "
                             "product, category and brand codes are -1 (none interned).")
        .def(py::init<int, size_t, bool>(), py::arg("threads") = 1, py::arg("min_part_bytes") = kMinPartBytes,
             py::arg("item_names") = true)
        .def_property_readonly("threads", &NdjsonReader::threads)
        .def("read", &NdjsonReader::read, py::arg("data"), "Read one chunk, like read_ndjson.");
    m.def("fnv1a_strings", &fnv1a_strings, py::arg("offsets"), py::arg("data"), py::arg("valid"),
          "64-bit FNV-1a (0 -> 1) of each string given as Arrow large_string offsets and data.");
    m.def("arrow_dict_codes", &arrow_dict_codes, py::arg("indices"), py::arg("validity"), py::arg("bit_offset"),
          py::arg("dict_size"),
          "Dictionary indices -> (local codes in first-seen order, -1 for null; dictionary index and "
          "first row of each local code).");
    m.def("arrow_string_codes", &arrow_string_codes, py::arg("offsets"), py::arg("data"), py::arg("validity"),
          py::arg("bit_offset"),
          "Arrow string offsets + data -> (local codes in first-seen order, -1 for null; distinct "
          "values, first row and length in code points of each).");
    m.def("arrow_take_strings", &arrow_take_strings, py::arg("offsets"), py::arg("data"), py::arg("take"),
          "Selected values of an Arrow string array as str, with their lengths in code points.");
    m.def("arrow_float64", &arrow_float64, py::arg("values"), py::arg("validity"), py::arg("bit_offset"),
          "Arrow float64 values and validity bitmap -> float64 array with NaN where null.");
    m.def("rows_from_offsets", &rows_from_offsets, py::arg("offsets"),
          "List offsets -> the row of each list element.");
}
