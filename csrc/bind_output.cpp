// Python binding of the CSV row formatter (csrc/csv_format.hpp): numpy columns and lists of str in,
// the rows' bytes out. The GIL is released while formatting.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <tuple>

#if defined(__linux__)
#include <fcntl.h>
#endif
#include <utility>
#include <vector>

#include "csv_format.hpp"

namespace py = pybind11;
using affinity::csvfmt::Column;

namespace {

// Row `begin` of a 1-d array of T and the step between rows in elements (a strided view, such as a
// column of a row-major matrix, is read in place).
template <class T>
std::pair<const T*, py::ssize_t> column_data(const py::object& data, py::ssize_t n, py::ssize_t begin, py::list& keep) {
    auto arr = py::array_t<T, 0>::ensure(data);  // no forcecast: only casts that keep every value
    if (!arr || arr.ndim() != 1 || arr.shape(0) != n) throw py::value_error("csv_rows: a column has another length or type");
    keep.append(arr);
    const auto size = static_cast<py::ssize_t>(sizeof(T));
    if (arr.strides(0) % size == 0) return {arr.data() + begin * (arr.strides(0) / size), arr.strides(0) / size};
    auto packed = py::array_t<T, py::array::c_style>::ensure(arr);  // a stride of packed records
    if (!packed) throw py::error_already_set();
    keep.append(packed);
    return {packed.data() + begin, 1};
}

// Rows [begin, end) of a list of str, as views of their UTF-8 (cached in each str by CPython).
void list_rows(const py::object& data, py::ssize_t n, py::ssize_t begin, py::ssize_t end, Column& col) {
    if (!PyList_Check(data.ptr())) throw py::value_error("csv_rows: a str column must be a list or a numpy str array");
    const auto values = py::reinterpret_borrow<py::list>(data);
    if (static_cast<py::ssize_t>(values.size()) != n) throw py::value_error("csv_rows: a column has another length");
    col.str.reserve(static_cast<size_t>(end - begin));
    for (py::ssize_t r = begin; r < end; ++r) {
        Py_ssize_t size = 0;
        const char* s = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(values.ptr(), r), &size);
        if (!s) throw py::error_already_set();
        col.str.emplace_back(s, static_cast<size_t>(size));
    }
}

// Rows [begin, end) of a numpy str array (native-order UCS-4), read in place. A NUL before another
// character (`tolist` drops only trailing ones), a surrogate or a value past U+10FFFF raises: the
// caller sends those to csv.writer.
void ucs4_rows(const py::object& data, py::ssize_t n, py::ssize_t begin, py::ssize_t end, Column& col) {
    if (!py::isinstance<py::array>(data)) throw py::value_error("csv_rows: a str column must be a list or a numpy str array");
    const auto arr = py::reinterpret_borrow<py::array>(data);
    if (arr.ndim() != 1 || arr.shape(0) != n || arr.dtype().kind() != 'U' || !(arr.flags() & py::array::c_style) ||
        arr.dtype().byteorder() == '>')
        throw py::value_error("csv_rows: a str column must be a contiguous native-order numpy str array");
    col.width = static_cast<size_t>(arr.itemsize() / 4);
    col.ucs4 = static_cast<const uint32_t*>(arr.data()) + static_cast<size_t>(begin) * col.width;
    for (size_t r = 0; r < static_cast<size_t>(end - begin); ++r) {
        const uint32_t* row = col.ucs4 + r * col.width;
        bool nul = false;
        for (size_t i = 0; i < col.width; ++i) {
            const uint32_t cp = row[i];
            if ((nul && cp) || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
                throw py::value_error("csv_rows: a str column holds a NUL, a surrogate or no code point");
            nul |= cp == 0;
        }
    }
}

// `columns`: (kind, data) pairs, kind 0 float64 array, 1 int64 array, 2 bool array, 3 list of str,
// 4 numpy str array.
py::bytes csv_rows(const py::list& columns, py::ssize_t n, py::ssize_t begin, py::ssize_t end) {
    if (begin < 0 || end < begin || end > n) throw py::value_error("csv_rows: bad row range");
    std::vector<Column> cols;
    py::list keep;  // the arrays whose buffers `cols` points into
    for (const py::handle item : columns) {
        const auto pair = py::reinterpret_borrow<py::tuple>(item);
        const int kind = pair[0].cast<int>();
        const py::object data = pair[1];
        Column col{};
        switch (kind) {
            case 0: col.kind = Column::FLOAT64; std::tie(col.f64, col.step) = column_data<double>(data, n, begin, keep); break;
            case 1: col.kind = Column::INT64; std::tie(col.i64, col.step) = column_data<int64_t>(data, n, begin, keep); break;
            case 2: col.kind = Column::BOOL; std::tie(col.b, col.step) = column_data<uint8_t>(data, n, begin, keep); break;
            case 3: col.kind = Column::STRING; list_rows(data, n, begin, end, col); break;
            case 4: col.kind = Column::UCS4; ucs4_rows(data, n, begin, end, col); break;
            default: throw py::value_error("csv_rows: unknown column kind");
        }
        cols.push_back(std::move(col));
    }
    // The rows go straight into the bytes object returned (no copy of the text): sized for the
    // longest text these rows could have, shrunk to what was written.
    const auto rows = static_cast<size_t>(end - begin);
    const size_t cap = affinity::csvfmt::max_bytes(cols, rows) + affinity::csvfmt::kFormatRoom;
    auto holder = py::reinterpret_steal<py::object>(PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(cap)));
    if (!holder) throw py::error_already_set();
    char* const data = PyBytes_AS_STRING(holder.ptr());
    size_t size = 0;
    {
        py::gil_scoped_release release;
        size = static_cast<size_t>(affinity::csvfmt::write_rows(cols, rows, data) - data);
    }
    PyObject* out = holder.release().ptr();
    if (_PyBytes_Resize(&out, static_cast<Py_ssize_t>(size)) != 0) throw py::error_already_set();  // freed it
    return py::reinterpret_steal<py::bytes>(out);
}

// Start writing the dirty pages of the file open at `fd` to disk, without waiting (Linux
// sync_file_range): the fsync that ends an atomic write then finds little left to write. Errors
// are ignored (the fsync reports them); elsewhere it does nothing.
void start_writeback(int fd) {
#if defined(__linux__)
    py::gil_scoped_release release;
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
#endif
}

}  // namespace

void register_output(py::module_& m) {
    m.def("csv_rows", &csv_rows, py::arg("columns"), py::arg("n"), py::arg("begin"), py::arg("end"),
          "Rows [begin, end) of n-row columns ((kind, data): 0 float64, 1 int64, 2 bool arrays (strided "
          "views read in place), 3 list of str, 4 numpy str array) as CSV bytes, in exactly the text "
          "csv.writer writes (floats as repr, \\r\\n rows).");
    m.def("start_writeback", &start_writeback, py::arg("fd"),
          "Start writing the file's dirty pages to disk without waiting (Linux; elsewhere nothing).");
}
