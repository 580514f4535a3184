// The FLUX.2 [klein] family (Base and distilled, 4B and 9B) behind the Family interface.
#pragma once
#include "models/family.h"
#include "models/flux2/transformer.h"

namespace dt {

const Family& flux2_family();

namespace flux2 {

// FLUX.2 time input and output (specs/flux2.md §8): the model takes σ itself and predicts ε − x0
// already. Latents [B, 128, h, w] are packed to tokens in raster order; all prompts' features must
// have one length (the klein text encoder pads to 512).
class Flux2Denoiser : public Denoiser {
 public:
  Flux2Denoiser(Flux2Transformer model, std::vector<std::string> files);
  at::Tensor velocity(const at::Tensor& x, const at::Tensor& sigma, const std::vector<TextFeatures>& text) override;
  torch::nn::Module& module() override { return *model_; }
  void set_gradient_checkpointing(bool on) override { model_->set_gradient_checkpointing(on); }
  void offload_blocks(int n, c10::Device device) override { model_->offload_blocks(n, device); }
  void store_blocks_8bit(WeightFormat format) override { model_->store_blocks_8bit(format); }
  nn::LoraState& lora_state() override { return *lora_state_; }
  std::string identity() const override;

  Flux2Transformer& transformer() { return model_; }

 private:
  Flux2Transformer model_;
  std::shared_ptr<nn::LoraState> lora_state_ = std::make_shared<nn::LoraState>();
  std::vector<std::string> files_;
  mutable std::string identity_;
};

// Its LoRA key names (lora_keys.cc) and golden forward (forward.cc).
const lora::KeyMap& lora_keys();
void forward(const ForwardArgs& args);

// The klein pipeline's σ schedule (specs/flux2.md §7): linspace(1, 1/N, N) under the exponential
// time shift with mu = compute_empirical_mu(image_tokens, N), then 0.
std::vector<double> sigma_schedule(int steps, int64_t image_tokens);
double empirical_mu(int64_t image_tokens, int steps);

}  // namespace flux2
}  // namespace dt
