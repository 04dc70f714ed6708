// Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
//
// SkipConv's writes of its output in eager PyTorch on the CPU (skipconv_det/ops/fill.py and _autograd.py):
// - apply_fill_: the fill in one pass per fill op, each skipped position written once with the weighted sum of
//   its sources, where the PyTorch ops write the target once per source and once more for the weight;
// - assemble_ and disassemble_: in NCHW, the whole output (the parts into their regions, then the fill) and, in
//   backward, the parts' gradients (their regions, then the fill's adjoint), one (sample, channel) plane at a time.
// Every sum runs in the order of the PyTorch ops it replaces, in the dtype's opmath type, so float32 and float64
// results are bit for bit theirs.
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

void check_target(const at::Tensor& out, int64_t c0, int64_t c1, int64_t r0, int64_t rows, int64_t row_step,
                  int64_t col0, int64_t cols, int64_t col_step) {
  TORCH_CHECK(0 <= c0 && c0 <= c1 && c1 <= out.size(1) && r0 >= 0 && col0 >= 0 && rows >= 0 && cols >= 0 &&
                  (rows == 0 || r0 + (rows - 1) * row_step < out.size(2)) &&
                  (cols == 0 || col0 + (cols - 1) * col_step < out.size(3)),
              "skipconv_det: an op's target lies outside the output");
}

std::vector<FillOp> parse_plan(at::IntArrayRef plan, c10::ArrayRef<double> weights, const at::Tensor& out,
                               bool allow_constant) {
  const at::IntArrayRef strides = out.strides();
  std::vector<FillOp> ops;
  for (size_t at = 0, index = 0; at < plan.size(); ++index) {
    TORCH_CHECK(at + kHeader <= plan.size() && index < weights.size(), "skipconv_det: truncated fill plan");
    const int64_t* h = plan.data() + at;
    FillOp op{h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], {}, weights[index]};
    const int64_t num_sources = h[8];
    TORCH_CHECK((num_sources > 0 || allow_constant) && at + kHeader + 2 * num_sources <= plan.size(),
                "skipconv_det: bad fill plan");
    for (int64_t s = 0; s < num_sources; ++s) {
      op.sources.push_back(h[kHeader + 2 * s] * strides[2] + h[kHeader + 2 * s + 1] * strides[3]);
    }
    check_target(out, op.c0, op.c1, op.r0, op.rows, op.row_step, op.col0, op.cols, op.col_step);
    ops.push_back(std::move(op));
    at += kHeader + 2 * num_sources;
  }
  return ops;
}

void apply_fill_(at::Tensor out, at::IntArrayRef plan, c10::ArrayRef<double> weights) {
  TORCH_CHECK(out.dim() == 4, "apply_fill_ expects a 4D output, got ", out.dim(), " dimensions");
  TORCH_CHECK(out.device().is_cpu(), "apply_fill_ runs on the CPU");
  const std::vector<FillOp> ops = parse_plan(plan, weights, out, false);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "apply_fill_", [&] {
    for (const FillOp& op : ops) {
      if (op.rows > 0 && op.cols > 0 && op.c1 > op.c0) {
        fill_op<scalar_t>(out.data_ptr<scalar_t>(), out.strides(), out.size(0), op);
      }
    }
  });
}

// One region of the output that a part (a lattice's results) holds: channels [c0, c1), rows r0 + k * row_step
// (k < rows), columns col0 + k * col_step (k < cols).
constexpr int64_t kRegion = 8;

