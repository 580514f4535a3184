#include "nn/weights_8bit.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "nn/checkpoint.h"

namespace dt::nn {
namespace {

constexpr double kInt8Max = 127, kE4m3Max = 448;

// The codes' values in `dtype`, without their row scales (already decoded values pass through).
at::Tensor code_values(const at::Tensor& codes, c10::ScalarType dtype) {
  if (codes.is_floating_point()) return codes.to(dtype);
  return codes.scalar_type() == at::kChar ? codes.to(dtype) : e4m3_decode(codes, dtype);
}

// y · diag(scale), in place in y's dtype.
at::Tensor scale_columns(const at::Tensor& y, const at::Tensor& scale) { return y.mul_(scale.to(y.scalar_type())); }

class Linear8bit : public torch::autograd::Function<Linear8bit> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& codes,
                            const at::Tensor& scale) {
    const at::Tensor values = code_values(codes, x.scalar_type());
    // A block recomputed under gradient checkpointing runs its backward right after: keeping the
    // decoded values for it (one block's worth, briefly) saves a third decode per step. Elsewhere
    // the codes are kept, so a plain backward never holds every decoded weight at once.
    ctx->save_for_backward({recomputing_block() ? values : codes, scale});
    return scale_columns(at::linear(x, values), scale);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad) {
    if (!ctx->needs_input_grad(0)) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& g = grad[0];
    // dL/dx = (g · diag(s)) · value(q): the codes are decoded again rather than kept decoded.
    return {at::matmul(g * saved[1].to(g.scalar_type()), code_values(saved[0], g.scalar_type())), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor e4m3_decode(const at::Tensor& codes, c10::ScalarType dtype) {
  return decode_float8(codes, /*e4m3=*/true, dtype);
}

at::Tensor e4m3_encode(const at::Tensor& x) {
  const at::Tensor x32 = x.to(at::kFloat);
  if (!at::isfinite(x32).all().item<bool>()) throw Error("non-finite values cannot be stored as float8");
  // The 127 non-negative finite values in code order (which is magnitude order) and the midpoints
  // between neighbours: the nearest code of |x| is the number of midpoints below it.
  const at::Tensor values = e4m3_decode(at::arange(127, at::kByte), at::kFloat);
  const at::Tensor midpoints = (values.slice(0, 1) + values.slice(0, 0, -1)) * 0.5;
  const at::Tensor magnitude = x32.abs().flatten();
  at::Tensor code = at::searchsorted(midpoints, magnitude, /*out_int32=*/true);
  // On a midpoint the count picks the lower neighbour; ties go to the even code.
  const at::Tensor on_midpoint = midpoints.index_select(0, code.clamp_max(125)).eq(magnitude) & code.lt(126);
  code.add_(on_midpoint & code.remainder(2).eq(1));
  code.bitwise_or_(x32.flatten().lt(0).to(at::kInt) * 0x80);
  return code.to(at::kByte).view(x.sizes());
}

RowQuantized quantize_rows(const at::Tensor& weight, WeightFormat format) {
  if (weight.dim() != 2) throw Error("8-bit weights must be matrices");
  if (format == WeightFormat::dense) throw Error("quantize_rows needs int8 or fp8");
  const double limit = format == WeightFormat::int8 ? kInt8Max : kE4m3Max;
  const int64_t rows = weight.size(0), cols = std::max<int64_t>(weight.size(1), 1);
  RowQuantized out;
  out.codes = at::empty(weight.sizes(), weight.options().dtype(format == WeightFormat::int8 ? at::kChar : at::kByte));
  out.scale = at::empty({rows}, weight.options().dtype(at::kFloat));
  // A few million elements at a time: the float32 temporaries of the largest matrix of a real model
  // would otherwise cost several times its 8-bit size while the model loads.
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / cols);
  for (int64_t r = 0; r < rows; r += chunk) {
    const int64_t n = std::min(chunk, rows - r);
    const at::Tensor w = weight.narrow(0, r, n).to(at::kFloat);
    if (!at::isfinite(w).all().item<bool>()) throw Error("the weight holds non-finite values");
    const at::Tensor amax = w.abs().amax(1);
    const at::Tensor scale = at::where(amax.gt(0), amax / limit, at::ones_like(amax));
    const at::Tensor scaled = w / scale.unsqueeze(1);
    out.scale.narrow(0, r, n).copy_(scale);
    out.codes.narrow(0, r, n).copy_(format == WeightFormat::int8 ? scaled.round_().clamp_(-kInt8Max, kInt8Max).to(at::kChar)
                                                                  : e4m3_encode(scaled));
  }
  return out;
}

at::Tensor dequantize_rows(const at::Tensor& codes, const at::Tensor& scale) {
  return code_values(codes, at::kFloat) * scale.to(at::kFloat).unsqueeze(1);
}

at::Tensor linear_8bit(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& scale) {
  return Linear8bit::apply(x, codes, scale.to(x.device(), at::kFloat));
}

}  // namespace dt::nn
