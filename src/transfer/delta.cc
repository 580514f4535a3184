#include "transfer/delta.h"

#include <torch/torch.h>

#include "nn/linear.h"

namespace dt {
namespace {

// Sets the model's LoRA switch and per-sample scale for one scope and restores them after, also
// when the forward throws.
class LoraScope {
 public:
  LoraScope(nn::LoraState& state, bool enabled, at::Tensor sample_scale)
      : state_(state), enabled_(state.enabled), scale_(state.sample_scale) {
    state_.enabled = enabled;
    state_.sample_scale = std::move(sample_scale);
  }
  ~LoraScope() {
    state_.enabled = enabled_;
    state_.sample_scale = scale_;
  }

 private:
  nn::LoraState& state_;
  bool enabled_;
  at::Tensor scale_;
};

}  // namespace

at::Tensor prior_prediction(Denoiser& model, const at::Tensor& x, const at::Tensor& sigma,
                            const std::vector<TextFeatures>& text) {
  torch::NoGradGuard no_grad;
  LoraScope off(model.lora_state(), false, {});
  return model.velocity(x, sigma, text);
}

at::Tensor lora_delta(Denoiser& model, const at::Tensor& x, const at::Tensor& sigma,
                      const std::vector<TextFeatures>& text, bool paired) {
  torch::NoGradGuard no_grad;
  const int64_t b = x.size(0);
  if (!paired) {
    at::Tensor off = prior_prediction(model, x, sigma, text);
    LoraScope on(model.lora_state(), true, {});
    return model.velocity(x, sigma, text) - off;
  }
  // Rows [0, B) with the LoRA, rows [B, 2B) without: one forward, same x_σ, σ and text.
  at::Tensor scale = torch::cat({torch::ones({b}), torch::zeros({b})}).to(x.device());
  LoraScope on_off(model.lora_state(), true, scale);
  std::vector<TextFeatures> text2 = text;
  text2.insert(text2.end(), text.begin(), text.end());
  at::Tensor v = model.velocity(torch::cat({x, x}), torch::cat({sigma, sigma}), text2);
  return v.slice(0, 0, b) - v.slice(0, b, 2 * b);
}

at::Tensor transfer_target(const at::Tensor& s0_c, const at::Tensor& delta_c, const at::Tensor& delta_u, double guidance,
                           const std::vector<bool>& empty_caption) {
  TORCH_CHECK(static_cast<int64_t>(empty_caption.size()) == s0_c.size(0), "transfer_target: one flag per item");
  std::vector<float> g;
  for (bool empty : empty_caption) g.push_back(empty ? 1.0f : static_cast<float>(guidance));
  std::vector<int64_t> per_item(s0_c.dim(), 1);
  per_item[0] = s0_c.size(0);
  const at::Tensor gs = torch::tensor(g).view(per_item).to(s0_c.device());
  at::Tensor target = s0_c.to(at::kFloat) + gs * delta_c.to(s0_c.device(), at::kFloat);
  if (delta_u.defined()) target = target + (1.0f - gs) * delta_u.to(s0_c.device(), at::kFloat);
  return target.detach();
}

}  // namespace dt
