#include "lora/weights.h"

#include <torch/torch.h>

namespace dt::lora {

const LoraModule* LoraWeights::find(const std::string& name) const {
  for (const auto& m : modules)
    if (m.name == name) return &m;
  return nullptr;
}

at::Tensor delta(const LoraModule& m) {
  return torch::matmul(m.up.to(torch::kFloat), m.down.to(torch::kFloat)) * m.scale();
}

}  // namespace dt::lora
