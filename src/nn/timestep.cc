#include "nn/timestep.h"

#include <cmath>

#include <torch/torch.h>

namespace dt::nn {

at::Tensor timestep_embedding(const at::Tensor& t, int64_t dim, double max_period, double freq_shift) {
  const int64_t half = dim / 2;
  auto f32 = torch::TensorOptions().dtype(at::kFloat).device(t.device());
  at::Tensor freqs = torch::exp(-std::log(max_period) * torch::arange(half, f32) / (half - freq_shift));
  at::Tensor args = t.to(at::kFloat).unsqueeze(1) * freqs.unsqueeze(0);  // [B, half]
  at::Tensor emb = torch::cat({torch::cos(args), torch::sin(args)}, -1);
  if (dim % 2) emb = torch::cat({emb, torch::zeros_like(emb.narrow(1, 0, 1))}, -1);
  return emb;
}

}  // namespace dt::nn
