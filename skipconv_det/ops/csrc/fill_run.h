// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// The fill's inner loop, shared by fill_in_place.cpp and assemble_nchw.cpp: a run of skipped positions, each written
// once with the weighted sum of its sources, in the order of the PyTorch ops it replaces
// (skipconv_det/ops/_fill_in_place.py) and in the dtype's opmath type, so float32 and float64 results are bit for
// bit theirs.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <cstdint>
#include <vector>

#include "records.h"

namespace skipconv_det {

// A FillRecord on one tensor: its sources as element offsets from the target, for that tensor's strides.
struct StridedFill {
  Region target;
  std::vector<int64_t> sources;
  double weight;
};

// The records on `out`, checked: targets inside out, and sources unless `allow_constant`.
inline std::vector<StridedFill> strided_fill_plan(const std::vector<FillRecord>& fill_plan,
                                                  const at::Tensor& out, bool allow_constant) {
  const at::IntArrayRef strides = out.strides();
  std::vector<StridedFill> strided;
  strided.reserve(fill_plan.size());
  for (const FillRecord& record : fill_plan) {
    TORCH_CHECK(!record.offsets.empty() || allow_constant, "skipconv_det: bad fill plan");
    check_region(out, record.target, "skipconv_det: an op's target lies outside the output");
    StridedFill op{record.target, {}, record.weight};
    for (const auto& offset : record.offsets) {
      op.sources.push_back(offset.first * strides[2] + offset.second * strides[3]);
    }
    strided.push_back(std::move(op));
  }
  return strided;
}

template <typename scalar_t>
inline void fill_run(scalar_t* dst, int64_t count, int64_t step, const std::vector<int64_t>& sources,
                     at::opmath_type<scalar_t> weight) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_sources = static_cast<int64_t>(sources.size());
  if (num_sources == 4) {
    const int64_t s0 = sources[0], s1 = sources[1], s2 = sources[2], s3 = sources[3];
    for (int64_t k = 0; k < count; ++k) {
      scalar_t* p = dst + k * step;
      acc_t total = static_cast<acc_t>(p[s0]) + static_cast<acc_t>(p[s1]);
      total += static_cast<acc_t>(p[s2]);
      total += static_cast<acc_t>(p[s3]);
      p[0] = static_cast<scalar_t>(total * weight);
    }
  } else if (num_sources == 2) {
    const int64_t s0 = sources[0], s1 = sources[1];
    for (int64_t k = 0; k < count; ++k) {
      scalar_t* p = dst + k * step;
      p[0] = static_cast<scalar_t>((static_cast<acc_t>(p[s0]) + static_cast<acc_t>(p[s1])) * weight);
    }
  } else if (num_sources == 1) {  // a copy, as the PyTorch op does (no multiply by the weight 1)
    const int64_t s0 = sources[0];
    for (int64_t k = 0; k < count; ++k) {
      scalar_t* p = dst + k * step;
      p[0] = p[s0];
    }
  } else {
    for (int64_t k = 0; k < count; ++k) {
      scalar_t* p = dst + k * step;
      acc_t total = static_cast<acc_t>(p[sources[0]]);
      for (int64_t s = 1; s < num_sources; ++s) total += static_cast<acc_t>(p[sources[s]]);
      p[0] = static_cast<scalar_t>(total * weight);
    }
  }
}

}  // namespace skipconv_det
