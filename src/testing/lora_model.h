// Test-only: a small module tree of dt::nn::Linear layers named and shaped like the Z-Image
// transformer of shared/golden/zimage_transformer (dim 64, FFN 170, one refiner block each), with
// a simple nonlinear forward through every block, so the LoRA library can be tested on real names.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

#include "nn/linear.h"

namespace dt::lora::testing {

struct Node : torch::nn::Module {
  using torch::nn::Module::register_module;
};

class TinyZImage : public torch::nn::Module {
 public:
  static constexpr int64_t kDim = 64, kHidden = 170;

  explicit TinyZImage(uint64_t seed = 0, at::ScalarType dtype = at::kFloat) {
    torch::manual_seed(seed);
    add("all_x_embedder.2-1", kDim, kDim, true);
    add("cap_embedder.1", 48, kDim, true);
    add("t_embedder.mlp.0", 256, 1024, true);
    add("t_embedder.mlp.2", 1024, kDim, true);
    for (const char* block : {"noise_refiner.0", "context_refiner.0", "layers.0", "layers.1"}) {
      std::string b = block;
      for (const char* qkvo : {"to_q", "to_k", "to_v", "to_out.0"}) add(b + ".attention." + qkvo, kDim, kDim, false);
      add(b + ".feed_forward.w1", kDim, kHidden, false);
      add(b + ".feed_forward.w2", kHidden, kDim, false);
      add(b + ".feed_forward.w3", kDim, kHidden, false);
      if (b != "context_refiner.0") add(b + ".adaLN_modulation.0", kDim, 4 * kDim, true);
    }
    add("all_final_layer.2-1.adaLN_modulation.1", kDim, kDim, true);
    add("all_final_layer.2-1.linear", kDim, kDim, true);
    to(dtype);
  }

  nn::LoraState& lora_state() { return state_; }
  nn::Linear& linear(const std::string& path) { return linears_.at(path); }

  // x: [B, T, 64] → [B, T, 64]; uses every Linear except the embedders of the other inputs
  // (cap_embedder, t_embedder). RMS-normalised block inputs keep activations O(1).
  at::Tensor forward(const at::Tensor& x) {
    auto norm = [](const at::Tensor& t) { return t * torch::rsqrt(t.square().mean(-1, true) + 1e-6); };
    at::Tensor h = linear("all_x_embedder.2-1")(x);
    for (const char* block : {"noise_refiner.0", "context_refiner.0", "layers.0", "layers.1"}) {
      std::string b = block;
      at::Tensor n = norm(h);
      at::Tensor q = linear(b + ".attention.to_q")(n), k = linear(b + ".attention.to_k")(n),
                 v = linear(b + ".attention.to_v")(n);
      h = h + linear(b + ".attention.to_out.0")(torch::tanh(q) * k + v);
      n = norm(h);
      h = h + linear(b + ".feed_forward.w2")(torch::silu(linear(b + ".feed_forward.w1")(n)) * linear(b + ".feed_forward.w3")(n));
      if (b != "context_refiner.0") h = h * (1 + 0.1 * torch::tanh(linear(b + ".adaLN_modulation.0")(norm(h)).slice(-1, 0, kDim)));
    }
    h = norm(h) * (1 + 0.1 * torch::tanh(linear("all_final_layer.2-1.adaLN_modulation.1")(torch::silu(h))));
    return linear("all_final_layer.2-1.linear")(h);
  }

 private:
  void add(const std::string& path, int64_t in, int64_t out, bool bias) {
    torch::nn::Module* parent = this;
    size_t start = 0;
    for (size_t dot; (dot = path.find('.', start)) != std::string::npos; start = dot + 1) {
      std::string part = path.substr(start, dot - start);
      auto children = parent->named_children();
      if (!children.contains(part)) {
        auto node = std::make_shared<Node>();
        if (parent == this) register_module(part, node);
        else static_cast<Node*>(parent)->register_module(part, node);
      }
      parent = parent->named_children()[part].get();
    }
    nn::Linear linear(in, out, bias);
    torch::NoGradGuard no_grad;
    linear->weight.normal_(0, 1 / std::sqrt(static_cast<double>(in)));
    if (bias) linear->bias.normal_(0, 0.1);
    std::string leaf = path.substr(start);
    if (parent == this) register_module(leaf, linear);
    else static_cast<Node*>(parent)->register_module(leaf, linear);
    linears_.emplace(path, linear);
  }

  nn::LoraState state_;
  std::map<std::string, nn::Linear> linears_;
};

}  // namespace dt::lora::testing
