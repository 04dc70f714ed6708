// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// The Python module of SkipConv's CPU kernels (built and loaded by skipconv_det/ops/_extension.py): the records of
// records.h, constructed by keyword with the names of their fields, and the kernels of kernels.h.
#include <pybind11/stl.h>
#include <torch/extension.h>

#include "kernels.h"

namespace py = pybind11;
using namespace skipconv_det;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Region>(m, "Region")
      .def(py::init([](int64_t channel_start, int64_t channel_stop, int64_t row_start, int64_t rows, int64_t row_step,
                       int64_t col_start, int64_t cols, int64_t col_step) {
             return Region{channel_start, channel_stop, row_start, rows, row_step, col_start, cols, col_step};
           }),
           py::kw_only(), py::arg("channel_start"), py::arg("channel_stop"), py::arg("row_start"), py::arg("rows"),
           py::arg("row_step"), py::arg("col_start"), py::arg("cols"), py::arg("col_step"))
      .def_readonly("channel_start", &Region::channel_start)
      .def_readonly("channel_stop", &Region::channel_stop)
      .def_readonly("row_start", &Region::row_start)
      .def_readonly("rows", &Region::rows)
      .def_readonly("row_step", &Region::row_step)
      .def_readonly("col_start", &Region::col_start)
      .def_readonly("cols", &Region::cols)
      .def_readonly("col_step", &Region::col_step);
  py::class_<FillRecord>(m, "FillRecord")
      .def(py::init([](const Region& target, std::vector<std::pair<int64_t, int64_t>> offsets, double weight) {
             return FillRecord{target, std::move(offsets), weight};
           }),
           py::kw_only(), py::arg("target"), py::arg("offsets"), py::arg("weight"))
      .def_readonly("target", &FillRecord::target)
      .def_readonly("offsets", &FillRecord::offsets)
      .def_readonly("weight", &FillRecord::weight);
  py::class_<AdjointAdd>(m, "AdjointAdd")
      .def(py::init([](int64_t part, const Region& grad_region, const Region& part_region, double weight) {
             return AdjointAdd{part, grad_region, part_region, weight};
           }),
           py::kw_only(), py::arg("part"), py::arg("grad_region"), py::arg("part_region"), py::arg("weight"))
      .def_readonly("part", &AdjointAdd::part)
      .def_readonly("grad_region", &AdjointAdd::grad_region)
      .def_readonly("part_region", &AdjointAdd::part_region)
      .def_readonly("weight", &AdjointAdd::weight);
  // The kernels hold no Python objects: other Python threads may run meanwhile.
  m.def("fill_in_place", &fill_in_place, py::arg("out"), py::arg("fill_plan"),
        py::call_guard<py::gil_scoped_release>());
  m.def("assemble_nchw", &assemble_nchw, py::arg("out"), py::arg("parts"), py::arg("regions"), py::arg("fill_plan"),
        py::arg("shift"), py::call_guard<py::gil_scoped_release>());
  m.def("disassemble_nchw", &disassemble_nchw, py::arg("grad"), py::arg("part_grads"), py::arg("regions"),
        py::arg("adds"), py::call_guard<py::gil_scoped_release>());
}