// Each part (a lattice's results, or their gradient) is a 4D CPU tensor of out's dtype and of its region's shape,
// and its region lies inside out.
void check_parts(const at::Tensor& out, at::TensorList parts, at::IntArrayRef regions, bool contiguous,
                 const char* op) {
  TORCH_CHECK(regions.size() == kRegion * parts.size(), op, ": one region per part");
  for (size_t p = 0; p < parts.size(); ++p) {
    const int64_t* r = regions.data() + kRegion * p;
    const at::Tensor& part = parts[p];
    TORCH_CHECK(part.dim() == 4 && part.device().is_cpu() && (!contiguous || part.is_contiguous()) &&
                    part.scalar_type() == out.scalar_type() && part.size(0) == out.size(0) &&
                    part.size(1) == r[1] - r[0] && part.size(2) == r[3] && part.size(3) == r[6],
                op, ": a part does not match its region");
    check_target(out, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
  }
}

template <typename scalar_t>
void assemble_plane(scalar_t* plane, int64_t n, int64_t c, const int64_t width, const at::TensorList parts,
                    at::IntArrayRef regions, const std::vector<FillOp>& ops, const scalar_t* shift) {
  using acc_t = at::opmath_type<scalar_t>;
  for (size_t p = 0; p < parts.size(); ++p) {
    const int64_t* r = regions.data() + kRegion * p;
    if (c < r[0] || c >= r[1]) continue;
    const at::Tensor& part = parts[p];
    const scalar_t* src = part.const_data_ptr<scalar_t>() + n * part.stride(0) + (c - r[0]) * part.stride(1);
    const int64_t sh = part.stride(2), sw = part.stride(3);
    for (int64_t i = 0; i < r[3]; ++i) {
      scalar_t* dst = plane + (r[2] + i * r[4]) * width + r[5];
      const scalar_t* row = src + i * sh;
      for (int64_t k = 0; k < r[6]; ++k) dst[k * r[7]] = row[k * sw];
    }
  }
  for (const FillOp& op : ops) {
    if (c < op.c0 || c >= op.c1) continue;
    for (int64_t i = 0; i < op.rows; ++i) {
      scalar_t* dst = plane + (op.r0 + i * op.row_step) * width + op.col0;
      if (op.sources.empty()) {  // positions without a source: 0, or the folded shift
        const scalar_t value = shift == nullptr ? scalar_t(0) : shift[c];
        for (int64_t k = 0; k < op.cols; ++k) dst[k * op.col_step] = value;
      } else {
        fill_run(dst, op.cols, op.col_step, op.sources, static_cast<acc_t>(op.weight));
      }
    }
  }
}

// SkipConv's output in NCHW, one (sample, channel) plane at a time: the parts copied into their regions, then the
// fill, while the plane is in cache. Element-strided copies and fills over the whole output would each touch
// every cache line of it again.
void assemble_(at::Tensor out, at::TensorList parts, at::IntArrayRef regions, at::IntArrayRef plan,
               c10::ArrayRef<double> weights, const std::optional<at::Tensor>& shift) {
  TORCH_CHECK(out.dim() == 4 && out.device().is_cpu() && out.is_contiguous(),
              "assemble_ expects a contiguous (NCHW) 4D CPU output");
  check_parts(out, parts, regions, false, "assemble_");
  const std::vector<FillOp> ops = parse_plan(plan, weights, out, true);
  std::optional<at::Tensor> shift_values;
  if (shift.has_value()) {
    shift_values = shift->to(out.scalar_type()).contiguous();
    TORCH_CHECK(shift_values->numel() == out.size(1), "assemble_: one shift per channel");
  }
  const int64_t batch = out.size(0), channels = out.size(1), height = out.size(2), width = out.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "assemble_", [&] {
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

// One add of the fill's adjoint: part += weight * the output gradient at the op's targets that this part's
// positions fed. Channels: part channel pc0 + t, op channel gc0 + t (t < channels), output channel op_c0 + gc0 + t.
// Rows: part row pr0 + t * pr_step, output row op_r0 + op_r_step * (gr0 + t * gr_step) (t < rows); columns alike.
struct AdjointAdd {
  int64_t part, pc0, gc0, channels, pr0, pr_step, gr0, gr_step, rows, pq0, pq_step, gq0, gq_step, cols, op_c0,
      op_r0, op_r_step, op_q0, op_q_step;
  double weight;
};
constexpr int64_t kAdd = 19;

// The gradients of SkipConv's parts from its NCHW output gradient, one (sample, channel) plane at a time: each
// part's region copied out, then the fill's adjoint added, in the order of the PyTorch ops (region copies, then
// op by op and source by source), while the plane is in cache.
void disassemble_(at::Tensor grad, at::TensorList part_grads, at::IntArrayRef regions, at::IntArrayRef adds,
                  c10::ArrayRef<double> weights) {
  TORCH_CHECK(grad.dim() == 4 && grad.device().is_cpu() && grad.is_contiguous(),
              "disassemble_ expects a contiguous (NCHW) 4D CPU gradient");
  check_parts(grad, part_grads, regions, true, "disassemble_");
  TORCH_CHECK(adds.size() == kAdd * weights.size(), "disassemble_: one weight per add");
  std::vector<AdjointAdd> plan;
  for (size_t a = 0; a < weights.size(); ++a) {
    const int64_t* v = adds.data() + kAdd * a;
    AdjointAdd add{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14],
                   v[15], v[16], v[17], v[18], weights[a]};
    TORCH_CHECK(0 <= add.part && add.part < static_cast<int64_t>(part_grads.size()), "disassemble_: bad part");
    const at::Tensor& part = part_grads[add.part];
    TORCH_CHECK(add.pc0 >= 0 && add.pc0 + add.channels <= part.size(1) && add.pr0 >= 0 &&
                    (add.rows == 0 || add.pr0 + (add.rows - 1) * add.pr_step < part.size(2)) && add.pq0 >= 0 &&
                    (add.cols == 0 || add.pq0 + (add.cols - 1) * add.pq_step < part.size(3)),
                "disassemble_: an add lies outside its part");
    check_target(grad, add.op_c0 + add.gc0, add.op_c0 + add.gc0 + add.channels,
                 add.op_r0 + add.op_r_step * add.gr0, add.rows, add.op_r_step * add.gr_step,
                 add.op_q0 + add.op_q_step * add.gq0, add.cols, add.op_q_step * add.gq_step);
    plan.push_back(add);
  }
  const int64_t batch = grad.size(0), channels = grad.size(1), height = grad.size(2), width = grad.size(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "disassemble_", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* data = grad.const_data_ptr<scalar_t>();
    at::parallel_for(0, batch * channels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t index = begin; index < end; ++index) {
        const int64_t n = index / channels, c = index % channels;
        const scalar_t* plane = data + index * height * width;
        for (size_t p = 0; p < part_grads.size(); ++p) {
          const int64_t* r = regions.data() + kRegion * p;
          if (c < r[0] || c >= r[1]) continue;
          const at::Tensor& part = part_grads[p];
          scalar_t* dst = part.data_ptr<scalar_t>() + (n * part.size(1) + c - r[0]) * r[3] * r[6];
          for (int64_t i = 0; i < r[3]; ++i) {
            const scalar_t* row = plane + (r[2] + i * r[4]) * width + r[5];
            for (int64_t k = 0; k < r[6]; ++k) dst[i * r[6] + k] = row[k * r[7]];
          }
        }
        for (const AdjointAdd& add : plan) {
          const int64_t t = c - add.op_c0 - add.gc0;
          if (t < 0 || t >= add.channels) continue;
          const at::Tensor& part = part_grads[add.part];
          const int64_t part_h = part.size(2), part_w = part.size(3);
          scalar_t* dst = part.data_ptr<scalar_t>() + (n * part.size(1) + add.pc0 + t) * part_h * part_w;
          const acc_t weight = static_cast<acc_t>(add.weight);
          for (int64_t i = 0; i < add.rows; ++i) {
            scalar_t* out_row = dst + (add.pr0 + i * add.pr_step) * part_w + add.pq0;
            const scalar_t* in_row = plane + (add.op_r0 + add.op_r_step * (add.gr0 + i * add.gr_step)) * width +
                                     add.op_q0 + add.op_q_step * add.gq0;
            const int64_t in_step = add.op_q_step * add.gq_step;
            for (int64_t k = 0; k < add.cols; ++k) {
              // As the PyTorch ops: the weighted gradient rounded to the dtype, then added.
              const scalar_t weighted = static_cast<scalar_t>(weight * static_cast<acc_t>(in_row[k * in_step]));
              out_row[k * add.pq_step] = static_cast<scalar_t>(static_cast<acc_t>(out_row[k * add.pq_step]) +
                                                               static_cast<acc_t>(weighted));
            }
          }
        }
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY(skipconv_det, m) {
  m.def("apply_fill_(Tensor(a!) out, int[] plan, float[] weights) -> ()");
  m.def("assemble_(Tensor(a!) out, Tensor[] parts, int[] regions, int[] plan, float[] weights, Tensor? shift) -> ()");
  m.def("disassemble_(Tensor grad, Tensor(a!)[] part_grads, int[] regions, int[] adds, float[] weights) -> ()");
}

TORCH_LIBRARY_IMPL(skipconv_det, CPU, m) {
  m.impl("apply_fill_", &apply_fill_);
  m.impl("assemble_", &assemble_);
  m.impl("disassemble_", &disassemble_);
}
