// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// The lattice domain's one kernel (skipconv_det/inference/write.py): writes each region of a plan
// (skipconv_det/inference/plan.py) as clamp(sum of weighted sources + constant), every target position once, the
// sources read from the lattice tensors in place. It materialises a map (kept values, fills, a residual, the
// activation, in one pass, into the padded map a convolution then reads) and computes a map's skipped lattices.
// NCHW and channels_last, any strides.
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

void check_range(const at::Tensor& t, int64_t row, int64_t rows, int64_t row_step, int64_t col, int64_t cols,
                 int64_t col_step, const char* what) {
  TORCH_CHECK(rows >= 0 && cols >= 0, "skipconv_det: negative region in ", what);
  if (rows == 0 || cols == 0) return;
  const int64_t last_row = row + row_step * (rows - 1), last_col = col + col_step * (cols - 1);
  TORCH_CHECK(std::min(row, last_row) >= 0 && std::max(row, last_row) < t.size(2) && std::min(col, last_col) >= 0 &&
                  std::max(col, last_col) < t.size(3),
              "skipconv_det: a region reads or writes outside its ", what);
}

// A region's sources resolved to pointers and element strides (per region position step).
template <typename scalar_t>
struct Resolved {
  std::vector<const scalar_t*> data;
  std::vector<int64_t> batch, channel, row, col;
  std::vector<at::opmath_type<scalar_t>> weight;
  scalar_t* out;
  int64_t out_batch, out_channel, out_row, out_col;
  const scalar_t* constant;
};

template <typename scalar_t>
Resolved<scalar_t> resolve(const Region& region, const std::vector<at::Tensor>& targets,
                           const std::vector<at::Tensor>& inputs, const std::vector<at::Tensor>& constants) {
  Resolved<scalar_t> r;
  for (const Source& source : region.sources) {
    const at::Tensor& input = inputs[source.input];
    r.data.push_back(input.data_ptr<scalar_t>() + source.row * input.stride(2) + source.col * input.stride(3));
    r.batch.push_back(input.stride(0));
    r.channel.push_back(input.stride(1));
    r.row.push_back(input.stride(2) * source.row_step);
    r.col.push_back(input.stride(3) * source.col_step);
    r.weight.push_back(static_cast<at::opmath_type<scalar_t>>(source.weight));
  }
  const at::Tensor& target = targets[region.target];
  r.out = target.data_ptr<scalar_t>() + region.row * target.stride(2) + region.col * target.stride(3);
  r.out_batch = target.stride(0);
  r.out_channel = target.stride(1);
  r.out_row = target.stride(2) * region.row_step;
  r.out_col = target.stride(3) * region.col_step;
  r.constant = region.constant >= 0 ? constants[region.constant].data_ptr<scalar_t>() : nullptr;
  return r;
}

// acc[i] += w * p[i * stride], i < count; unit strides get their own loops, which the compiler vectorizes.
template <typename scalar_t, typename acc_t>
inline void accumulate(acc_t* __restrict__ acc, const scalar_t* __restrict__ p, int64_t stride, int64_t count,
                       acc_t w) {
  if (stride == 1) {
    if (w == acc_t(1)) {
      for (int64_t i = 0; i < count; ++i) acc[i] += static_cast<acc_t>(p[i]);
    } else {
      for (int64_t i = 0; i < count; ++i) acc[i] += w * static_cast<acc_t>(p[i]);
    }
  } else if (w == acc_t(1)) {
    for (int64_t i = 0; i < count; ++i) acc[i] += static_cast<acc_t>(p[i * stride]);
  } else {
    for (int64_t i = 0; i < count; ++i) acc[i] += w * static_cast<acc_t>(p[i * stride]);
  }
}

// q[i * stride] = clamp(acc[i]), i < count (std::max and std::min keep a NaN, as torch.clamp does).
template <typename scalar_t, typename acc_t>
inline void store(scalar_t* __restrict__ q, int64_t stride, const acc_t* __restrict__ acc, int64_t count,
                  const Clamp& clamp) {
  if (clamp.active) {
    const acc_t low = static_cast<acc_t>(clamp.low), high = static_cast<acc_t>(clamp.high);
    if (stride == 1) {
      for (int64_t i = 0; i < count; ++i) q[i] = static_cast<scalar_t>(std::min(std::max(acc[i], low), high));
    } else {
      for (int64_t i = 0; i < count; ++i) q[i * stride] = static_cast<scalar_t>(std::min(std::max(acc[i], low), high));
    }
  } else if (stride == 1) {
    for (int64_t i = 0; i < count; ++i) q[i] = static_cast<scalar_t>(acc[i]);
  } else {
    for (int64_t i = 0; i < count; ++i) q[i * stride] = static_cast<scalar_t>(acc[i]);
  }
}

