// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// The lattice domain's one kernel (skipconv_det/inference/write.py): writes each region of a plan
// (skipconv_det/inference/plan.py) as clamp(sum of weighted sources + constant), every target position once, the
// sources read from the lattice tensors in place. It materialises a map (kept values, fills, a residual, the
// activation and the zero border of the padded map a convolution reads, in one pass) and computes a map's skipped
// lattices. NCHW and channels_last, any strides.
#include <torch/extension.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace {

// inputs[input][n, c, row + row_step * k, col + col_step * m] * weight, for position (k, m) of its region.
struct Source {
  int64_t input, row, row_step, col, col_step;
  double weight;
};

// Positions (row + row_step * k, col + col_step * m), k < rows, m < cols, of targets[target], every channel:
// the sum of the sources, plus constants[constant] per channel (constant >= 0).
struct Region {
  int64_t target, row, rows, row_step, col, cols, col_step;
  std::vector<Source> sources;
  int64_t constant;
};

// A plan's regions, converted once and kept by the Python side with the plan.
struct Plan {
  std::vector<Region> regions;
};

struct Clamp {
  bool active;
  double low, high;
};

template <typename acc_t>
inline acc_t clamp_value(acc_t v, const Clamp& clamp) {
  if (!clamp.active) return v;
  // NaN stays NaN, as torch.clamp does.
  if (v < static_cast<acc_t>(clamp.low)) v = static_cast<acc_t>(clamp.low);
  if (v > static_cast<acc_t>(clamp.high)) v = static_cast<acc_t>(clamp.high);
  return v;
}

void check_range(const at::Tensor& t, int64_t row, int64_t rows, int64_t row_step, int64_t col, int64_t cols,
                 int64_t col_step, const char* what) {
  TORCH_CHECK(rows >= 0 && cols >= 0, "skipconv_det: negative region in ", what);
  if (rows == 0 || cols == 0) return;
  const int64_t last_row = row + row_step * (rows - 1), last_col = col + col_step * (cols - 1);
  TORCH_CHECK(std::min(row, last_row) >= 0 && std::max(row, last_row) < t.size(2) && std::min(col, last_col) >= 0 &&
                  std::max(col, last_col) < t.size(3),
              "skipconv_det: a region reads or writes outside its ", what);
}

template <typename scalar_t>
void write_region(const Region& region, const std::vector<at::Tensor>& targets,
                  const std::vector<at::Tensor>& inputs, const std::vector<at::Tensor>& constants,
                  const Clamp& clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  const at::Tensor& target = targets[region.target];
  const int64_t batch = target.size(0), channels = target.size(1);
  const int64_t num_sources = static_cast<int64_t>(region.sources.size());
  scalar_t* out = target.data_ptr<scalar_t>();
  const int64_t tn = target.stride(0), tc = target.stride(1), th = target.stride(2), tw = target.stride(3);
  std::vector<const scalar_t*> src(num_sources);
  std::vector<int64_t> sn(num_sources), sc(num_sources), sh(num_sources), sw(num_sources);
  std::vector<acc_t> weight(num_sources);
  for (int64_t s = 0; s < num_sources; ++s) {
    const Source& source = region.sources[s];
    const at::Tensor& input = inputs[source.input];
    src[s] = input.data_ptr<scalar_t>();
    sn[s] = input.stride(0);
    sc[s] = input.stride(1);
    sh[s] = input.stride(2) * source.row_step;
    sw[s] = input.stride(3) * source.col_step;
    src[s] += source.row * input.stride(2) + source.col * input.stride(3);
    weight[s] = static_cast<acc_t>(source.weight);
  }
  const scalar_t* constant = region.constant >= 0 ? constants[region.constant].data_ptr<scalar_t>() : nullptr;
  out += region.row * th + region.col * tw;
  const int64_t step_h = th * region.row_step, step_w = tw * region.col_step;
  const int64_t rows = region.rows, cols = region.cols;

  // The innermost loop runs along the smaller target stride: channels in channels_last, columns in NCHW.
  if (tc < tw) {
    at::parallel_for(0, batch * rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols * channels)),
                     [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(channels);
      for (int64_t index = begin; index < end; ++index) {
        const int64_t n = index / rows, k = index % rows;
        for (int64_t m = 0; m < cols; ++m) {
          for (int64_t c = 0; c < channels; ++c) acc[c] = constant ? static_cast<acc_t>(constant[c]) : acc_t(0);
          for (int64_t s = 0; s < num_sources; ++s) {
            const scalar_t* p = src[s] + n * sn[s] + k * sh[s] + m * sw[s];
            const int64_t stride = sc[s];
            const acc_t w = weight[s];
            if (w == acc_t(1)) {
              for (int64_t c = 0; c < channels; ++c) acc[c] += static_cast<acc_t>(p[c * stride]);
            } else {
              for (int64_t c = 0; c < channels; ++c) acc[c] += w * static_cast<acc_t>(p[c * stride]);
            }
          }
          scalar_t* q = out + n * tn + k * step_h + m * step_w;
          for (int64_t c = 0; c < channels; ++c) q[c * tc] = static_cast<scalar_t>(clamp_value(acc[c], clamp));
        }
      }
    });
  } else {
    at::parallel_for(0, batch * channels, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, rows * cols)),
                     [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(cols);
      for (int64_t index = begin; index < end; ++index) {
        const int64_t n = index / channels, c = index % channels;
        const acc_t base = constant ? static_cast<acc_t>(constant[c]) : acc_t(0);
        for (int64_t k = 0; k < rows; ++k) {
          std::fill(acc.begin(), acc.end(), base);
          for (int64_t s = 0; s < num_sources; ++s) {
            const scalar_t* p = src[s] + n * sn[s] + c * sc[s] + k * sh[s];
            const int64_t stride = sw[s];
            const acc_t w = weight[s];
            if (w == acc_t(1)) {
              for (int64_t m = 0; m < cols; ++m) acc[m] += static_cast<acc_t>(p[m * stride]);
            } else {
              for (int64_t m = 0; m < cols; ++m) acc[m] += w * static_cast<acc_t>(p[m * stride]);
            }
          }
          scalar_t* q = out + n * tn + c * tc + k * step_h;
          for (int64_t m = 0; m < cols; ++m) q[m * step_w] = static_cast<scalar_t>(clamp_value(acc[m], clamp));
        }
      }
    });
  }
}

