// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// SkipConv's CPU kernels, one file each, for eager PyTorch (skipconv_det/ops/_kernels.py calls them):
// - fill_in_place (fill_in_place.cpp): the fill, each skipped position written once with the weighted sum of its
//   sources, where the PyTorch ops write the target once per source and once more for the weight;
// - assemble_nchw (assemble_nchw.cpp): the whole NCHW output, the parts into their regions and then the fill, one
//   (sample, channel) plane at a time;
// - disassemble_nchw (disassemble_nchw.cpp): its backward, the parts' gradients (their regions of the output
//   gradient, then the fill's adjoint), one plane at a time.
// Every sum runs in the order of the PyTorch ops it replaces, in the dtype's opmath type, so float32 and float64
// results are bit for bit theirs.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "records.h"

namespace skipconv_det {

void fill_in_place(at::Tensor out, const std::vector<FillRecord>& fill_plan);

void assemble_nchw(at::Tensor out, const std::vector<at::Tensor>& parts, const std::vector<Region>& regions,
                   const std::vector<FillRecord>& fill_plan, const std::optional<at::Tensor>& shift);

void disassemble_nchw(const at::Tensor& grad, const std::vector<at::Tensor>& part_grads,
                      const std::vector<Region>& regions, const std::vector<AdjointAdd>& adds);

}  // namespace skipconv_det
