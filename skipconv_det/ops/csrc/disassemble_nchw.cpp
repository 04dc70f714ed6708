// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// disassemble_nchw: the gradients of SkipConv's parts from its NCHW output gradient, one (sample, channel) plane at a
// time: each part's region copied out, then the fill's adjoint added, in the order of the PyTorch ops (region
// copies, then fill op by fill op and source by source), while the plane is in cache (see kernels.h).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include "kernels.h"

namespace skipconv_det {

void disassemble_nchw(const at::Tensor& grad, const std::vector<at::Tensor>& part_grads,
                      const std::vector<Region>& regions, const std::vector<AdjointAdd>& adds) {
  RECORD_FUNCTION("skipconv_det::disassemble_nchw", std::vector<c10::IValue>());
  TORCH_CHECK(grad.dim() == 4 && grad.device().is_cpu() && grad.is_contiguous(),
              "disassemble_nchw expects a contiguous (NCHW) 4D CPU gradient");
  check_parts(grad, part_grads, regions, true, "disassemble_nchw");
  for (const AdjointAdd& add : adds) {
    const Region &from = add.grad_region, &to = add.part_region;
    TORCH_CHECK(0 <= add.part && add.part < static_cast<int64_t>(part_grads.size()), "disassemble_nchw: bad part");
    TORCH_CHECK(from.channel_stop - from.channel_start == to.channel_stop - to.channel_start && from.rows == to.rows &&
                    from.cols == to.cols,
                "disassemble_nchw: an add's regions differ in size");
    check_region(part_grads[add.part], to, "disassemble_nchw: an add lies outside its part");
    check_region(grad, from, "skipconv_det: an op's target lies outside the output");
  }
  const int64_t batch = grad.size(0), channels = grad.size(1), height = grad.size(2), width = grad.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "disassemble_nchw", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* data = grad.const_data_ptr<scalar_t>();
    at::parallel_for(0, batch * channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t index = begin; index < end; ++index) {
        const int64_t n = index / channels, c = index % channels;
        const scalar_t* plane = data + index * height * width;
        for (size_t p = 0; p < part_grads.size(); ++p) {
          const Region& r = regions[p];
          if (c < r.channel_start || c >= r.channel_stop) continue;
          const at::Tensor& part = part_grads[p];
          scalar_t* dst = part.data_ptr<scalar_t>() + (n * part.size(1) + c - r.channel_start) * r.rows * r.cols;
          for (int64_t i = 0; i < r.rows; ++i) {
            const scalar_t* row = plane + (r.row_start + i * r.row_step) * width + r.col_start;
            for (int64_t k = 0; k < r.cols; ++k) dst[i * r.cols + k] = row[k * r.col_step];
          }
        }
        for (const AdjointAdd& add : adds) {
          const Region &from = add.grad_region, &to = add.part_region;
          const int64_t t = c - from.channel_start;
          if (t < 0 || t >= from.channel_stop - from.channel_start) continue;
          const at::Tensor& part = part_grads[add.part];
          const int64_t part_h = part.size(2), part_w = part.size(3);
          scalar_t* dst = part.data_ptr<scalar_t>() + (n * part.size(1) + to.channel_start + t) * part_h * part_w;
          const acc_t weight = static_cast<acc_t>(add.weight);
          for (int64_t i = 0; i < from.rows; ++i) {
            scalar_t* out_row = dst + (to.row_start + i * to.row_step) * part_w + to.col_start;
            const scalar_t* in_row = plane + (from.row_start + i * from.row_step) * width + from.col_start;
            for (int64_t k = 0; k < from.cols; ++k) {
              // As the PyTorch ops: the weighted gradient rounded to the dtype, then added.
              const scalar_t weighted = static_cast<scalar_t>(weight * static_cast<acc_t>(in_row[k * from.col_step]));
              out_row[k * to.col_step] =
                  static_cast<scalar_t>(static_cast<acc_t>(out_row[k * to.col_step]) + static_cast<acc_t>(weighted));
            }
          }
        }
      }
    });
  });
}

}  // namespace skipconv_det
