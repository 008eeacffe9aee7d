// Python binding of the NDJSON reader (csrc/ingest.hpp): bytes in, numpy columns and local string
// tables out. Columns are handed over without copies; the GIL is released while parsing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <utility>
#include <vector>

#include "ingest.hpp"

namespace py = pybind11;
using affinity::ingest::Columns;
using affinity::ingest::LocalInterner;

namespace {

template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v) {
    auto* owned = new std::vector<T>(std::move(v));
    py::capsule owner(owned, [](void* q) { delete static_cast<std::vector<T>*>(q); });
    return py::array_t<T>(static_cast<py::ssize_t>(owned->size()), owned->data(), owner);
}

py::tuple names_of(LocalInterner& in) {
    py::list names(in.names.size());
    for (size_t i = 0; i < in.names.size(); ++i) {
        const auto& s = in.names[i];
        PyObject* str = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
        if (!str) throw py::error_already_set();
        PyList_SET_ITEM(names.ptr(), static_cast<Py_ssize_t>(i), str);
    }
    return py::make_tuple(std::move(names), to_numpy(std::move(in.first)));
}

py::dict read_ndjson(py::buffer data) {
    py::buffer_info info = data.request();
    if (info.ndim != 1 || info.itemsize != 1) throw py::value_error("read_ndjson expects a 1-d bytes-like object");
    auto cols = std::make_unique<Columns>();
    {
        py::gil_scoped_release release;
        affinity::ingest::read_ndjson(static_cast<const char*>(info.ptr), static_cast<size_t>(info.size), *cols);
    }
    py::dict out;
    // Names first: they are views into `data`, which is still alive here.
    out["users"] = names_of(cols->users);
    out["products"] = names_of(cols->products);
    out["categories"] = names_of(cols->categories);
    out["brands"] = names_of(cols->brands);
    out["campaigns"] = names_of(cols->campaigns);
    out["line"] = to_numpy(std::move(cols->line));
    out["begin"] = to_numpy(std::move(cols->begin));
    out["end"] = to_numpy(std::move(cols->end));
    out["status"] = to_numpy(std::move(cols->status));
    out["user"] = to_numpy(std::move(cols->user));
    out["event_type"] = to_numpy(std::move(cols->event_type));
    out["ts_ms"] = to_numpy(std::move(cols->ts_ms));
    out["channel"] = to_numpy(std::move(cols->channel));
    out["revenue"] = to_numpy(std::move(cols->revenue));
    out["discount"] = to_numpy(std::move(cols->discount));
    out["has_coupon"] = to_numpy(std::move(cols->has_coupon));
    out["campaign"] = to_numpy(std::move(cols->campaign));
    out["event_id"] = to_numpy(std::move(cols->event_id));
    out["consent"] = to_numpy(std::move(cols->consent));
    out["item_slot"] = to_numpy(std::move(cols->item_slot));
    out["item_product"] = to_numpy(std::move(cols->item_product));
    out["item_category"] = to_numpy(std::move(cols->item_category));
    out["item_brand"] = to_numpy(std::move(cols->item_brand));
    out["item_price"] = to_numpy(std::move(cols->item_price));
    out["item_discount"] = to_numpy(std::move(cols->item_discount));
    out["item_quantity"] = to_numpy(std::move(cols->item_quantity));
    return out;
}

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

}  // namespace

void register_ingest(py::module_& m) {
    m.def("read_ndjson", &read_ndjson, py::arg("data"),
          "Parse NDJSON bytes into event columns (one slot per non-blank line) plus local string "
          "tables; slots with status 1 were not understood and must be decoded by msgspec.");
    m.def("fnv1a_strings", &fnv1a_strings, py::arg("offsets"), py::arg("data"), py::arg("valid"),
          "64-bit FNV-1a (0 -> 1) of each string given as Arrow large_string offsets and data.");
}
