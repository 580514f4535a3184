#include "nn/rms_norm.h"

#include <cmath>
#include <cstring>

#include <ATen/Parallel.h>
#include <torch/torch.h>

namespace dt::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The formula as the references write it; float32 takes it always (the shipped worlds were
// trained with it and rebuild bit for bit).
at::Tensor rms_norm_formula(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor x32 = x.to(at::kFloat);
  at::Tensor normed = x32 * torch::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return normed.to(x.scalar_type()) * weight;
}

// bf16 as the bit pattern's upper half; round to nearest even, NaN kept quiet. Written out (not
// c10::BFloat16) so that the loops below vectorise.
inline float from_bf16(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return nan ? uint16_t{0x7FC0} : static_cast<uint16_t>(rounded);
}

// Σ a_i·b_i in eight running sums (a fixed order, whatever the thread count), so it vectorises.
float dot(const float* a, const float* b, int64_t n) {
  float lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lanes[j] += a[i + j] * b[i + j];
  float sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// bf16 on the CPU in one pass per row each way instead of the formula's eight element-wise passes
// and their backward, with the formula's roundings: the normalised row rounded to bf16, then
// multiplied by the (frozen) bf16 weight and rounded again. A fifth of a bf16 training step went to
// the formula's passes (bench/RESULTS.md).
struct FusedRmsNorm : torch::autograd::Function<FusedRmsNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
    const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
    const int64_t dim = x.size(-1), rows = x.numel() / dim;
    at::Tensor y = at::empty_like(x), inverse_rms = at::empty({rows}, x.options().dtype(at::kFloat));
    const auto* xs = reinterpret_cast<const uint16_t*>(x.data_ptr());
    const auto* ws = reinterpret_cast<const uint16_t*>(weight.data_ptr());
    auto* ys = reinterpret_cast<uint16_t*>(y.data_ptr());
    float* inv = inverse_rms.data_ptr<float>();
    at::parallel_for(0, rows, 16, [&](int64_t first, int64_t end) {
      std::vector<float> row(dim), w(dim);
      for (int64_t i = 0; i < dim; ++i) w[i] = from_bf16(ws[i]);
      for (int64_t r = first; r < end; ++r) {
        for (int64_t i = 0; i < dim; ++i) row[i] = from_bf16(xs[r * dim + i]);
        const float scale = 1.0f / std::sqrt(dot(row.data(), row.data(), dim) / static_cast<float>(dim) + static_cast<float>(eps));
        inv[r] = scale;
        for (int64_t i = 0; i < dim; ++i) ys[r * dim + i] = to_bf16(from_bf16(to_bf16(row[i] * scale)) * w[i]);
      }
    });
    ctx->save_for_backward({x, weight, inverse_rms});
    return y;
  }

  // n = x·s with s = (mean(x²) + eps)^(-1/2); y = n·w. With g = dy·w (rounded to bf16, as the
  // formula's product is): dx = s·g − s³·(g·x)/D · x.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &inverse_rms = saved[2];
    const at::Tensor dy = grads[0].contiguous();
    const int64_t dim = x.size(-1), rows = x.numel() / dim;
    at::Tensor dx = at::empty_like(x);
    const auto* xs = reinterpret_cast<const uint16_t*>(x.data_ptr());
    const auto* ws = reinterpret_cast<const uint16_t*>(weight.data_ptr());
    const auto* gs = reinterpret_cast<const uint16_t*>(dy.data_ptr());
    auto* dxs = reinterpret_cast<uint16_t*>(dx.data_ptr());
    const float* inv = inverse_rms.data_ptr<float>();
    at::parallel_for(0, rows, 16, [&](int64_t first, int64_t end) {
      std::vector<float> row(dim), g(dim), w(dim);
      for (int64_t i = 0; i < dim; ++i) w[i] = from_bf16(ws[i]);
      for (int64_t r = first; r < end; ++r) {
        for (int64_t i = 0; i < dim; ++i) {
          row[i] = from_bf16(xs[r * dim + i]);
          g[i] = from_bf16(to_bf16(from_bf16(gs[r * dim + i]) * w[i]));
        }
        const float s = inv[r], c = s * s * s * dot(g.data(), row.data(), dim) / static_cast<float>(dim);
        for (int64_t i = 0; i < dim; ++i) dxs[r * dim + i] = to_bf16(s * g[i] - c * row[i]);
      }
    });
    return {dx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const bool fused = x.device().is_cpu() && x.scalar_type() == at::kBFloat16 && weight.scalar_type() == at::kBFloat16 &&
                     !(weight.requires_grad() && at::GradMode::is_enabled()) && x.numel() > 0;
  return fused ? FusedRmsNorm::apply(x, weight, eps) : rms_norm_formula(x, weight, eps);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

}  // namespace dt::nn
