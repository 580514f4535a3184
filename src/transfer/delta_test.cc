#include "transfer/delta.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "nn/linear.h"

namespace dt {
namespace {

// A two-layer denoiser over the channel axis, conditioned on the mean text feature, with a LoRA
// on its first layer: small, but the LoRA switch and per-sample scale go through the real Linear.
class TinyDenoiser : public Denoiser {
 public:
  TinyDenoiser() : state_(std::make_shared<nn::LoraState>()) {
    torch::manual_seed(3);
    first_ = module_.register_module("first", nn::Linear(4, 8, true));
    second_ = module_.register_module("second", nn::Linear(8, 4, true));
    for (auto& p : module_.parameters()) p.data().normal_(0, 0.5);
    auto lora = std::make_shared<nn::LoraAdapter>();
    lora->down = torch::randn({2, 4});
    lora->up = torch::randn({8, 2});
    lora->alpha = 2.0;
    lora->state = state_;
    first_->lora = lora;
  }
  at::Tensor velocity(const at::Tensor& x, const at::Tensor& sigma, const std::vector<TextFeatures>& text) override {
    std::vector<at::Tensor> cond;
    for (const auto& t : text) cond.push_back(t.mean(0));
    at::Tensor h = x.permute({0, 2, 3, 1});  // [B, h, w, C]
    h = h + torch::stack(cond).view({x.size(0), 1, 1, -1}) + sigma.view({-1, 1, 1, 1});
    h = second_->forward(torch::gelu(first_->forward(h)));
    return h.permute({0, 3, 1, 2}).contiguous();
  }
  torch::nn::Module& module() override { return module_; }
  void set_gradient_checkpointing(bool) override {}
  void offload_blocks(int, c10::Device) override { throw Error("the tiny denoiser has no blocks"); }
  void store_blocks_8bit(WeightFormat) override { throw Error("the tiny denoiser has no blocks"); }
  nn::LoraState& lora_state() override { return *state_; }
  std::string identity() const override { return "tiny"; }

 private:
  torch::nn::Module module_;
  nn::Linear first_{nullptr}, second_{nullptr};
  std::shared_ptr<nn::LoraState> state_;
};

struct Batch {
  at::Tensor x, sigma;
  std::vector<TextFeatures> text;
};

Batch batch(int64_t b) {
  torch::manual_seed(11);
  Batch out{torch::randn({b, 4, 3, 5}), torch::rand({b}), {}};
  for (int64_t i = 0; i < b; ++i) out.text.push_back(torch::randn({2 + i, 4}));  // ragged, as Z-Image's
  return out;
}

TEST(Delta, LoraDeltaIsLoraOnMinusLoraOffPairedOrNot) {
  TinyDenoiser model;
  Batch in = batch(3);
  at::Tensor on = model.velocity(in.x, in.sigma, in.text).detach();
  model.lora_state().enabled = false;
  at::Tensor off = model.velocity(in.x, in.sigma, in.text).detach();
  model.lora_state().enabled = true;
  ASSERT_GT((on - off).abs().max().item<double>(), 1e-2);  // the LoRA does something

  at::Tensor two = lora_delta(model, in.x, in.sigma, in.text, /*paired=*/false);
  at::Tensor one = lora_delta(model, in.x, in.sigma, in.text, /*paired=*/true);
  EXPECT_TRUE(torch::equal(two, on - off));
  EXPECT_TRUE(torch::allclose(one, on - off, 1e-5, 1e-6));
  EXPECT_FALSE(two.requires_grad());
  // The model's LoRA switch is as it was.
  EXPECT_TRUE(model.lora_state().enabled);
  EXPECT_FALSE(model.lora_state().sample_scale.defined());
  EXPECT_TRUE(torch::equal(prior_prediction(model, in.x, in.sigma, in.text), off));
}

TEST(Delta, TargetFormsAndGuidance) {
  at::Tensor s0 = torch::randn({2, 4, 3, 3}), dc = torch::randn({2, 4, 3, 3}), du = torch::randn({2, 4, 3, 3});
  const std::vector<bool> captioned = {false, false};
  EXPECT_TRUE(torch::allclose(transfer_target(s0, dc, {}, 3.0, captioned), s0 + 3.0 * dc));
  EXPECT_TRUE(torch::allclose(transfer_target(s0, dc, du, 3.0, captioned), s0 + 3.0 * dc - 2.0 * du));
  // g = 1: the unconditional term vanishes, both forms agree.
  EXPECT_TRUE(torch::equal(transfer_target(s0, dc, du, 1.0, captioned), transfer_target(s0, dc, {}, 1.0, captioned)));
  // The exact target is the CFG-guided difference (T_g − P_g) added to S0.
  at::Tensor pc = torch::randn({2, 4, 3, 3}), pu = torch::randn({2, 4, 3, 3});
  at::Tensor tc = pc + dc, tu = pu + du;
  const double g = 2.5;
  at::Tensor guided = (tu + g * (tc - tu)) - (pu + g * (pc - pu));
  EXPECT_TRUE(torch::allclose(transfer_target(s0, dc, du, g, captioned), s0 + guided, 1e-5, 1e-5));
  // An item with the empty caption (c = u, so δc = δu) gets S0 + δu in both forms; the other item
  // keeps its form's target.
  const std::vector<bool> second_dropped = {false, true};
  at::Tensor dc_dropped = dc.clone();
  dc_dropped[1] = du[1];
  for (const at::Tensor& u : {at::Tensor(), du}) {
    const at::Tensor t = transfer_target(s0, dc_dropped, u, 3.0, second_dropped);
    EXPECT_TRUE(torch::allclose(t[1], s0[1] + du[1], 1e-6, 1e-6));
    EXPECT_TRUE(torch::allclose(t[0], s0[0] + 3.0 * dc[0] - (u.defined() ? 2.0 * du[0] : at::zeros_like(du[0])), 1e-6, 1e-6));
  }
}

}  // namespace
}  // namespace dt
