// A Linear layer named like checkpoint linears (`weight`, `bias`) that can carry one LoRA adapter.
// The adapter's tensors are owned by the adapter (see lora/), not registered as module parameters,
// so a model's named_parameters() are exactly its checkpoint keys.
#pragma once
#include <memory>

#include <torch/nn/module.h>

#include "io/checkpoint.h"
#include "nn/weights_8bit.h"

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

  // Replaces the frozen weight by its 8-bit form (nn/weights_8bit.h): `weight` becomes the codes
  // and a `weight_scale` buffer [out] holds the row scales. The module then computes in its input's
  // dtype as before; the weight can no longer be trained or have a LoRA merged into it.
  void store_8bit(WeightFormat format);
  // The 8-bit form declared before the weight is read: `weight` becomes codes and `weight_scale`
  // scales, both unfilled (no memory touched) until load_8bit() fills them.
  void expect_8bit(WeightFormat format);
  // Fills the declared 8-bit form from the checkpoint's weight: an E4M3 weight's codes and row
  // scales as they are when the form is fp8 (bytes kept), otherwise the weight's values quantized.
  // A weight read from a memory-mapped file leaves memory afterwards.
  void load_8bit(const StoredTensor& stored);
  bool is_8bit() const { return weight_scale.defined(); }

  at::Tensor weight;  // [out, in]: the model's dtype, or 8-bit codes after store_8bit()
  at::Tensor bias;    // [out] or undefined
  at::Tensor weight_scale;  // [out] float32 after store_8bit(), else undefined
  std::shared_ptr<LoraAdapter> lora;
};
TORCH_MODULE(Linear);

enum class Store8bit {
  now,      // quantize the weights the layers hold (LinearImpl::store_8bit)
  on_load,  // declare the form; load_state fills it as it reads (LinearImpl::expect_8bit)
};
// Every dt::nn::Linear of `root` (its frozen weights) in 8 bits; an error names the layer.
void store_linears_8bit(torch::nn::Module& root, WeightFormat format, Store8bit when = Store8bit::now);

}  // namespace dt::nn
