// Z-Image's text prompting and autoencoder behind the family interface (specs/z-image.md §5–6).
#pragma once
#include <memory>

#include "models/family.h"
#include "text/qwen3_text_encoder.h"
#include "vae/autoencoder.h"

namespace dt::zimage {

// Qwen3 through the chat template (enable_thinking = true), 512 tokens, hidden_states[-2] (the
// input of the last decoder layer, no final norm), valid tokens only: [L_i, hidden] per prompt.
const Qwen3Prompting& text_prompting();

// The FLUX.1 16-channel VAE; x0 = (posterior mean − 0.1159)·0.3611 and back.
class ZImageAutoencoder : public Autoencoder {
 public:
  static constexpr double kScale = 0.3611, kShift = 0.1159;
  // `path`: a pipeline folder holding vae/, a diffusers VAE folder or a single file.
  static std::unique_ptr<ZImageAutoencoder> load(const std::string& path, const LoadOptions& options);
  at::Tensor encode(const at::Tensor& images) override;
  at::Tensor decode(const at::Tensor& latents) override;
  std::string identity() const override;

 private:
  ZImageAutoencoder(vae::AutoencoderKL vae, std::vector<std::string> files);
  vae::AutoencoderKL vae_;
  std::vector<std::string> files_;
  mutable std::string identity_;
};

}  // namespace dt::zimage
