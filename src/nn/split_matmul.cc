#include "nn/split_matmul.h"

#include <dlfcn.h>

#include <algorithm>

#include <ATen/ExpandUtils.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

namespace dt::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Below this a product takes a few hundred microseconds on one core: a parallel region's start
// would eat the gain.
constexpr int64_t kMinSplitFlops = int64_t{1} << 25;
constexpr int64_t kMinRowsPerPart = 32;

// OpenBLAS told to run on one thread. Another BLAS (or OpenBLAS with threads of its own) threads
// its products itself and is left to do so.
bool blas_single_threaded() {
  static const bool single = [] {
    using Getter = int (*)();
    auto get = reinterpret_cast<Getter>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    return get != nullptr && get() == 1;
  }();
  return single;
}

// Whether a float32 product of `flops` is split here.
bool split_pays(const at::Tensor& a, const at::Tensor& b, int64_t flops) {
  return a.device().is_cpu() && a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && flops >= kMinSplitFlops &&
         !at::in_parallel_region() && at::get_num_threads() > 1 && blas_single_threaded();
}

// a [M, K] · b [K, N] (+ bias [N] inside the product, as addmm adds it, when defined).
at::Tensor product(const at::Tensor& a, const at::Tensor& b, const at::Tensor& bias = {}) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const int64_t parts = split_pays(a, b, 2 * m * n * k) ? std::min<int64_t>(at::get_num_threads(), m / kMinRowsPerPart) : 1;
  if (parts < 2) return bias.defined() ? at::addmm(bias, a, b) : at::mm(a, b);
  at::Tensor out = at::empty({m, n}, a.options());
  at::parallel_for(0, parts, 1, [&](int64_t first, int64_t end) {
    at::NoGradGuard no_grad;  // grad mode is per thread; the Function records the product, not its parts
    for (int64_t p = first; p < end; ++p) {
      const int64_t row = m * p / parts, rows = m * (p + 1) / parts - row;
      at::Tensor part = out.narrow(0, row, rows);
      if (bias.defined()) at::addmm_out(part, bias, a.narrow(0, row, rows), b);
      else at::mm_out(part, a.narrow(0, row, rows), b);
    }
  });
  return out;
}

// a [B, M, K] · b [B, K, N]: torch::bmm calls the BLAS batch by batch (below 400 multiply-adds a
// batch it computes them itself, and is left to), so the batches are the parts.
at::Tensor batched_product(const at::Tensor& a, const at::Tensor& b) {
  const int64_t batch = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
  if (batch < 2 || m * n * k < 400 || !split_pays(a, b, 2 * batch * m * n * k)) return at::bmm(a, b);
  at::Tensor out = at::empty({batch, m, n}, a.options());
  at::parallel_for(0, batch, 1, [&](int64_t first, int64_t end) {
    at::NoGradGuard no_grad;
    for (int64_t i = first; i < end; ++i) {
      at::Tensor part = out.select(0, i);
      at::mm_out(part, a.select(0, i), b.select(0, i));
    }
  });
  return out;
}

struct BatchedProduct : torch::autograd::Function<BatchedProduct> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return batched_product(a, b);
  }
  // BmmBackward0's products: grad·bᵀ and aᵀ·grad.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &a = saved[0], &b = saved[1], &g = grads[0];
    return {ctx->needs_input_grad(0) ? batched_product(g, b.transpose(1, 2)) : at::Tensor(),
            ctx->needs_input_grad(1) ? batched_product(a.transpose(1, 2), g) : at::Tensor()};
  }
};

// x [M, in] row-major · weightᵀ (+ bias): at::linear's addmm when `fused`, else its product and
// then the bias added. (Without a bias it is called without one: apply takes no undefined tensor.)
struct LinearProduct : torch::autograd::Function<LinearProduct> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, bool fused) {
    return forward(ctx, x, weight, at::Tensor(), fused);
  }
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            bool fused) {
    ctx->saved_data["x_grad"] = x.requires_grad();
    ctx->saved_data["weight_grad"] = weight.requires_grad();
    ctx->saved_data["bias_grad"] = bias.defined() && bias.requires_grad();
    ctx->save_for_backward({weight.requires_grad() ? x : at::Tensor(), x.requires_grad() ? weight : at::Tensor()});
    if (fused) return product(x, weight.t(), bias);
    at::Tensor y = product(x, weight.t());
    return bias.defined() ? y.add_(bias) : y;
  }
  // MmBackward0's (and AddmmBackward0's) products for a row-major x and weightᵀ: grad·weight for
  // x, gradᵀ·x for the weight; the bias's gradient is the grad summed to its shape.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &g = grads[0];
    at::Tensor gx, gw, gb;
    if (ctx->saved_data["x_grad"].toBool()) gx = product(g, weight);
    if (ctx->saved_data["weight_grad"].toBool()) gw = product(g.t(), x);
    if (ctx->saved_data["bias_grad"].toBool()) {
      const int64_t out_features = g.size(1);
      gb = at::sum_to(g, at::IntArrayRef(&out_features, 1));
    }
    return {gx, gw, gb, at::Tensor()};  // without a bias the third is the undefined one of `fused`
  }
};

}  // namespace

bool products_split() { return at::get_num_threads() > 1 && blas_single_threaded(); }

at::Tensor split_bmm(const at::Tensor& a, const at::Tensor& b) { return BatchedProduct::apply(a, b); }

at::Tensor split_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (x.dim() < 2 || x.scalar_type() != at::kFloat || !x.device().is_cpu() || !weight.is_contiguous())
    return torch::nn::functional::linear(x, weight, bias);
  // at::linear's one product, of x folded to [M, in]: where that is not row-major, autograd
  // would arrange its backward otherwise, so it stays at::linear.
  const at::Tensor rows = x.dim() == 2 ? x : x.reshape({-1, x.size(-1)});
  if (!rows.is_contiguous()) return torch::nn::functional::linear(x, weight, bias);
  // at::linear adds a bias inside the product for a 2-D or a contiguous 3-D input, else after it.
  const bool fused = bias.defined() && (x.dim() == 2 || (x.dim() == 3 && x.is_contiguous()));
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = weight.size(0);
  const at::Tensor y = bias.defined() ? LinearProduct::apply(rows, weight, bias, fused) : LinearProduct::apply(rows, weight, fused);
  return y.view(shape);
}

}  // namespace dt::nn
