// RMSNorm as the diffusers and transformers models define it: the mean square is taken in float32,
// the normalized value is cast back to the input dtype, then multiplied by `weight`.
#pragma once
#include <torch/nn/module.h>

namespace dt::nn {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) { return rms_norm(x, weight, eps); }

  at::Tensor weight;  // [dim]
  double eps;
};
TORCH_MODULE(RMSNorm);

}  // namespace dt::nn
