// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// The records that SkipConv's Python code builds for its CPU kernels (skipconv_det/ops/_kernels.py), by field name:
// module.cpp binds each field under the name it has here. And the checks every kernel makes of them.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace skipconv_det {

// A strided block of a 4D tensor: channels [channel_start, channel_stop), rows row_start + k * row_step
// (k < rows), columns col_start + k * col_step (k < cols).
struct Region {
  int64_t channel_start, channel_stop, row_start, rows, row_step, col_start, cols, col_step;
};

// A fill op (skipconv_det/ops/fill.py, FillOp) on one output: each position of `target` takes `weight` times the
// sum of the positions at `offsets` (rows, columns) from it; with no offsets, 0 or the folded shift.
struct FillRecord {
  Region target;
  std::vector<std::pair<int64_t, int64_t>> offsets;
  double weight;
};

// One add of the fill's adjoint: the gradient of part `part` at `part_region` += `weight` times the output gradient
// at `grad_region` (the targets of a fill op that read those positions of the part). Both regions hold the same
// number of channels, rows and columns.
struct AdjointAdd {
  int64_t part;
  Region grad_region, part_region;
  double weight;
};

// Raises `message` unless `region` lies inside `tensor`.
inline void check_region(const at::Tensor& tensor, const Region& r, const char* message) {
  TORCH_CHECK(0 <= r.channel_start && r.channel_start <= r.channel_stop && r.channel_stop <= tensor.size(1) &&
                  r.row_start >= 0 && r.col_start >= 0 && r.rows >= 0 && r.cols >= 0 &&
                  (r.rows == 0 || r.row_start + (r.rows - 1) * r.row_step < tensor.size(2)) &&
                  (r.cols == 0 || r.col_start + (r.cols - 1) * r.col_step < tensor.size(3)),
              message);
}

// Each part (a lattice's results, or their gradient) is a 4D CPU tensor of out's dtype and of its region's shape,
// and its region lies inside out.
inline void check_parts(const at::Tensor& out, at::TensorList parts, const std::vector<Region>& regions,
                        bool contiguous, const char* kernel) {
  TORCH_CHECK(regions.size() == parts.size(), kernel, ": one region per part");
  for (size_t p = 0; p < parts.size(); ++p) {
    const Region& r = regions[p];
    const at::Tensor& part = parts[p];
    TORCH_CHECK(part.dim() == 4 && part.device().is_cpu() && (!contiguous || part.is_contiguous()) &&
                    part.scalar_type() == out.scalar_type() && part.size(0) == out.size(0) &&
                    part.size(1) == r.channel_stop - r.channel_start && part.size(2) == r.rows &&
                    part.size(3) == r.cols,
                kernel, ": a part does not match its region");
    check_region(out, r, "skipconv_det: an op's target lies outside the output");
  }
}

}  // namespace skipconv_det
