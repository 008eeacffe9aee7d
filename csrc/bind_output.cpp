// Python binding of the CSV row formatter (csrc/csv_format.hpp): numpy columns and lists of str in,
// the rows' bytes out. The GIL is released while formatting.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <utility>
#include <vector>

#include "csv_format.hpp"

namespace py = pybind11;
using affinity::csvfmt::Column;

namespace {

template <class T>
const T* column_data(const py::object& data, py::ssize_t n, py::list& keep) {
    auto arr = py::array_t<T, py::array::c_style>::ensure(data);
    if (!arr || arr.ndim() != 1 || arr.shape(0) != n) throw py::value_error("csv_rows: a column has another length");
    keep.append(arr);
    return arr.data();
}

// `columns`: (kind, data) pairs, kind 0 float64 array, 1 int64 array, 2 bool array, 3 list of str.
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
            case 0: col.kind = Column::FLOAT64; col.f64 = column_data<double>(data, n, keep); break;
            case 1: col.kind = Column::INT64; col.i64 = column_data<int64_t>(data, n, keep); break;
            case 2: col.kind = Column::BOOL; col.b = column_data<uint8_t>(data, n, keep); break;
            case 3: {
                col.kind = Column::STRING;
                const auto values = py::reinterpret_borrow<py::list>(data);
                if (static_cast<py::ssize_t>(values.size()) != n) throw py::value_error("csv_rows: a column has another length");
                col.str.reserve(static_cast<size_t>(end - begin));
                col.str.resize(static_cast<size_t>(begin));  // rows before `begin` are not read
                for (py::ssize_t r = begin; r < end; ++r) {
                    Py_ssize_t size = 0;
                    const char* s = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(values.ptr(), r), &size);
                    if (!s) throw py::error_already_set();
                    col.str.emplace_back(s, static_cast<size_t>(size));
                }
                break;
            }
            default: throw py::value_error("csv_rows: unknown column kind");
        }
        cols.push_back(std::move(col));
    }
    std::string out;
    {
        py::gil_scoped_release release;
        out.reserve(static_cast<size_t>(end - begin) * (cols.size() * 20 + 2));
        affinity::csvfmt::write_rows(cols, static_cast<size_t>(begin), static_cast<size_t>(end), out);
    }
    return py::bytes(out);
}

}  // namespace

void register_output(py::module_& m) {
    m.def("csv_rows", &csv_rows, py::arg("columns"), py::arg("n"), py::arg("begin"), py::arg("end"),
          "Rows [begin, end) of n-row columns ((kind, data): 0 float64, 1 int64, 2 bool arrays, 3 list "
          "of str) as CSV bytes, in exactly the text csv.writer writes (floats as repr, \\r\\n rows).");
}