void write_regions(const std::vector<at::Tensor>& targets, const std::vector<at::Tensor>& inputs, const Plan& plan,
                   const std::vector<at::Tensor>& constants, bool clamp, double low, double high) {
  TORCH_CHECK(!targets.empty(), "skipconv_det: write_regions needs a target");
  const at::Tensor& first = targets[0];
  auto check = [&](const at::Tensor& t, const char* what) {
    TORCH_CHECK(t.device().is_cpu() && t.dim() == 4 && t.scalar_type() == first.scalar_type() &&
                    t.size(0) == first.size(0) && t.size(1) == first.size(1),
                "skipconv_det: write_regions takes 4D CPU tensors of one dtype, batch and channel count (",
                what, ")");
  };
  for (const auto& t : targets) check(t, "target");
  for (const auto& t : inputs) check(t, "input");
  for (const auto& t : constants) {
    TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.numel() == first.size(1) &&
                    t.scalar_type() == first.scalar_type(),
                "skipconv_det: a constant must hold one value per channel");
  }
  for (const Region& region : plan.regions) {
    TORCH_CHECK(region.target >= 0 && region.target < static_cast<int64_t>(targets.size()) &&
                    region.constant < static_cast<int64_t>(constants.size()),
                "skipconv_det: a region names a missing target or constant");
    check_range(targets[region.target], region.row, region.rows, region.row_step, region.col, region.cols,
                region.col_step, "target");
    for (const Source& source : region.sources) {
      TORCH_CHECK(source.input >= 0 && source.input < static_cast<int64_t>(inputs.size()),
                  "skipconv_det: a source names a missing input");
      check_range(inputs[source.input], source.row, region.rows, source.row_step, source.col, region.cols,
                  source.col_step, "input");
    }
  }
  const Clamp bounds{clamp, low, high};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, first.scalar_type(), "write_regions", [&] {
    for (const Region& region : plan.regions) write_region<scalar_t>(region, targets, inputs, constants, bounds);
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Source>(m, "Source")
      .def(py::init<int64_t, int64_t, int64_t, int64_t, int64_t, double>(), py::arg("input"), py::arg("row"),
           py::arg("row_step"), py::arg("col"), py::arg("col_step"), py::arg("weight"))
      .def_readonly("input", &Source::input)
      .def_readonly("row", &Source::row)
      .def_readonly("row_step", &Source::row_step)
      .def_readonly("col", &Source::col)
      .def_readonly("col_step", &Source::col_step)
      .def_readonly("weight", &Source::weight);
  py::class_<Region>(m, "Region")
      .def(py::init<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, std::vector<Source>, int64_t>(),
           py::arg("target"), py::arg("row"), py::arg("rows"), py::arg("row_step"), py::arg("col"), py::arg("cols"),
           py::arg("col_step"), py::arg("sources"), py::arg("constant"))
      .def_readonly("target", &Region::target)
      .def_readonly("sources", &Region::sources);
  py::class_<Plan>(m, "Plan").def(py::init<std::vector<Region>>(), py::arg("regions"));
  m.def("write_regions", &write_regions, py::arg("targets"), py::arg("inputs"), py::arg("plan"),
        py::arg("constants"), py::arg("clamp"), py::arg("low"), py::arg("high"),
        py::call_guard<py::gil_scoped_release>(),
        "Write each region of plan into targets: clamp(sum of weighted sources + constant).");
}