// One row of a region in one (sample, channel) plane: columns innermost (NCHW-like targets).
template <typename scalar_t>
inline void write_plane_row(const Resolved<scalar_t>& r, int64_t n, int64_t c, int64_t k, int64_t cols,
                            std::vector<at::opmath_type<scalar_t>>& acc, const Clamp& clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  std::fill(acc.begin(), acc.begin() + cols, r.constant ? static_cast<acc_t>(r.constant[c]) : acc_t(0));
  for (size_t s = 0; s < r.data.size(); ++s) {
    accumulate(acc.data(), r.data[s] + n * r.batch[s] + c * r.channel[s] + k * r.row[s], r.col[s], cols,
               r.weight[s]);
  }
  store(r.out + n * r.out_batch + c * r.out_channel + k * r.out_row, r.out_col, acc.data(), cols, clamp);
}

// One position of a region, every channel: channels innermost (channels_last targets).
template <typename scalar_t>
inline void write_position(const Resolved<scalar_t>& r, int64_t n, int64_t k, int64_t m, int64_t channels,
                           std::vector<at::opmath_type<scalar_t>>& acc, const Clamp& clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  if (r.constant) {
    for (int64_t c = 0; c < channels; ++c) acc[c] = static_cast<acc_t>(r.constant[c]);
  } else {
    std::fill(acc.begin(), acc.begin() + channels, acc_t(0));
  }
  for (size_t s = 0; s < r.data.size(); ++s) {
    accumulate(acc.data(), r.data[s] + n * r.batch[s] + k * r.row[s] + m * r.col[s], r.channel[s], channels,
               r.weight[s]);
  }
  store(r.out + n * r.out_batch + k * r.out_row + m * r.out_col, r.out_channel, acc.data(), channels, clamp);
}

template <typename scalar_t>
void write_all(const Plan& plan, const std::vector<at::Tensor>& targets, const std::vector<at::Tensor>& inputs,
               const std::vector<at::Tensor>& constants, const Clamp& clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t batch = targets[0].size(0), channels = targets[0].size(1);
  std::vector<Resolved<scalar_t>> regions;
  int64_t widest = 0, positions = 0;
  for (const Region& region : plan.regions) {
    regions.push_back(resolve<scalar_t>(region, targets, inputs, constants));
    widest = std::max(widest, region.cols);
    positions += region.rows * region.cols;
  }
  // The innermost loop runs along the smaller target stride: channels in channels_last, columns in NCHW.
  const at::Tensor& target = targets[0];
  if (target.stride(1) < target.stride(3)) {
    for (size_t i = 0; i < regions.size(); ++i) {
      const Region& region = plan.regions[i];
      const int64_t rows = region.rows, cols = region.cols;
      at::parallel_for(0, batch * rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols * channels)),
                       [&](int64_t begin, int64_t end) {
        std::vector<acc_t> acc(channels);
        for (int64_t index = begin; index < end; ++index) {
          for (int64_t m = 0; m < cols; ++m) write_position(regions[i], index / rows, index % rows, m, channels,
                                                            acc, clamp);
        }
      });
    }
  } else {
    // Plane by plane, every region of it while the plane is in cache: regions interleave within cache lines.
    at::parallel_for(0, batch * channels, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, positions)),
                     [&](int64_t begin, int64_t end) {
      std::vector<acc_t> acc(std::max<int64_t>(1, widest));
      for (int64_t index = begin; index < end; ++index) {
        const int64_t n = index / channels, c = index % channels;
        for (size_t i = 0; i < regions.size(); ++i) {
          for (int64_t k = 0; k < plan.regions[i].rows; ++k) {
            write_plane_row(regions[i], n, c, k, plan.regions[i].cols, acc, clamp);
          }
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
    write_all<scalar_t>(plan, targets, inputs, constants, bounds);
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
