// affinity_sdk._native: the C++ kernels. Each part registers its own functions so the kernel
// and ingest code stay in separate files.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_kernels(py::module_& m);
void register_ingest(py::module_& m);

PYBIND11_MODULE(_native, m) {
    m.doc() = "C++ kernels for affinity_sdk (decay aggregation, scoring, tiers, NDJSON ingest)";
    register_kernels(m);
    register_ingest(m);
}
