// affinity_sdk._native: the C++ kernels. Each part registers its own functions from its own
// file so the decay kernels, the NDJSON reader and the affinity kernels stay independent.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_kernels(py::module_& m);
void register_ingest(py::module_& m);
void register_affinity(py::module_& m);
void register_output(py::module_& m);
void register_live(py::module_& m);
void register_live_calls(py::module_& m);

PYBIND11_MODULE(_native, m) {
    m.doc() = "C++ kernels for affinity_sdk (decay aggregation, scoring, tiers, NDJSON ingest, affinity, CSV output)";
    register_kernels(m);
    register_ingest(m);
    register_affinity(m);
    register_output(m);
    register_live(m);
    register_live_calls(m);
}
