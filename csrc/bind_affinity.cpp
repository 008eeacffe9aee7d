// pybind11 bindings of csrc/affinity.hpp as the submodule affinity_sdk._native.affinity.
// Arrays are taken as C-contiguous buffers of the exact dtype (no forcecast, no copies) and
// the GIL is released while a kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "affinity.hpp"

namespace py = pybind11;

namespace {

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

void require(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("affinity kernel: ") + what);
}

int64_t width(const carray<double>& acc) { return acc.ndim() == 2 ? acc.shape(1) : 1; }

int64_t group_sum(const carray<int64_t>& keys, const carray<double>& contrib, carray<int64_t>& out_keys,
                  carray<double>& out_acc) {
    const int64_t n = keys.shape(0);
    const int64_t h = width(contrib);
    require(contrib.ndim() == 2 && contrib.shape(0) == n, "contrib must be (len(keys), h)");
    require(out_keys.shape(0) >= n && out_acc.ndim() == 2 && out_acc.shape(0) >= n && width(out_acc) == h,
            "outputs too small");
    const int64_t* k = keys.data();
    const double* c = contrib.data();
    int64_t* ok = out_keys.mutable_data();
    double* oa = out_acc.mutable_data();
    py::gil_scoped_release release;
    return affinity::group_sum(k, c, n, h, ok, oa);
}

int64_t merge_runs(const carray<int64_t>& a_keys, const carray<double>& a_acc, const carray<int64_t>& b_keys,
                   const carray<double>& b_acc, carray<int64_t>& out_keys, carray<double>& out_acc) {
    const int64_t na = a_keys.shape(0), nb = b_keys.shape(0);
    const int64_t h = width(out_acc);
    require(a_acc.ndim() == 2 && b_acc.ndim() == 2 && out_acc.ndim() == 2, "accumulators must be 2-d");
    require(a_acc.shape(0) == na && b_acc.shape(0) == nb && width(a_acc) == h && width(b_acc) == h,
            "accumulator shapes do not match the keys");
    require(out_keys.shape(0) >= na + nb && out_acc.shape(0) >= na + nb, "outputs too small");
    const int64_t *ak = a_keys.data(), *bk = b_keys.data();
    const double *aa = a_acc.data(), *ba = b_acc.data();
    int64_t* ok = out_keys.mutable_data();
    double* oa = out_acc.mutable_data();
    py::gil_scoped_release release;
    return affinity::merge_runs(ak, aa, na, bk, ba, nb, h, ok, oa);
}

void lift_scores(const carray<int64_t>& indptr, const carray<int64_t>& cols, const carray<double>& acc,
                 const carray<double>& factors, double kappa, carray<double>& value_totals,
                 carray<double>& out_decayed, carray<double>& out_lift) {
    const int64_t n = cols.shape(0);
    const int64_t h = width(acc);
    require(indptr.shape(0) >= 1, "indptr is empty");
    require(acc.ndim() == 2 && acc.shape(0) == n && factors.shape(0) == h, "acc must be (n, len(factors))");
    require(out_decayed.shape(0) == n && out_lift.shape(0) == n, "outputs must have one slot per entry");
    const int64_t* ip = indptr.data();
    const int64_t n_rows = indptr.shape(0) - 1;
    require(ip[n_rows] == n, "indptr does not cover the entries");
    const int64_t* c = cols.data();
    const int64_t n_values = value_totals.shape(0);
    for (int64_t j = 0; j < n; ++j) require(c[j] >= 0 && c[j] < n_values, "column out of range");
    const double *a = acc.data(), *f = factors.data();
    double *vt = value_totals.mutable_data(), *od = out_decayed.mutable_data(), *ol = out_lift.mutable_data();
    py::gil_scoped_release release;
    affinity::lift_scores(ip, n_rows, c, a, n, h, f, kappa, vt, n_values, od, ol);
}

