// A LoRA independent of any file layout: one low-rank delta per Linear, named by the Linear's
// diffusers module path. delta(W) = (alpha / rank) · up · down, rank = rows of down.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace dt::lora {

struct LoraModule {
  std::string name;  // diffusers module path: "layers.0.attention.to_q"
  at::Tensor down;   // [rank, in]  (lora_A / lora_down), float32
  at::Tensor up;     // [out, rank] (lora_B / lora_up), float32
  double alpha = 0;  // scale = alpha / rank
  int64_t rank() const { return down.size(0); }
  double scale() const { return alpha / static_cast<double>(rank()); }
};

struct LoraWeights {
  std::vector<LoraModule> modules;  // sorted by name, one per Linear
  std::string family;               // KeyMap::family it was read for
  std::string format;               // the layout it was read from ("kohya", "peft", ...); empty if made here
  std::map<std::string, std::string> metadata;  // the file's safetensors metadata
  const LoraModule* find(const std::string& name) const;
};

// The weight delta of one module, float32 [out, in]: scale · up · down (computed in float32).
at::Tensor delta(const LoraModule& m);

}  // namespace dt::lora
