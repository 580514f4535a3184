#include "nn/linear.h"

#include <torch/torch.h>

#include "core/error.h"

namespace dt::nn {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out_features}));
}

at::Tensor LinearImpl::forward(const at::Tensor& x) {
  at::Tensor y = torch::nn::functional::linear(x, weight, bias);
  if (!lora || !lora->state) return y;
  if (lora->merged) {
    if (!lora->state->enabled || lora->state->sample_scale.defined())
      throw Error("a merged LoRA cannot be switched off or scaled per sample; unmerge it first");
    return y;
  }
  if (!lora->state->enabled) return y;
  // The adapter computes in the activation dtype; its fp32 parameters receive fp32 gradients
  // through the casts. Scales apply to the rank-r activation, the smallest tensor on the way.
  at::Tensor h = torch::nn::functional::linear(x, lora->down.to(x.dtype()));
  if (lora->dropout > 0 && is_training()) h = torch::dropout(h, lora->dropout, /*train=*/true);
  h = h * lora->scale();
  const at::Tensor& s = lora->state->sample_scale;
  if (s.defined()) {
    std::vector<int64_t> shape(x.dim(), 1);
    shape[0] = s.size(0);
    h = h * s.to(h.dtype()).view(shape);
  }
  // In place: the base linear's backward does not need its output.
  return y.add_(torch::nn::functional::linear(h, lora->up.to(x.dtype())));
}

}  // namespace dt::nn
