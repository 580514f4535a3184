// The Z-Image family (Z-Image Base and Z-Image-Turbo) behind the Family interface.
#pragma once
#include "models/family.h"
#include "models/zimage/transformer.h"

namespace dt {

const Family& zimage_family();

namespace zimage {

// Z-Image time input and output sign (specs/z-image.md §8): τ = 1 − σ, v = −output.
class ZImageDenoiser : public Denoiser {
 public:
  ZImageDenoiser(ZImageTransformer model, std::vector<std::string> files);
  at::Tensor velocity(const at::Tensor& x, const at::Tensor& sigma, const std::vector<TextFeatures>& text) override;
  torch::nn::Module& module() override { return *model_; }
  void set_gradient_checkpointing(bool on) override { model_->set_gradient_checkpointing(on); }
  void offload_blocks(int n, c10::Device device) override { model_->offload_blocks(n, device); }
  void store_blocks_8bit(WeightFormat format) override { model_->store_blocks_8bit(format); }
  nn::LoraState& lora_state() override { return *lora_state_; }
  std::string identity() const override;

  ZImageTransformer& transformer() { return model_; }

 private:
  ZImageTransformer model_;
  std::shared_ptr<nn::LoraState> lora_state_ = std::make_shared<nn::LoraState>();
  std::vector<std::string> files_;  // the checkpoint's safetensors files
  mutable std::string identity_;
};

// Its LoRA key names (lora_keys.cc) and golden forward (forward.cc).
const lora::KeyMap& lora_keys();
void forward(const ForwardArgs& args);

// σ schedule of the Z-Image scheduler for `steps` steps: linspace(1, 1/N, N), static shift 3, then 0.
std::vector<double> sigma_schedule(int steps);

}  // namespace zimage
}  // namespace dt
