// `deltatrain forward`: run one component on the inputs of a golden-style io.safetensors and write
// its outputs under the golden's names (contract: shared/golden/README.md). The text encoder and
// the VAE are components of their own layers (forward_qwen3.cc, forward_vae.cc); each model
// family adds its transformer (Family::forward).
#pragma once
#include <string>
#include <vector>

#include "models/forward_args.h"

namespace dt {

struct ForwardComponent {
  std::string name;
  void (*run)(const ForwardArgs& args) = nullptr;  // the shared components
  const class Family* family = nullptr;           // or the family's transformer
};

std::vector<ForwardComponent> forward_components();

// The shared components, one file each.
void forward_qwen3(const ForwardArgs& args);
void forward_vae_encode(const ForwardArgs& args);
void forward_vae_decode(const ForwardArgs& args);

}  // namespace dt
