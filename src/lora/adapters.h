// LoRA adapters on a model's dt::nn::Linear layers (the slot is nn::Linear::lora): choose layers
// by name, attach new or loaded adapters, hand their tensors to the optimizer and to checkpoints,
// merge them into the base weights. Switching LoRA off (the prior prediction) or scaling it per
// sample is done on the model's shared nn::LoraState (`enabled`, `sample_scale`), no unloading.
//
// Adapter tensors are float32 on the layer's device whatever the base dtype; the forward computes
// the adapter in the activation dtype and the fp32 tensors receive fp32 gradients.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "lora/weights.h"
#include "nn/linear.h"

namespace torch::nn {
class Module;
}

namespace dt::lora {

// A Linear is chosen when its module path ("layers.3.attention.to_q") is matched by the preset's
// regex or by any `include` regex, and by no `exclude` regex. Regexes are searched anywhere in
// the path (Python re.search; anchor with ^ and $). No preset and no include means every Linear.
struct Selection {
  std::string preset;  // a key of Family::lora_presets() ("full", "blocks", "attn-mlp", "attn-only")
  std::vector<std::string> include;
  std::vector<std::string> exclude;
};

struct AdapterOptions {
  int64_t rank = 16;
  double alpha = 1.0;
  double dropout = 0.0;  // on the rank-space activation, training only
  uint64_t seed = 0;     // the init of every down matrix derives from it and the layer's path
};

// Every dt::nn::Linear under root with its module path, in registration order.
std::vector<std::pair<std::string, nn::Linear>> linear_layers(torch::nn::Module& root);

// The paths of the chosen Linears, in registration order. Throws dt::Error for an unknown preset,
// a bad regex or an empty choice.
std::vector<std::string> select_layers(torch::nn::Module& root, const Selection& selection,
                                       const std::map<std::string, std::string>& presets);

// The adapters attached to one model, in the model's registration order (a stable order for the
// optimizer and checkpoints).
class Adapters {
 public:
  // New adapters on `layers`: down Kaiming-uniform (a = √5, i.e. U(±1/√in)) drawn on the CPU from
  // a generator seeded by (seed, path) — identical on every device and run — up zero, so the
  // model's output is unchanged until trained. `state` is the model's shared switch (it must
  // outlive the adapters). Throws dt::Error when a layer already has an adapter.
  static Adapters create(torch::nn::Module& root, nn::LoraState& state, const std::vector<std::string>& layers,
                         const AdapterOptions& options);
  // Adapters holding a LoRA's weights (e.g. the initial LoRA of a training run), alpha scaled by
  // `strength`. Every module must name a Linear of root with fitting shapes (dt::Error otherwise).
  static Adapters attach(torch::nn::Module& root, nn::LoraState& state, const LoraWeights& weights,
                         double strength = 1.0, double dropout = 0.0);

  const std::vector<std::string>& names() const { return names_; }
  size_t size() const { return names_.size(); }

  // Trainable tensors (requires_grad): down then up of every adapter, in order.
  std::vector<at::Tensor> parameters() const;
  // Named state for checkpoints: "<path>.lora_down.weight", "<path>.lora_up.weight", "<path>.alpha".
  NamedTensors state_dict() const;
  // Copies a state_dict() back in place (same names and shapes; dt::Error listing what differs).
  void load_state_dict(const NamedTensors& state);
  // A float32 copy of the adapters as a file-independent LoRA (for writing files).
  LoraWeights weights(const std::string& family) const;

  // W ← W + scale·up·down in every adapted layer (computed in float32, stored in W's dtype); the
  // forward then skips the adapters. unmerge() subtracts the same delta (exact up to W's rounding).
  // Adapters cannot be switched off or scaled per sample while merged (dt::Error in the forward).
  void merge();
  void unmerge();
  bool merged() const { return merged_; }

  // Removes the adapters from their layers (unmerging first when merged).
  void detach();

 private:
  std::vector<std::string> names_;
  std::vector<nn::Linear> layers_;
  bool merged_ = false;
};

}  // namespace dt::lora
