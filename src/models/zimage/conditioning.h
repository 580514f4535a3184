// Z-Image's text encoder and autoencoder behind the family interface (specs/z-image.md §5–6).
#pragma once
#include <memory>

#include "models/family.h"
#include "text/prompt.h"
#include "text/qwen3.h"
#include "text/tokenizer.h"
#include "vae/autoencoder.h"

namespace dt::zimage {

// Qwen3 through the chat template (enable_thinking = true), 512 tokens, hidden_states[-2]
// (the input of the last decoder layer, no final norm), valid tokens only: [L_i, hidden] per prompt.
class ZImageTextEncoder : public TextEncoder {
 public:
  static constexpr int64_t kMaxLength = 512;
  // `path`: a pipeline folder holding text_encoder/ and tokenizer/.
  static std::unique_ptr<ZImageTextEncoder> load(const std::string& path, const LoadOptions& options);
  std::vector<TextFeatures> encode(const std::vector<std::string>& prompts) override;
  std::string identity() const override;

 private:
  ZImageTextEncoder(Tokenizer tokenizer, std::shared_ptr<Qwen3Encoder> encoder, std::vector<std::string> files);
  Tokenizer tokenizer_;
  std::shared_ptr<Qwen3Encoder> encoder_;
  std::vector<std::string> files_;  // tokenizer and encoder files, for the identity
  mutable std::string identity_;
};

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