void topk_segments(const carray<int64_t>& indptr, const carray<int64_t>& cols, const carray<double>& vals,
                   int64_t k, carray<int64_t>& out_index, carray<double>& out_value) {
    const int64_t n_rows = indptr.shape(0) - 1;
    require(n_rows >= 0, "indptr is empty");
    require(cols.shape(0) == vals.shape(0) && indptr.data()[n_rows] == cols.shape(0),
            "indptr, cols and vals do not match");
    require(out_index.ndim() == 2 && out_value.ndim() == 2 && out_index.shape(0) == n_rows &&
                out_value.shape(0) == n_rows && out_index.shape(1) == k && out_value.shape(1) == k,
            "outputs must be (n_rows, k)");
    if (k <= 0) return;
    const int64_t* ip = indptr.data();
    const int64_t* c = cols.data();
    const double* v = vals.data();
    int64_t* oi = out_index.mutable_data();
    double* ov = out_value.mutable_data();
    py::gil_scoped_release release;
    affinity::topk_segments(ip, n_rows, c, v, k, oi, ov);
}

void transpose_index(const carray<int64_t>& cols, carray<int64_t>& out_ptr, carray<int64_t>& out_order) {
    const int64_t n = cols.shape(0);
    const int64_t n_values = out_ptr.shape(0) - 1;
    require(n_values >= 0 && out_order.shape(0) == n, "out_ptr needs n_values + 1 slots, out_order n");
    const int64_t* c = cols.data();
    for (int64_t j = 0; j < n; ++j) require(c[j] >= 0 && c[j] < n_values, "column out of range");
    int64_t *op = out_ptr.mutable_data(), *oo = out_order.mutable_data();
    py::gil_scoped_release release;
    affinity::transpose_index(c, n, n_values, op, oo);
}

void csr_dot(const carray<int64_t>& indptr, const carray<int64_t>& cols, const carray<double>& vals,
             const carray<double>& dense, carray<double>& out_dot, carray<double>& out_sqnorm) {
    const int64_t n_rows = indptr.shape(0) - 1;
    require(n_rows >= 0 && indptr.data()[n_rows] == cols.shape(0) && vals.shape(0) == cols.shape(0),
            "indptr, cols and vals do not match");
    require(out_dot.shape(0) == n_rows && out_sqnorm.shape(0) == n_rows, "outputs need one slot per row");
    const int64_t* c = cols.data();
    for (int64_t j = 0; j < cols.shape(0); ++j) require(c[j] >= 0 && c[j] < dense.shape(0), "column out of range");
    const int64_t* ip = indptr.data();
    const double *v = vals.data(), *d = dense.data();
    double *od = out_dot.mutable_data(), *os = out_sqnorm.mutable_data();
    py::gil_scoped_release release;
    affinity::csr_dot(ip, n_rows, c, v, d, od, os);
}

}  // namespace

void register_affinity(py::module_& m) {
    auto sub = m.def_submodule("affinity", "Sparse affinity kernels (twins of kernels/_affinity_reference.py)");
    sub.def("group_sum", &group_sum, py::arg("keys").noconvert(), py::arg("contrib").noconvert(), py::arg("out_keys").noconvert(), py::arg("out_acc").noconvert());
    sub.def("merge_runs", &merge_runs, py::arg("a_keys").noconvert(), py::arg("a_acc").noconvert(), py::arg("b_keys").noconvert(), py::arg("b_acc").noconvert(),
            py::arg("out_keys").noconvert(), py::arg("out_acc").noconvert());
    sub.def("lift_scores", &lift_scores, py::arg("indptr").noconvert(), py::arg("cols").noconvert(), py::arg("acc").noconvert(), py::arg("factors").noconvert(),
            py::arg("kappa"), py::arg("value_totals").noconvert(), py::arg("out_decayed").noconvert(), py::arg("out_lift").noconvert());
    sub.def("topk_segments", &topk_segments, py::arg("indptr").noconvert(), py::arg("cols").noconvert(), py::arg("vals").noconvert(), py::arg("k"),
            py::arg("out_index").noconvert(), py::arg("out_value").noconvert());
    sub.def("transpose_index", &transpose_index, py::arg("cols").noconvert(), py::arg("out_ptr").noconvert(), py::arg("out_order").noconvert());
    sub.def("csr_dot", &csr_dot, py::arg("indptr").noconvert(), py::arg("cols").noconvert(), py::arg("vals").noconvert(), py::arg("dense").noconvert(),
            py::arg("out_dot").noconvert(), py::arg("out_sqnorm").noconvert());
}
