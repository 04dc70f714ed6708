// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// SkipConv's fill (skipconv_det/ops/fill.py) in one pass per fill op: each skipped position is written once with
// the weighted sum of its sources, where the PyTorch ops write the target once per source and once more for the
// weight. The sums run in the order of those ops (first source, then each next one, then times the weight) in
// the dtype's opmath type, so float32 and float64 results are bit for bit those of the PyTorch ops.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

namespace {

// One op of the plan: channels [c0, c1), rows r0 + k * row_step (k < rows), columns col0 + k * col_step
// (k < cols), and the (row, column) offsets of its sources.
struct FillOp {
  int64_t c0, c1, r0, rows, row_step, col0, cols, col_step;
  std::vector<int64_t> sources;  // element offsets of the sources from the target
  double weight;
};

constexpr int64_t kHeader = 9;  // c0, c1, r0, rows, row_step, col0, cols, col_step, number of sources

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

template <typename scalar_t>
void fill_op(scalar_t* data, const at::IntArrayRef strides, int64_t batch, const FillOp& op) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t sn = strides[0], sc = strides[1], sh = strides[2], sw = strides[3];
  const int64_t channels = op.c1 - op.c0;
  const acc_t weight = static_cast<acc_t>(op.weight);
  // The innermost loop runs along the smaller stride: channels in channels_last, columns in NCHW.
  const bool channels_inner = sc < sw;
  const int64_t outer = channels_inner ? batch * op.rows * op.cols : batch * channels * op.rows;
  const int64_t inner = channels_inner ? channels : op.cols;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, inner));
  at::parallel_for(0, outer, grain, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      if (channels_inner) {
        const int64_t col = index % op.cols, rest = index / op.cols;
        const int64_t row = rest % op.rows, n = rest / op.rows;
        scalar_t* dst = data + n * sn + op.c0 * sc + (op.r0 + row * op.row_step) * sh +
                        (op.col0 + col * op.col_step) * sw;
        fill_run(dst, inner, sc, op.sources, weight);
      } else {
        const int64_t row = index % op.rows, rest = index / op.rows;
        const int64_t c = rest % channels, n = rest / channels;
        scalar_t* dst = data + n * sn + (op.c0 + c) * sc + (op.r0 + row * op.row_step) * sh + op.col0 * sw;
        fill_run(dst, inner, op.col_step * sw, op.sources, weight);
      }
    }
  });
}

void apply_fill_(at::Tensor out, at::IntArrayRef plan, c10::ArrayRef<double> weights) {
  TORCH_CHECK(out.dim() == 4, "apply_fill_ expects a 4D output, got ", out.dim(), " dimensions");
  TORCH_CHECK(out.device().is_cpu(), "apply_fill_ runs on the CPU");
  const at::IntArrayRef strides = out.strides();
  std::vector<FillOp> ops;
  for (size_t at = 0, index = 0; at < plan.size(); ++index) {
    TORCH_CHECK(at + kHeader <= plan.size() && index < weights.size(), "apply_fill_: truncated plan");
    const int64_t* h = plan.data() + at;
    FillOp op{h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], {}, weights[index]};
    const int64_t num_sources = h[8];
    TORCH_CHECK(num_sources > 0 && at + kHeader + 2 * num_sources <= plan.size(), "apply_fill_: bad plan");
    for (int64_t s = 0; s < num_sources; ++s) {
      op.sources.push_back(h[kHeader + 2 * s] * strides[2] + h[kHeader + 2 * s + 1] * strides[3]);
    }
    TORCH_CHECK(0 <= op.c0 && op.c0 <= op.c1 && op.c1 <= out.size(1) && op.r0 >= 0 && op.col0 >= 0 &&
                    op.r0 + (op.rows - 1) * op.row_step < out.size(2) &&
                    op.col0 + (op.cols - 1) * op.col_step < out.size(3),
                "apply_fill_: an op's target lies outside the output");
    ops.push_back(std::move(op));
    at += kHeader + 2 * num_sources;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "apply_fill_", [&] {
    for (const FillOp& op : ops) {
      if (op.rows > 0 && op.cols > 0 && op.c1 > op.c0) {
        fill_op<scalar_t>(out.data_ptr<scalar_t>(), strides, out.size(0), op);
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY(skipconv_det, m) {
  m.def("apply_fill_(Tensor(a!) out, int[] plan, float[] weights) -> ()");
}

TORCH_LIBRARY_IMPL(skipconv_det, CPU, m) {
  m.impl("apply_fill_", &apply_fill_);
}
