// A Linear layer named like checkpoint linears (`weight`, `bias`) that can carry one LoRA adapter.
// The adapter's tensors are owned by the adapter (see lora/), not registered as module parameters,
// so a model's named_parameters() are exactly its checkpoint keys.
#pragma once
#include <memory>

#include <torch/nn/module.h>

namespace dt::nn {

// Shared by every adapter of one model: switching LoRA off, or scaling it per sample, is one
// assignment for the whole model.
struct LoraState {
  bool enabled = true;
  at::Tensor sample_scale;  // undefined: 1 for every sample; else [B] float, one factor per sample
};

struct LoraAdapter {
  at::Tensor down;  // [rank, in]  ("lora_A"), trainable, fp32
  at::Tensor up;    // [out, rank] ("lora_B"), trainable, fp32
  double alpha = 1.0;
  double dropout = 0.0;  // on the rank-space activation during training
  bool merged = false;   // the delta is in the base weight (lora::Adapters::merge): forward skips it
  std::shared_ptr<LoraState> state;
  int64_t rank() const { return down.size(0); }
  double scale() const { return alpha / static_cast<double>(rank()); }
};

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool with_bias);

  // y = x·Wᵀ + b (+ scale · s_b · up(down(x)) when an enabled adapter is attached).
  // x: [B, ..., in]; a per-sample scale applies along the first dimension.
  at::Tensor forward(const at::Tensor& x);

  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }

  at::Tensor weight;  // [out, in]
  at::Tensor bias;    // [out] or undefined
  std::shared_ptr<LoraAdapter> lora;
};
TORCH_MODULE(Linear);

}  // namespace dt::nn
