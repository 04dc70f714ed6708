// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// fill_in_place: the fill of an output whose kept positions are computed, any layout (see kernels.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>

#include "fill_run.h"
#include "kernels.h"

namespace skipconv_det {
namespace {

template <typename scalar_t>
void fill_op(scalar_t* data, const at::IntArrayRef strides, int64_t batch, const StridedFill& op) {
  using acc_t = at::opmath_type<scalar_t>;
  const Region& t = op.target;
  const int64_t sn = strides[0], sc = strides[1], sh = strides[2], sw = strides[3];
  const int64_t channels = t.channel_stop - t.channel_start;
  const acc_t weight = static_cast<acc_t>(op.weight);
  // The innermost loop runs along the smaller stride: channels in channels_last, columns in NCHW.
  const bool channels_inner = sc < sw;
  const int64_t outer = channels_inner ? batch * t.rows * t.cols : batch * channels * t.rows;
  const int64_t inner = channels_inner ? channels : t.cols;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, inner));
  at::parallel_for(0, outer, grain, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      if (channels_inner) {
        const int64_t col = index % t.cols, rest = index / t.cols;
        const int64_t row = rest % t.rows, n = rest / t.rows;
        scalar_t* dst = data + n * sn + t.channel_start * sc + (t.row_start + row * t.row_step) * sh +
                        (t.col_start + col * t.col_step) * sw;
        fill_run(dst, inner, sc, op.sources, weight);
      } else {
        const int64_t row = index % t.rows, rest = index / t.rows;
        const int64_t c = rest % channels, n = rest / channels;
        scalar_t* dst = data + n * sn + (t.channel_start + c) * sc + (t.row_start + row * t.row_step) * sh +
                        t.col_start * sw;
        fill_run(dst, inner, t.col_step * sw, op.sources, weight);
      }
    }
  });
}

}  // namespace

void fill_in_place(at::Tensor out, const std::vector<FillRecord>& fill_plan) {
  RECORD_FUNCTION("skipconv_det::fill_in_place", std::vector<c10::IValue>());
  TORCH_CHECK(out.dim() == 4, "fill_in_place expects a 4D output, got ", out.dim(), " dimensions");
  TORCH_CHECK(out.device().is_cpu(), "fill_in_place runs on the CPU");
  const std::vector<StridedFill> ops = strided_fill_plan(fill_plan, out, false);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "fill_in_place", [&] {
    for (const StridedFill& op : ops) {
      const Region& t = op.target;
      if (t.rows > 0 && t.cols > 0 && t.channel_stop > t.channel_start) {
        fill_op<scalar_t>(out.data_ptr<scalar_t>(), out.strides(), out.size(0), op);
      }
    }
  });
}

}  // namespace skipconv_det
