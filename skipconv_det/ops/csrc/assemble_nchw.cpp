// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// assemble_nchw: SkipConv's output in NCHW, one (sample, channel) plane at a time: the parts copied into their
// regions, then the fill, while the plane is in cache. Element-strided copies and fills over the whole output would
// each touch every cache line of it again (see kernels.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include "fill_run.h"
#include "kernels.h"

namespace skipconv_det {
namespace {

template <typename scalar_t>
void assemble_plane(scalar_t* plane, int64_t n, int64_t c, const int64_t width, const std::vector<at::Tensor>& parts,
                    const std::vector<Region>& regions, const std::vector<StridedFill>& ops, const scalar_t* shift) {
  using acc_t = at::opmath_type<scalar_t>;
  for (size_t p = 0; p < parts.size(); ++p) {
    const Region& r = regions[p];
    if (c < r.channel_start || c >= r.channel_stop) continue;
    const at::Tensor& part = parts[p];
    const scalar_t* src =
        part.const_data_ptr<scalar_t>() + n * part.stride(0) + (c - r.channel_start) * part.stride(1);
    const int64_t sh = part.stride(2), sw = part.stride(3);
    for (int64_t i = 0; i < r.rows; ++i) {
      scalar_t* dst = plane + (r.row_start + i * r.row_step) * width + r.col_start;
      const scalar_t* row = src + i * sh;
      for (int64_t k = 0; k < r.cols; ++k) dst[k * r.col_step] = row[k * sw];
    }
  }
  for (const StridedFill& op : ops) {
    const Region& t = op.target;
    if (c < t.channel_start || c >= t.channel_stop) continue;
    for (int64_t i = 0; i < t.rows; ++i) {
      scalar_t* dst = plane + (t.row_start + i * t.row_step) * width + t.col_start;
      if (op.sources.empty()) {  // positions without a source: 0, or the folded shift
        const scalar_t value = shift == nullptr ? scalar_t(0) : shift[c];
        for (int64_t k = 0; k < t.cols; ++k) dst[k * t.col_step] = value;
      } else {
        fill_run(dst, t.cols, t.col_step, op.sources, static_cast<acc_t>(op.weight));
      }
    }
  }
}

}  // namespace

void assemble_nchw(at::Tensor out, const std::vector<at::Tensor>& parts, const std::vector<Region>& regions,
                   const std::vector<FillRecord>& fill_plan, const std::optional<at::Tensor>& shift) {
  RECORD_FUNCTION("skipconv_det::assemble_nchw", std::vector<c10::IValue>());
  TORCH_CHECK(out.dim() == 4 && out.device().is_cpu() && out.is_contiguous(),
              "assemble_nchw expects a contiguous (NCHW) 4D CPU output");
  check_parts(out, parts, regions, false, "assemble_nchw");
  const std::vector<StridedFill> ops = strided_fill_plan(fill_plan, out, true);
  std::optional<at::Tensor> shift_values;
  if (shift.has_value()) {
    shift_values = shift->to(out.scalar_type()).contiguous();
    TORCH_CHECK(shift_values->numel() == out.size(1), "assemble_nchw: one shift per channel");
  }
  const int64_t batch = out.size(0), channels = out.size(1), height = out.size(2), width = out.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "assemble_nchw", [&] {
    scalar_t* data = out.data_ptr<scalar_t>();
    const scalar_t* shift_data = shift_values.has_value() ? shift_values->const_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, batch * channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t index = begin; index < end; ++index) {
        const int64_t n = index / channels, c = index % channels;
        assemble_plane(data + index * height * width, n, c, width, parts, regions, ops, shift_data);
      }
    });
  });
}

}  // namespace skipconv_det
